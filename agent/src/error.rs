//! The agent's one error type and the mapping from its classes to `edge-agent`'s exit codes (docs/agent.md,
//! "Exit codes").
//!
//! Every I/O variant names the file, socket or URL it concerns; there is no `From<io::Error>`, so each call site
//! says what it was doing.

use std::io;
use std::path::PathBuf;

/// Exit codes of `edge-agent`.
pub mod exit {
    /// Something failed at run time (a file on the data partition, the endpoint for a one-shot verb).
    pub const FAILURE: i32 = 1;
    /// The command line is not valid (clap's own code).
    pub const USAGE: i32 = 2;
    /// The config, the node key, the CA certificate or the enrollment token is not usable: an operator must act.
    pub const CONFIG: i32 = 3;
}

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is not a regular file of bounded size, or cannot be read.
    #[error("cannot read config {path}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: image_layout::Error,
    },
    /// The config file is not TOML of the right shape (a type error, an unknown key).
    #[error("config {}:{}{}: {detail}", path.display(), at.map_or(String::new(), |(l, c)| format!("{l}:{c}:")), key.as_ref().map_or(String::new(), |k| format!(" key {k}")))]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The line and column (from 1) where the parser stopped.
        at: Option<(usize, usize)>,
        /// The key on that line.
        key: Option<String>,
        /// What the parser said.
        detail: String,
    },
    /// A config key holds a value out of its range.
    #[error("config {path}: key {key}: {detail}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong and what was expected.
        detail: String,
    },
    /// A telemetry record is larger than a spool frame holds.
    #[error("telemetry record of {bytes} bytes with a mark of {mark_bytes}: at most 65536 and 255")]
    TelemetryRecord {
        /// The payload's bytes.
        bytes: usize,
        /// The mark's bytes.
        mark_bytes: usize,
    },
    /// The node key cannot be read (it exists: it is never replaced by a new one).
    #[error("cannot read the node key {path}")]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The node key file is not a key; it is not replaced (that would make a new identity): an operator who wants
    /// a new identity deletes it.
    #[error("node key {path} is corrupt: {detail} (delete it on purpose to enroll as a new node)")]
    CorruptKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: &'static str,
    },
    /// A file on the data partition cannot be written (the node key, the spool, the state).
    #[error("cannot write {path}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file the agent keeps cannot be read (the spool, the state, the event log).
    #[error("cannot read {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The state file does not parse.
    #[error("state file {path} does not parse: {detail}")]
    ParseState {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// A whole line of the spool does not parse (a torn last line is not this: it is dropped).
    #[error("spool {path} line {line} does not parse: {detail}")]
    ParseSpool {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What the parser said.
        detail: String,
    },
    /// The CA certificate file cannot be read.
    #[error("cannot read the CA certificate {path}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: image_layout::Error,
    },
    /// The CA certificate file holds no PEM certificate.
    #[error("CA certificate {path}: {detail}")]
    ParseCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The enrollment token file cannot be read.
    #[error("cannot read the enrollment token {path}")]
    ReadToken {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: image_layout::Error,
    },
    /// The enrollment token file holds no usable token.
    #[error("enrollment token {path}: {detail}")]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A request could not be made or its answer read (connect, TLS, timeout, a body cut short).
    #[error("{method} {url}")]
    Http {
        /// The method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The endpoint answered with a status the request does not expect.
    #[error("{method} {url}: status {status}{}", error.as_ref().map_or(String::new(), |e| format!(" ({e})")))]
    Status {
        /// The method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The `error` word of the endpoint's refusal, when it sent one.
        error: Option<String>,
    },
    /// The endpoint's answer is not the body the protocol says.
    #[error("{method} {url}: the answer does not parse: {detail}")]
    BadReply {
        /// The method.
        method: &'static str,
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// A request or a body broke a rule of the protocol (a signature that cannot be made, a body past its bound).
    #[error("fleet protocol")]
    Wire {
        /// The cause.
        #[source]
        source: fleet_wire::Error,
    },
    /// The updater failed (an install, the journal, the boot state).
    #[error("updater")]
    Updater {
        /// The cause.
        #[source]
        source: updater::Error,
    },
    /// `edge-init` could not be asked, or refused.
    #[error("edge-init at {socket}: {detail}")]
    Init {
        /// The control socket.
        socket: PathBuf,
        /// What happened.
        detail: String,
    },
    /// The readiness datagram could not be sent.
    #[error("cannot notify {socket}")]
    Notify {
        /// The notify socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// `Result` with the agent's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The exit code of `edge-agent` for this error (docs/agent.md, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ReadConfig { .. }
            | Error::ParseConfig { .. }
            | Error::Config { .. }
            | Error::ReadKey { .. }
            | Error::CorruptKey { .. }
            | Error::ReadCa { .. }
            | Error::ParseCa { .. }
            | Error::ReadToken { .. }
            | Error::Token { .. } => exit::CONFIG,
            _ => exit::FAILURE,
        }
    }
}

/// An error and its causes on one line, joined by `: `.
pub fn chain(e: &dyn std::error::Error) -> String {
    updater::error::chain(e)
}
