//! The slot rules, once: what the bootloader boots, and what `set-active`, `mark-good` and `mark-bad` change.
//!
//! Every backend stores a [`BootState`]; the generated GRUB and U-Boot scripts implement [`BootState::boot`] in
//! their own language and are tested against it; docs/boot-state.md's table is generated from here.
//! The rules (DESIGN.md, "Slot rules"): the bootloader boots the first slot in order that is good, or that has
//! tries left, taking one try off before booting a slot that is not good; `set-active S` puts S first, not good,
//! with N tries; `mark-good` sets the booted slot good; a failed health check sets the booted slot to no tries and
//! not good; a slot with no tries that is not good is never booted while another slot qualifies. When no slot
//! qualifies (both were marked bad), the bootloader boots the last slot that was good rather than stop: a node
//! that boots something can still be updated or rolled back, a node that stops cannot.

use std::fmt;

use crate::error::{Error, Result};

/// One of the two root slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// Both slots.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The slot's letter.
    pub fn letter(self) -> char {
        match self {
            Slot::A => 'A',
            Slot::B => 'B',
        }
    }

    /// Parses `A`, `B`, `a` or `b`.
    pub fn parse(s: &str) -> Option<Slot> {
        match s {
            "A" | "a" => Some(Slot::A),
            "B" | "b" => Some(Slot::B),
            _ => None,
        }
    }

    fn idx(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// Tries a freshly activated slot gets when none is configured.
pub const DEFAULT_TRIES: u8 = 3;
/// The most tries a slot may be given (one decimal digit, so that the bootloader scripts keep a fixed layout).
pub const MAX_TRIES: u8 = 9;

/// What one slot carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotState {
    /// Marked good by a passed health check.
    pub good: bool,
    /// Boots left before the slot is given up, while it is not good.
    pub tries: u8,
}

/// The whole boot state of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BootState {
    slots: [SlotState; 2],
    /// The active slot: first in boot order; the other is second.
    active: Slot,
    /// The slot most recently marked good, booted when no slot qualifies.
    last_good: Slot,
}

/// What the bootloader does with a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// Boots a good slot; nothing changes.
    Good(Slot),
    /// Boots a slot that is not good, after taking one try off.
    Trial(Slot),
    /// No slot qualifies: boots the last good slot, changing nothing.
    Fallback(Slot),
}

impl Boot {
    /// The slot booted.
    pub fn slot(self) -> Slot {
        match self {
            Boot::Good(s) | Boot::Trial(s) | Boot::Fallback(s) => s,
        }
    }
}

impl BootState {
    /// A node as provisioned: `good` is good and active, the other slot empty (not good, no tries).
    pub fn provisioned(good: Slot) -> BootState {
        let mut slots = [SlotState { good: false, tries: 0 }; 2];
        slots[good.idx()].good = true;
        BootState { slots, active: good, last_good: good }
    }

    /// A state from its parts; `tries` above [`MAX_TRIES`] are capped.
    pub fn from_parts(a: SlotState, b: SlotState, active: Slot, last_good: Slot) -> BootState {
        let cap = |s: SlotState| SlotState { good: s.good, tries: s.tries.min(MAX_TRIES) };
        BootState { slots: [cap(a), cap(b)], active, last_good }
    }

    /// One slot's state.
    pub fn slot(&self, s: Slot) -> SlotState {
        self.slots[s.idx()]
    }

    /// The active slot (first in boot order).
    pub fn active(&self) -> Slot {
        self.active
    }

    /// The boot order, first to last.
    pub fn order(&self) -> [Slot; 2] {
        [self.active, self.active.other()]
    }

    /// The slot booted when no slot qualifies.
    pub fn last_good(&self) -> Slot {
        self.last_good
    }

    /// Whether the bootloader may boot `s` (good, or tries left).
    pub fn qualifies(&self, s: Slot) -> bool {
        let st = self.slot(s);
        st.good || st.tries > 0
    }

    /// What the bootloader boots, and the state it saves before booting.
    pub fn boot(&self) -> (Boot, BootState) {
        for s in self.order() {
            let st = self.slot(s);
            if st.good {
                return (Boot::Good(s), *self);
            }
            if st.tries > 0 {
                let mut next = *self;
                next.slots[s.idx()].tries -= 1;
                return (Boot::Trial(s), next);
            }
        }
        (Boot::Fallback(self.last_good), *self)
    }

    /// `set-active S`: S first in order, not good, with `tries` tries (capped at [`MAX_TRIES`]).
    ///
    /// Refused unless the other slot is good: S is about to hold a new image, and the other slot must be the proven
    /// fallback (it becomes the last good slot). This also keeps an install from overwriting the only good slot.
    pub fn set_active(&self, s: Slot, tries: u8) -> Result<BootState> {
        if !self.slot(s.other()).good {
            return Err(Error::NoFallback { slot: s, other: s.other() });
        }
        let mut next = *self;
        next.active = s;
        next.slots[s.idx()] = SlotState { good: false, tries: tries.min(MAX_TRIES) };
        next.last_good = s.other();
        Ok(next)
    }

    /// `mark-good` on the booted slot.
    pub fn mark_good(&self, booted: Slot) -> BootState {
        let mut next = *self;
        next.slots[booted.idx()].good = true;
        next.last_good = booted;
        next
    }

    /// `mark-bad S` (and a failed health check on the booted slot): not good, no tries.
    pub fn mark_bad(&self, s: Slot) -> BootState {
        let mut next = *self;
        next.slots[s.idx()] = SlotState { good: false, tries: 0 };
        next
    }
}

/// The bootloader's decision for every kind of state, as the Markdown table in docs/boot-state.md ("Rules"): one
/// row per combination of the active slot's and the other slot's good flag and tries (none, some).
pub fn decision_table() -> String {
    let mut out =
        String::from("| active slot | other slot | boots | saves before booting |\n| --- | --- | --- | --- |\n");
    let describe = |st: SlotState| match (st.good, st.tries) {
        (true, 0) => "good".to_owned(),
        (true, t) => format!("good, {t} tries"),
        (false, 0) => "not good, no tries".to_owned(),
        (false, t) => format!("not good, {t} tries"),
    };
    for (ag, at) in [(true, 0), (false, 2), (false, 0)] {
        for (og, ot) in [(true, 0), (false, 2), (false, 0)] {
            let a = SlotState { good: ag, tries: at };
            let o = SlotState { good: og, tries: ot };
            // The active slot is A; the last good slot is B (what activating A leaves behind).
            let s = BootState::from_parts(a, o, Slot::A, Slot::B);
            let (boot, next) = s.boot();
            let role = |x: Slot| if x == s.active() { format!("{x} (active)") } else { format!("{x} (other)") };
            let (what, saves) = match boot {
                Boot::Good(x) => (role(x), "nothing".to_owned()),
                Boot::Trial(x) => (
                    format!("{}, as a trial", role(x)),
                    format!("{x} tries {} -> {}", s.slot(x).tries, next.slot(x).tries),
                ),
                Boot::Fallback(x) => (format!("{x}, the last good slot (no slot qualifies)"), "nothing".to_owned()),
            };
            out.push_str(&format!("| {} | {} | {what} | {saves} |\n", describe(a), describe(o)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashSet, VecDeque};

    const N: u8 = 3;

    /// Every state with tries up to N: 2 × 2 × 4 × 4 × 2 × 2 = 256.
    fn all_states() -> Vec<BootState> {
        let mut v = Vec::new();
        for ga in [false, true] {
            for gb in [false, true] {
                for ta in 0..=N {
                    for tb in 0..=N {
                        for active in Slot::ALL {
                            for last_good in Slot::ALL {
                                let a = SlotState { good: ga, tries: ta };
                                let b = SlotState { good: gb, tries: tb };
                                v.push(BootState::from_parts(a, b, active, last_good));
                            }
                        }
                    }
                }
            }
        }
        v
    }

    #[test]
    fn boot_table() {
        let st = |good, tries| SlotState { good, tries };
        let check = |a, b, active, expected: Boot, tries_after: (u8, u8)| {
            let s = BootState::from_parts(a, b, active, Slot::A);
            let (boot, next) = s.boot();
            assert_eq!(boot, expected, "{s:?}");
            assert_eq!((next.slot(Slot::A).tries, next.slot(Slot::B).tries), tries_after, "{s:?}");
        };
        check(st(true, 0), st(false, 0), Slot::A, Boot::Good(Slot::A), (0, 0));
        check(st(true, 0), st(false, 3), Slot::B, Boot::Trial(Slot::B), (0, 2));
        check(st(true, 0), st(false, 0), Slot::B, Boot::Good(Slot::A), (0, 0));
        check(st(true, 2), st(true, 2), Slot::B, Boot::Good(Slot::B), (2, 2));
        check(st(false, 1), st(false, 0), Slot::B, Boot::Trial(Slot::A), (0, 0));
        check(st(false, 0), st(false, 0), Slot::B, Boot::Fallback(Slot::A), (0, 0));
    }

    /// Repeated boots with nobody marking anything good (watchdog resets, failed checks before mark-good) reach a
    /// good slot within N + 1 boots, from every state that has one.
    #[test]
    fn a_good_slot_stays_reachable() {
        for s in all_states() {
            if !Slot::ALL.iter().any(|&x| s.slot(x).good) {
                continue;
            }
            let mut cur = s;
            let mut reached = false;
            for _ in 0..=2 * N + 1 {
                let (boot, next) = cur.boot();
                if matches!(boot, Boot::Good(_)) {
                    reached = true;
                    break;
                }
                cur = next;
            }
            assert!(reached, "{s:?} never boots a good slot");
        }
    }

    /// A slot never marked good is booted at most N times after it is made active, whatever else happens: boots,
    /// watchdog resets, health failures, mark-bad, and set-active of the other slot. Explored exhaustively from
    /// every state, with the number of trial boots of the slot under watch as part of the search state.
    #[test]
    fn an_unproven_slot_boots_at_most_n_times() {
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        struct Node {
            s: BootState,
            booted: Slot,
            boots: u8,
        }
        for start in all_states() {
            for watched in Slot::ALL {
                // Activation needs the other slot good; it is what the node runs while installing.
                let Ok(s) = start.set_active(watched, N) else { continue };
                let first = Node { s, booted: watched.other(), boots: 0 };
                let mut seen = HashSet::new();
                let mut queue = VecDeque::from([first]);
                while let Some(n) = queue.pop_front() {
                    if !seen.insert(n) {
                        continue;
                    }
                    assert!(n.boots <= N, "{watched} booted {} times from {start:?}", n.boots);
                    let mut push = |s: BootState, booted: Slot, boots: u8| queue.push_back(Node { s, booted, boots });
                    // Boot (power on, watchdog reset, reboot after a failed check).
                    let (boot, next) = n.s.boot();
                    let b = boot.slot();
                    push(next, b, n.boots + u8::from(b == watched));
                    // Userspace on the booted slot, as long as it is not the watched one being proven good. An install
                    // activates the slot that is not booted, which is the watched one: that starts a new watch.
                    if n.booted != watched {
                        push(n.s.mark_good(n.booted), n.booted, n.boots);
                    }
                    assert!(n.s.set_active(watched.other(), N).is_err(), "the watched slot is never good here");
                    for x in Slot::ALL {
                        push(n.s.mark_bad(x), n.booted, n.boots);
                    }
                }
            }
        }
    }

    #[test]
    fn a_slot_without_tries_that_is_not_good_is_never_booted_while_another_qualifies() {
        for s in all_states() {
            let (boot, _) = s.boot();
            let b = boot.slot();
            if !s.qualifies(b) {
                assert!(matches!(boot, Boot::Fallback(_)), "{s:?}");
                assert!(!Slot::ALL.iter().any(|&x| s.qualifies(x)), "{s:?}");
            }
        }
    }

    #[test]
    fn userspace_verbs() {
        let s = BootState::provisioned(Slot::A);
        assert!(matches!(s.set_active(Slot::A, 3), Err(Error::NoFallback { slot: Slot::A, other: Slot::B })));
        let s = s.set_active(Slot::B, 12).expect("A is good");
        assert_eq!(s.last_good(), Slot::A);
        assert_eq!(s.active(), Slot::B);
        assert_eq!(s.slot(Slot::B), SlotState { good: false, tries: MAX_TRIES });
        let s = s.mark_good(Slot::B);
        assert_eq!((s.slot(Slot::B).good, s.last_good()), (true, Slot::B));
        let s = s.mark_bad(Slot::B);
        assert_eq!(s.slot(Slot::B), SlotState { good: false, tries: 0 });
        assert_eq!(s.boot().0, Boot::Good(Slot::A));
    }
}
