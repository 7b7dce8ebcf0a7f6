//! The seam of time and chance: the loop's waits, the signatures' `created` and the jitter's random draw go
//! through [`Clock`], so tests run the real loop without waiting and with chosen draws.

use std::time::Duration;

use rand_core::RngCore as _;

/// Time and chance as the loop uses them.
pub trait Clock {
    /// Seconds since the Unix epoch.
    fn now_unix_secs(&self) -> u64;
    /// Waits `d`.
    fn sleep(&mut self, d: Duration);
    /// A draw in `0.0..1.0` for the jitter.
    fn random(&mut self) -> f64;
}

/// The machine's clock and random source.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_secs(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }

    fn random(&mut self) -> f64 {
        // 53 random bits, the precision of an f64 in 0..1.
        (rand_core::OsRng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
