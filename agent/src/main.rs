//! `edge-agent`: parses the command line, starts logging to stderr (edge-init forwards a service's stderr to the
//! kernel log), runs the verb and maps an error to its exit code (docs/agent.md, "Exit codes").

use clap::Parser;

fn main() {
    let cli = edge_agent::cli::Cli::parse();
    cliout::log_to_stderr("edge-agent", cli.log_level, &[]);
    let notify = std::env::var_os("NOTIFY_SOCKET").map(std::path::PathBuf::from);
    cliout::finish("edge-agent", edge_agent::cli::run(cli, notify), edge_agent::Error::exit_code);
}
