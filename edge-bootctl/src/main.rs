//! `edge-bootctl`: parses the command line, runs it through the library, prints the result, and maps errors to the
//! exit codes documented in docs/boot-state.md ("Exit codes").
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let result = edge_bootctl::cli::run(edge_bootctl::cli::Cli::parse());
    cliout::finish("edge-bootctl", result, bootctl::error::Error::exit_code);
}
