//! `edge-init check [--config FILE]`: the services file read and checked exactly as boot reads it
//! (`services::load`), so that an image builder can refuse a bad file before it ships instead of a node starting no
//! services. A module of its own because it is a client verb, like `ctl`, with no part in PID 1
//! (docs/edge-init.md, "Checking a services file").

use std::path::PathBuf;

use crate::error::chain;
use crate::services::{self, Config, Problem};

/// The verb's usage.
pub const USAGE: &str = "usage: edge-init check [--config FILE]   (default /etc/edge/services.toml)";

/// Exit status: the file is valid.
pub const VALID: i32 = 0;
/// Exit status: the file is not valid; what is wrong is on stderr.
pub const INVALID: i32 = 1;
/// Exit status: bad usage.
pub const USAGE_ERROR: i32 = 2;
/// Exit status: the file cannot be read, is not a regular file, or is too large to be one.
pub const UNREADABLE: i32 = 3;

/// The exit status for a services file error: [`UNREADABLE`] or [`INVALID`].
pub fn exit_code(e: &services::Error) -> i32 {
    match e.problem {
        Problem::Read(_) | Problem::NotAFile | Problem::TooLarge { .. } => UNREADABLE,
        _ => INVALID,
    }
}

/// One line on a valid file: its services in start order, its modules, the watchdog and the data partition.
pub fn summary(path: &std::path::Path, c: &Config) -> String {
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    format!(
        "services file {}: valid; {} services ({}), {} modules, watchdog {}, data {} on {}",
        path.display(),
        names.len(),
        names.join(", "),
        c.modules.len(),
        if c.watchdog.enabled { "on" } else { "off" },
        c.data.device,
        c.data.mount.display()
    )
}

/// `edge-init check ARGS...`: prints the summary on stdout and exits 0, or prints what is wrong on stderr and exits
/// with [`exit_code`]; `--help` prints the usage and exits 0.
pub fn main(args: &[String]) -> i32 {
    let mut path = PathBuf::from(services::DEFAULT_PATH);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--help" | "-h", _) => {
                println!("{USAGE}");
                return VALID;
            }
            ("--config", Some(file)) => path = PathBuf::from(file),
            _ => {
                eprintln!("edge-init check: unexpected argument {a}\n{USAGE}");
                return USAGE_ERROR;
            }
        }
    }
    match services::load(&path) {
        Ok(config) => {
            println!("{}", summary(&path, &config));
            VALID
        }
        Err(e) => {
            eprintln!("edge-init check: {}", chain(&e));
            exit_code(&e)
        }
    }
}
