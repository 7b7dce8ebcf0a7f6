//! What the real-bootloader rule tests share: a compact way to write a boot state, and one sampled case.

use bootctl::rules::{BootState, Slot, SlotState};

/// A boot state from (good, tries) of A and of B, the active slot and the last good slot.
pub fn state(a: (bool, u8), b: (bool, u8), active: Slot, last_good: Slot) -> BootState {
    let st = |(good, tries)| SlotState { good, tries };
    BootState::from_parts(st(a), st(b), active, last_good)
}

/// One sampled state: both stored copies, as the bootloader finds them.
pub struct Case {
    /// What the case covers.
    pub name: &'static str,
    /// Copy 0 and copy 1.
    pub copies: [Vec<u8>; 2],
}
