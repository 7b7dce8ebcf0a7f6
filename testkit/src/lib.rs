//! What the workspace's tests, examples and benchmarks share, so that no test file pulls another in with
//! `#[path = ...]` and no crate keeps its own copy: the loopback HTTP server with injected faults (`http_server`),
//! disks with a GPT and a fake sysfs for the partition lookups (`disk`), the host's tools that check what our
//! encoders write (`host`), a real PostgreSQL started for the test (`postgres`), a private CA with a server
//! certificate for TLS (`tls`), real time-series databases (`tsdb`), and a headless Chromium driven over WebDriver
//! for tests of the web UI (`webdriver`).
//!
//! It is a dev-dependency only; nothing a node or an operator runs links it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod disk;
pub mod host;
pub mod http_server;
pub mod postgres;
pub mod tls;
pub mod tsdb;
pub mod webdriver;
