//! The `--json` output of `edge-bootctl status`; field names are an interface (docs/boot-state.md, "edge-bootctl").

use serde::Serialize;

/// One slot.
#[derive(Debug, Serialize)]
pub struct SlotStatus {
    /// `A` or `B`.
    pub slot: char,
    /// Marked good.
    pub good: bool,
    /// Tries left.
    pub tries: u8,
    /// Place in the boot order (1 first).
    pub order: u8,
    /// Running now (when known).
    pub booted: bool,
}

/// `edge-bootctl status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `grub` or `uboot`.
    pub backend: &'static str,
    /// The running slot, when the command line names one.
    pub booted: Option<char>,
    /// First in boot order.
    pub active: char,
    /// Booted when no slot qualifies.
    pub last_good: char,
    /// What the bootloader will do next: `good`, `trial` or `fallback`.
    pub next_boot: &'static str,
    /// The slot it will boot next.
    pub next_slot: char,
    /// Whether both stored copies are whole.
    pub copies_whole: bool,
    /// Both slots.
    pub slots: Vec<SlotStatus>,
}
