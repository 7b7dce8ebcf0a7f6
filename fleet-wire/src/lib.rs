//! What the fleet endpoint (`edge-cloud`) and the node agent both speak: for now, the signing of node requests with
//! HTTP Message Signatures (RFC 9421, ed25519) and the `Content-Digest` of their bodies (RFC 9530); the request and
//! reply types of the node and admin APIs will join them.
//!
//! It is a crate of its own so that both sides link one implementation of every rule of the protocol, and it has no
//! async runtime, no clock and no I/O, so that the agent (a small static binary) links it as easily as the endpoint.
//! The protocol is docs/fleet-protocol.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod digest;
pub mod error;
pub mod sfv;
pub mod signature;

pub use error::{Error, FieldError, FieldErrorKind, Result};
