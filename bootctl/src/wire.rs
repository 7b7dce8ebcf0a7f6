//! The `--json` output of `edge-bootctl status`, and how it is read and shown to a person: one rendering of the
//! boot state, which `edge-update status` shows too. Field names are an interface (docs/boot-state.md,
//! "edge-bootctl"; the words are docs/json.md's).

use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::backend::Backend;
use crate::config::BackendKind;
use crate::error::Result;
use crate::health::CopyHealth;
use crate::rules::{Boot, Slot};

/// `schema` of `edge-bootctl status --json`.
pub const STATUS_SCHEMA: &str = "edge-bootctl.status/1";

/// One slot, in the one shape docs/json.md gives a slot's state wherever it appears (`edge-update status` adds the
/// bundle the slot holds around it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    /// `A` or `B`.
    pub slot: char,
    /// Marked good.
    pub good: bool,
    /// Tries left.
    pub tries: u8,
    /// Place in the boot order (1 first).
    pub order: u8,
    /// First in boot order.
    pub active: bool,
    /// Running now (when known).
    pub booted: bool,
}

/// What the bootloader will do next (docs/json.md, `next_boot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NextBoot {
    /// Boot a good slot.
    Good,
    /// Take a try off a slot on trial and boot it.
    Trial,
    /// No slot qualifies: boot the last good one.
    Fallback,
}

impl NextBoot {
    /// What the bootloader does for `boot`.
    pub fn of(boot: Boot) -> NextBoot {
        match boot {
            Boot::Good(_) => NextBoot::Good,
            Boot::Trial(_) => NextBoot::Trial,
            Boot::Fallback(_) => NextBoot::Fallback,
        }
    }

    /// The word, as in JSON.
    pub fn word(self) -> &'static str {
        match self {
            NextBoot::Good => "good",
            NextBoot::Trial => "trial",
            NextBoot::Fallback => "fallback",
        }
    }
}

impl fmt::Display for NextBoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// One stored copy of the boot state.
#[derive(Debug, Serialize)]
pub struct CopyStatus {
    /// 0 or 1 (`state0.env` and `state1.env`, or the first and second line of `fw_env.config`).
    pub copy: u8,
    /// Its file, or its device and offset.
    pub location: String,
    /// `whole`, `damaged` or `missing`.
    pub state: CopyHealth,
    /// The copy the state is read from.
    pub current: bool,
}

/// `edge-bootctl status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// [`STATUS_SCHEMA`].
    pub schema: &'static str,
    /// `grub` or `uboot`.
    pub backend: BackendKind,
    /// The running slot, when the command line names one.
    pub booted: Option<char>,
    /// First in boot order.
    pub active: char,
    /// Booted when no slot qualifies.
    pub last_good: char,
    /// What the bootloader will do next.
    pub next_boot: NextBoot,
    /// The slot it will boot next.
    pub next_slot: char,
    /// Whether both stored copies are whole.
    pub copies_whole: bool,
    /// Each stored copy.
    pub copies: Vec<CopyStatus>,
    /// Both slots.
    pub slots: Vec<SlotStatus>,
}

impl Status {
    /// Reads the boot state and its copies from `backend`; `booted` is the running slot, when it can be told.
    pub fn read(backend: &mut dyn Backend, booted: Option<Slot>) -> Result<Status> {
        let state = backend.read()?;
        let (next, _) = state.boot();
        let order = state.order();
        let slots = Slot::ALL
            .iter()
            .map(|&s| SlotStatus {
                slot: s.letter(),
                good: state.slot(s).good,
                tries: state.slot(s).tries,
                order: if order[0] == s { 1 } else { 2 },
                active: order[0] == s,
                booted: booted == Some(s),
            })
            .collect();
        let copies = backend.copies()?;
        Ok(Status {
            schema: STATUS_SCHEMA,
            backend: backend.kind(),
            booted: booted.map(Slot::letter),
            active: state.active().letter(),
            last_good: state.last_good().letter(),
            next_boot: NextBoot::of(next),
            next_slot: next.slot().letter(),
            copies_whole: copies.both_whole(),
            copies: (0..2)
                .map(|i| CopyStatus {
                    copy: i as u8,
                    location: copies.locations[i].clone(),
                    state: copies.health[i],
                    current: copies.current == Some(i),
                })
                .collect(),
            slots,
        })
    }

    /// The status for a person, one line per fact (no final newline).
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "backend:    {}", self.backend.word());
        let _ = writeln!(out, "booted:     {}", self.booted.map_or("unknown".to_owned(), |c| c.to_string()));
        let _ = writeln!(out, "next boot:  {} ({})", self.next_slot, self.next_boot);
        let _ = writeln!(out, "last good:  {}", self.last_good);
        for slot in &self.slots {
            let mut notes = vec![if slot.good { "good".to_owned() } else { "not good".to_owned() }];
            if !slot.good {
                notes.push(format!("{} tries left", slot.tries));
            }
            if slot.active {
                notes.push("active".to_owned());
            }
            if slot.booted {
                notes.push("booted".to_owned());
            }
            let _ = writeln!(out, "slot {}:     {}", slot.slot, notes.join(", "));
        }
        let copy = |c: &CopyStatus| {
            let note = match c.state {
                _ if c.current => " (read)",
                CopyHealth::Missing => " (the next write creates it)",
                CopyHealth::Damaged => " (the next write replaces it)",
                CopyHealth::Whole => "",
            };
            format!("{} {}{note}", c.copy, c.state.word())
        };
        let copies = if self.copies_whole {
            "both whole".to_owned()
        } else {
            self.copies.iter().map(copy).collect::<Vec<_>>().join(", ")
        };
        let _ = write!(out, "copies:     {copies}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the bootloader does next is named with docs/json.md's words.
    #[test]
    fn issue_15_next_boot_words() {
        let check = |boot: Boot, expected: NextBoot, word: &str| {
            assert_eq!(NextBoot::of(boot), expected);
            assert_eq!(expected.to_string(), word);
        };
        check(Boot::Good(Slot::A), NextBoot::Good, "good");
        check(Boot::Trial(Slot::B), NextBoot::Trial, "trial");
        check(Boot::Fallback(Slot::A), NextBoot::Fallback, "fallback");
    }
}
