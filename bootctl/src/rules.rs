//! The slot rules (being written).
