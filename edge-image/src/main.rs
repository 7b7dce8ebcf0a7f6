//! `edge-image`: parses the command line, runs it through the library, prints the report and maps errors to the
//! exit codes documented in docs/cli.md.
#![forbid(unsafe_code)]

use clap::Parser;
use edge_image::cli::{self, Cli, Command};

fn main() {
    let mut args = Cli::parse();
    if let Command::Build(b) = &mut args.command {
        // Reproducible builds: the one environment variable read, here at the edge.
        b.source_date_epoch = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse().ok());
    }
    cliout::finish("edge-image", cli::run(args), edge_image::Error::exit_code);
}
