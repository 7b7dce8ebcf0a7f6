//! The hardware watchdog (to be written).
