//! The node's telemetry (docs/telemetry.md): what the node collects (its logs and metrics), the spool that keeps it
//! on the data partition through outages and power cuts, and the shipping of it to the endpoint.

pub mod figures;
pub mod kmsg;
pub mod run;
pub mod spool;
