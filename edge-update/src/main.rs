//! `edge-update`: parses the command line, starts logging to stderr, runs the verb, prints the result, and maps an
//! error to its documented exit code (docs/updater.md, "Exit codes").

use clap::Parser;

fn main() {
    let cli = edge_update::cli::Cli::parse();
    cliout::log_to_stderr("edge-update", cli.log_level, &[]);
    cliout::finish("edge-update", edge_update::cli::run(cli), updater::error::Error::exit_code);
}
