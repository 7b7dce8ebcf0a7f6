//! What the fleet endpoint (`edge-cloud`) and the node agent both speak: the signing of node requests with HTTP
//! Message Signatures (RFC 9421, ed25519), the `Content-Digest` of their bodies (RFC 9530), and the node API's
//! bodies and paths (`node`), and the admin API's (`admin`).
//!
//! It is a crate of its own so that both sides link one implementation of every rule of the protocol, and it has no
//! async runtime, no clock and no I/O, so that the agent (a small static binary) links it as easily as the endpoint.
//! The protocol is docs/fleet-protocol.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod digest;
pub mod error;
pub mod node;
pub mod rollout;
pub mod sfv;
pub mod signature;
pub mod telemetry;

pub use error::{Error, FieldError, FieldErrorKind, Result};
