//! `edge-bootctl`: parses the command line, runs it through the library, prints the result; exit code 1 on any
//! error, 2 on a usage error (docs/boot-state.md, "edge-bootctl").
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    match bootctl::cli::run(bootctl::cli::Cli::parse()) {
        Ok(out) => println!("{out}"),
        Err(e) => {
            eprintln!("edge-bootctl: error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            std::process::exit(1);
        }
    }
}
