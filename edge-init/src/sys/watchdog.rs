//! The watchdog ioctls (to be written).
