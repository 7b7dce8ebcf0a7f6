//! What each stored copy of the boot state is (whole, damaged or missing) and which one is read: both backends
//! keep two copies, and `status` reports them the same way whichever backend holds them; a module of its own so that
//! the backends and the trait over them share it without importing each other.

/// What a stored copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyHealth {
    /// Whole and valid: it may be read.
    Whole,
    /// There but not whole: torn by a power cut, damaged, blank, or not the size its format says. Never trusted;
    /// the next write goes to it and makes it whole.
    Damaged,
    /// Not there: the file does not exist, or the file or device ends before the copy starts. The next write
    /// creates it where a file can grow.
    Missing,
}

impl CopyHealth {
    /// The word `status` prints, in text and in JSON.
    pub fn word(self) -> &'static str {
        match self {
            CopyHealth::Whole => "whole",
            CopyHealth::Damaged => "damaged",
            CopyHealth::Missing => "missing",
        }
    }
}

// In `status --json` a copy's health is its word (docs/json.md).
impl serde::Serialize for CopyHealth {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.word())
    }
}

/// Both copies of the boot state, as `status` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copies {
    /// Where each copy is: its file, or its device and offset.
    pub locations: [String; 2],
    /// What each copy is.
    pub health: [CopyHealth; 2],
    /// The copy the state is read from (the newest whole one); `None` when no copy is whole.
    pub current: Option<usize>,
}

impl Copies {
    /// Whether both copies are whole.
    pub fn both_whole(&self) -> bool {
        self.health.iter().all(|h| *h == CopyHealth::Whole)
    }
}
