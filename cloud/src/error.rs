//! The crate's one `Error`: what the store, the server and the admin client can fail at, and `Refusal`, the
//! refusals of the fleet's rules that the store decides inside its transactions (a revoked token, a replayed
//! request), which the API turns into status codes and `error` words (docs/fleet-protocol.md, "Status codes").

use std::path::PathBuf;

/// Everything `edge-cloud` can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule of the fleet refused the request; nothing was changed.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// A database statement failed.
    #[error("database: cannot {what}")]
    Database {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The database's migrations could not be run.
    #[error("database: cannot run the migrations")]
    Migrate {
        /// The driver's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A stored JSON document does not read back.
    #[error("database: stored {what} is not valid JSON")]
    StoredJson {
        /// Which column.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A stored word is not one of its set.
    #[error("database: stored {what} {value:?} is not a known word")]
    StoredWord {
        /// Which column.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// A directory or file of the endpoint's data could not be used.
    #[error("cannot {what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("tls: {what}")]
    Tls {
        /// What is wrong.
        what: String,
    },
    /// The fleet keyring could not be loaded.
    #[error("cannot load the fleet keyring {path}")]
    Keyring {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: image_layout::Error,
    },
    /// A flag's value is not usable.
    #[error("{flag}: {expected}")]
    Usage {
        /// The flag.
        flag: &'static str,
        /// What it should be.
        expected: String,
    },
    /// The endpoint could not be reached, or its answer not read (admin client).
    #[error("cannot {what} {url}")]
    Http {
        /// What was being done.
        what: &'static str,
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: ureq::Error,
    },
    /// The endpoint refused a request (admin client).
    #[error("{url}: {status} {error}: {message}")]
    Endpoint {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The refusal's word.
        error: String,
        /// The refusal's sentence.
        message: String,
    },
    /// The endpoint's reply does not read as the expected body (admin client).
    #[error("{url}: the reply is not the expected JSON")]
    Reply {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The exit code `edge-cloud` ends with (docs/cloud.md, "Exit codes"): 2 usage, 3 refused by the endpoint or
    /// its rules, 4 unreachable, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage { .. } => 2,
            Error::Refused(_) | Error::Endpoint { .. } => 3,
            Error::Http { .. } => 4,
            _ => 1,
        }
    }
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;

/// A refusal by the fleet's rules, decided by the store in the transaction that would have made the change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No enrollment token has this secret.
    #[error("the enrollment token is not known")]
    TokenUnknown,
    /// The enrollment token was revoked.
    #[error("the enrollment token was revoked")]
    TokenRevoked,
    /// The enrollment token has expired.
    #[error("the enrollment token has expired")]
    TokenExpired,
    /// The enrollment token has been used as often as it may.
    #[error("the enrollment token has no uses left")]
    TokenExhausted,
    /// No node has this id.
    #[error("node {id} is not enrolled")]
    NodeUnknown {
        /// The id.
        id: String,
    },
    /// The node was rejected by an admin.
    #[error("node {id} was rejected")]
    NodeRejected {
        /// The id.
        id: String,
    },
    /// The node was decommissioned (or merged into another).
    #[error("node {id} was decommissioned")]
    NodeDecommissioned {
        /// The id.
        id: String,
    },
    /// This signed request was received before.
    #[error("this signed request was already received; sign it again to resend")]
    Replayed,
    /// The thing named does not exist.
    #[error("no {what} {id}")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        id: String,
    },
    /// A field of the request does not parse or is out of bounds (a selector, a policy, a time zone, a window).
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The change does not apply to the thing as it is.
    #[error("{reason}")]
    Conflict {
        /// Why.
        reason: String,
    },
}

/// An error and each of its causes on one line, for the log.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}
