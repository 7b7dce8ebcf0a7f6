//! The `edge-bootctl` command's library: its verbs parsed with clap, each reading the backend named in the config,
//! applying one rule of `bootctl::rules` and writing the result back (docs/boot-state.md, "edge-bootctl").
//! The slot rules, the backends and the status rendering are the `bootctl` library, which the updater links without
//! this crate's command-line parser.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
