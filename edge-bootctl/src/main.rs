//! `edge-bootctl`: parses the command line, runs it through the library, prints the result, and maps errors to the
//! exit codes documented in docs/boot-state.md ("Exit codes").
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    match edge_bootctl::cli::run(edge_bootctl::cli::Cli::parse()) {
        Ok(out) => println!("{out}"),
        Err(e) => {
            eprintln!("edge-bootctl: error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            std::process::exit(e.exit_code());
        }
    }
}
