//! The `edge-update` command's library: one module per verb, each parsing its arguments with clap and calling the
//! updater library (docs/updater.md, "CLI"); the terminal's progress bar lives here too.
//! `main.rs` only starts logging, runs the verb, prints its output and maps an error to its exit code.
#![warn(missing_docs)]

pub mod cli;
