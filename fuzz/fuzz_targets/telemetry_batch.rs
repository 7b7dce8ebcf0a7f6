//! Fuzz target: a telemetry batch as the endpoint reads it from a node (docs/fleet-protocol.md, "Telemetry"): the
//! JSON of a `TelemetryBatch`, read and checked as `POST /v1/nodes/{id}/telemetry` does (`fleet_wire::telemetry`).
//!
//! A batch that reads and passes its check writes out as JSON that reads back to the same batch, passes its check
//! again, and holds no label the endpoint reserves for itself; no input panics the reader or the check, however
//! deep, long or numeric it is.
#![no_main]

use fleet_wire::telemetry::{Body, TelemetryBatch, RESERVED_LABELS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<TelemetryBatch>(data) else { return };
    if batch.check().is_err() {
        return;
    }
    for r in &batch.records {
        if let Body::Metrics(m) = &r.body {
            for s in &m.samples {
                assert!(s.value.is_finite(), "a checked sample has a finite value");
                assert!(s.labels.keys().all(|k| !RESERVED_LABELS.contains(&k.as_str()) && !k.starts_with("__")));
            }
        }
    }
    let again = serde_json::to_vec(&batch).expect("a checked batch writes out");
    let back: TelemetryBatch = serde_json::from_slice(&again).expect("what was written reads back");
    assert_eq!(back, batch, "the batch round-trips");
    back.check().expect("the batch read back passes its check");
});
