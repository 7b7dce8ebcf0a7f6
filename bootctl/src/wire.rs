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

/// One stored copy of the boot state.
#[derive(Debug, Serialize)]
pub struct CopyStatus {
    /// 0 or 1 (`state0.env` and `state1.env`, or the first and second line of `fw_env.config`).
    pub copy: u8,
    /// Its file, or its device and offset.
    pub location: String,
    /// `whole`, `damaged` or `missing`.
    pub state: &'static str,
    /// The copy the state is read from.
    pub current: bool,
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
    /// Each stored copy.
    pub copies: Vec<CopyStatus>,
    /// Both slots.
    pub slots: Vec<SlotStatus>,
}
