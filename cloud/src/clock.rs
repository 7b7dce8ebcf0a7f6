//! The endpoint's clock: the seam where tests set the time the signature window, token expiry and pruning are
//! measured against (STYLE.md: `Clock` is one of the few traits, at a seam where the world varies).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Seconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> u64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// A clock a test sets.
#[derive(Debug, Clone, Default)]
pub struct FixedClock(Arc<AtomicU64>);

impl FixedClock {
    /// A clock at `now`.
    pub fn at(now: u64) -> FixedClock {
        FixedClock(Arc::new(AtomicU64::new(now)))
    }

    /// Moves it to `now`.
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// `secs` as RFC 3339 UTC (`2026-12-05T10:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).expect("a UTC time formats as RFC 3339")
}

/// `ms` milliseconds since the epoch as RFC 3339 UTC with milliseconds (`2026-12-05T10:00:00.250Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let base = rfc3339(t.unix_timestamp());
    format!("{}.{:03}Z", base.trim_end_matches('Z'), ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_the_node_api_checks_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        fleet_wire::node::check_time("t", &rfc3339(1_800_000_000)).expect("node API time");
        assert_eq!(rfc3339_ms(1_800_000_000_250), "2027-01-15T08:00:00.250Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        fleet_wire::node::check_time("t", &rfc3339_ms(1_800_000_000_250)).expect("node API time");
    }
}
