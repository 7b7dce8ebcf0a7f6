//! `edge-agent`: parses the command line, starts logging to stderr, runs the verb and maps an error to its exit
//! code (docs/agent.md, "Exit codes").

fn main() {}
