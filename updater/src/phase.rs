//! The update's decisions, pure: `step(journal, event) -> (journal, actions)`.
//!
//! Every wakeup that can change an update (a boot, the health checks' verdict, an operator's verb, the end of an
//! install) is an [`Event`]; [`step`] decides the new journal and the [`Action`]s, in the order they must run, and
//! the thin executor in `run` carries them out against the real journal file and bootloader backend. Keeping the
//! decisions here lets a test enumerate every phase, boot state and event (docs/updater.md, "Reconciling at boot").
//!
//! The ordering rule: when the bootloader state can be read back to tell whether an action happened (set-active,
//! mark-good), the action runs first and the journal is saved after it, and [`Event::Booted`] reads the bootloader
//! to finish the journal after a cut in between. When it cannot (a failed check about to reboot), the journal is
//! saved first, and [`Event::Booted`] repeats the action.

use bootctl::rules::{BootState, Slot};

use crate::error::{Error, Result};
use crate::journal::{Journal, Phase, SlotImage, Update};
use crate::wire::EventKind;

/// What can happen to an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An install is about to write `update.target`; `state` is the boot state now.
    Start {
        /// The new update, in phase `Downloading`.
        update: Box<Update>,
        /// The slot running now.
        booted: Slot,
        /// The boot state now.
        state: BootState,
    },
    /// The install read every chunk back and it matched (or a held target was read back again): flip the
    /// bootloader to the target.
    Flip {
        /// The slot running now.
        booted: Slot,
        /// The boot state now.
        state: BootState,
        /// Reboot into the target once it is flipped.
        reboot: bool,
    },
    /// `edge-update boot`, once per start: the slot running and the state the bootloader left.
    Booted {
        /// The slot running now.
        booted: Slot,
        /// The boot state now.
        state: BootState,
    },
    /// Every health check passed on the booted target.
    ChecksPassed {
        /// The slot running now.
        booted: Slot,
    },
    /// A health check failed, or the deadline passed.
    ChecksFailed {
        /// The slot running now.
        booted: Slot,
        /// What failed.
        reason: String,
    },
    /// `edge-update mark-good`.
    MarkGood {
        /// The slot running now.
        booted: Slot,
        /// The boot state now.
        state: BootState,
    },
    /// `edge-update rollback`.
    Rollback {
        /// The slot running now.
        booted: Slot,
        /// The boot state now.
        state: BootState,
    },
    /// `edge-update cancel`.
    Cancel {
        /// The slot running now.
        booted: Slot,
        /// The boot state now.
        state: BootState,
    },
    /// The reboot that a flip asked for could not be requested (`edge-init` did not answer): the slot stays
    /// flipped, and the next reboot, however it comes, tries it.
    RebootFailed {
        /// Why.
        reason: String,
    },
}

/// Something to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the journal that [`step`] returned, durably.
    Save,
    /// `set-active` the slot (not good, the configured tries).
    SetActive(Slot),
    /// Mark the slot good.
    MarkGood(Slot),
    /// Mark the slot bad (not good, no tries).
    MarkBad(Slot),
    /// Run the health checks; their verdict comes back as an event.
    RunChecks,
    /// Reboot the node.
    Reboot,
    /// Append an event to the event log.
    Emit(Emit),
}

/// An entry for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emit {
    /// The event's kind.
    pub kind: EventKind,
    /// A sentence for a person.
    pub message: String,
}

fn emit(kind: EventKind, message: String) -> Action {
    Action::Emit(Emit { kind, message })
}

/// The result of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The journal after the event.
    pub journal: Journal,
    /// What to do, in order.
    pub actions: Vec<Action>,
}

/// Decides what an event does to an update.
pub fn step(journal: &Journal, event: &Event) -> Result<Step> {
    let mut j = journal.clone();
    let mut actions = Vec::new();
    match event {
        Event::Start { update, booted, state } => {
            if let Some(u) = &journal.update {
                if matches!(u.phase, Phase::Flipped | Phase::Rebooting | Phase::Trial) {
                    return Err(Error::Busy { phase: u.phase, target: u.target });
                }
            }
            if update.target == *booted {
                return Err(Error::TargetBooted { slot: *booted });
            }
            if !state.slot(*booted).good {
                return Err(Error::BootedNotGood { slot: *booted });
            }
            // Durability: the target is made unbootable before its old image is forgotten or a byte of it is
            // written, so a cut anywhere in the install leaves nothing half-written that the bootloader would try.
            let t = state.slot(update.target);
            if t.good || t.tries > 0 {
                actions.push(Action::MarkBad(update.target));
            }
            j.set_slot(update.target, None);
            actions.push(emit(
                EventKind::Started,
                format!("installing {} {} into slot {}", update.bundle.name, update.bundle.version, update.target),
            ));
            j.update = Some((**update).clone());
            actions.push(Action::Save);
        }
        Event::Flip { booted, state, reboot } => {
            let u = current(&mut j, "flip")?;
            if u.phase != Phase::Verified {
                return Err(Error::WrongPhase { verb: "flip", phase: u.phase });
            }
            let target = u.target;
            if target == *booted {
                return Err(Error::TargetBooted { slot: *booted });
            }
            if !state.slot(*booted).good {
                return Err(Error::BootedNotGood { slot: *booted });
            }
            actions.push(Action::SetActive(target));
            actions.push(emit(EventKind::Flipped, format!("slot {target} is active on trial")));
            u.reboot = *reboot;
            u.held = false;
            u.phase = if u.reboot { Phase::Rebooting } else { Phase::Flipped };
            let reboot = u.reboot;
            // The slot holds this bundle from now on, committed or not: `status` shows what is on it.
            let image = SlotImage { bundle: u.bundle.clone(), size_bytes: u.size_bytes };
            j.set_slot(target, Some(image));
            actions.push(Action::Save);
            if reboot {
                actions.push(Action::Reboot);
            }
        }
        Event::Booted { booted, state } => {
            actions.push(emit(EventKind::Booted, describe_boot(*booted, state)));
            booted_step(&mut j, *booted, state, &mut actions);
        }
        Event::ChecksPassed { booted } => {
            let u = current(&mut j, "commit")?;
            if u.phase != Phase::Trial || u.target != *booted {
                return Err(Error::WrongPhase { verb: "commit", phase: u.phase });
            }
            actions.push(Action::MarkGood(*booted));
            commit(&mut j, &mut actions, "health checks passed");
        }
        Event::ChecksFailed { booted, reason } => {
            let u = current(&mut j, "fail")?;
            if u.phase != Phase::Trial || u.target != *booted {
                return Err(Error::WrongPhase { verb: "fail", phase: u.phase });
            }
            fail_trial(u, *booted, reason.clone(), &mut actions);
        }
        Event::MarkGood { booted, state } => {
            let on_trial = j.update.as_ref().is_some_and(|u| {
                matches!(u.phase, Phase::Trial | Phase::Flipped | Phase::Rebooting) && u.target == *booted
            });
            // A slot whose install did not finish holds a partial image, whatever booted it.
            let unfinished = j.update.as_ref().filter(|u| {
                u.target == *booted && (u.phase.is_installing() || matches!(u.phase, Phase::Cancelled | Phase::Failed))
            });
            if let Some(u) = unfinished {
                return Err(Error::WrongPhase { verb: "mark good", phase: u.phase });
            }
            if on_trial {
                actions.push(Action::MarkGood(*booted));
                commit(&mut j, &mut actions, "marked good by the operator");
            } else if !state.slot(*booted).good {
                actions.push(Action::MarkGood(*booted));
                actions.push(emit(EventKind::MarkedGood, format!("slot {booted} marked good by the operator")));
            }
        }
        Event::Rollback { booted, state } => {
            let u = current(&mut j, "roll back")?;
            match u.phase {
                // On the target's boot, before or after `boot` ran.
                Phase::Trial | Phase::Flipped | Phase::Rebooting if u.target == *booted => {
                    fail_trial(u, *booted, "rolled back by the operator".to_owned(), &mut actions);
                }
                Phase::Flipped | Phase::Rebooting | Phase::Verified
                    if u.target != *booted && state.active() == u.target =>
                {
                    let target = u.target;
                    actions.push(Action::MarkBad(target));
                    roll_back(u, "rolled back by the operator before the reboot".to_owned(), &mut actions);
                }
                phase => return Err(Error::WrongPhase { verb: "roll back", phase }),
            }
        }
        Event::Cancel { booted, state } => {
            let u = current(&mut j, "cancel")?;
            let flipped = state.active() == u.target && u.target != *booted && !state.slot(u.target).good;
            match u.phase {
                Phase::Downloading | Phase::Written | Phase::Verified | Phase::Flipped | Phase::Rebooting
                    if u.target != *booted =>
                {
                    if flipped || state.qualifies(u.target) {
                        actions.push(Action::MarkBad(u.target));
                    }
                    u.phase = Phase::Cancelled;
                    u.held = false;
                    u.reason = Some("cancelled by the operator".to_owned());
                    actions.push(emit(EventKind::Cancelled, format!("update of slot {} cancelled", u.target)));
                    actions.push(Action::Save);
                }
                // Cancelling what is cancelled already is done: nothing to do, and no error for a script that
                // repeats itself.
                Phase::Cancelled => {}
                phase => return Err(Error::WrongPhase { verb: "cancel", phase }),
            }
        }
        Event::RebootFailed { reason } => {
            let u = current(&mut j, "record a failed reboot")?;
            if u.phase != Phase::Rebooting {
                return Err(Error::WrongPhase { verb: "record a failed reboot", phase: u.phase });
            }
            u.phase = Phase::Flipped;
            u.reboot = false;
            let target = u.target;
            actions.push(emit(
                EventKind::RebootFailed,
                format!("slot {target} is active on trial, but the reboot could not be requested: {reason}"),
            ));
            actions.push(Action::Save);
        }
    }
    Ok(Step { journal: j, actions })
}

fn current<'a>(j: &'a mut Journal, verb: &'static str) -> Result<&'a mut Update> {
    j.update.as_mut().ok_or(Error::NoUpdate { verb })
}

fn describe_boot(booted: Slot, state: &BootState) -> String {
    let s = state.slot(booted);
    let how = if s.good { "good".to_owned() } else { format!("on trial, {} tries left", s.tries) };
    format!("booted slot {booted} ({how})")
}

/// Reconciles the journal with what the bootloader booted (docs/updater.md, "Reconciling at boot").
fn booted_step(j: &mut Journal, booted: Slot, state: &BootState, actions: &mut Vec<Action>) {
    let Some(u) = j.update.as_mut() else { return };
    let target = u.target;
    let t = state.slot(target);
    // The bootloader's state is the truth about a flip: a cut after set-active and before the journal said
    // `flipped` leaves the target active, not good, with tries (or booted on one). An earlier failed update of the
    // same slot leaves it active with no tries: that is no flip.
    let flip_done = state.active() == target && !t.good && (t.tries > 0 || booted == target);
    let phase = match u.phase {
        Phase::Verified if flip_done => Phase::Flipped,
        p => p,
    };
    match phase {
        Phase::Downloading | Phase::Written | Phase::Verified => {
            if booted == target {
                u.phase = Phase::Failed;
                u.held = false;
                u.reason = Some(format!("slot {target} was booted while its install was unfinished"));
                actions.push(emit(
                    EventKind::Failed,
                    format!("slot {target} was booted while its install was unfinished"),
                ));
                actions.push(Action::Save);
            } else if u.held && phase == Phase::Verified {
                // Held on purpose: it waits for its flip across reboots, which is no interruption.
            } else {
                let message = format!(
                    "install of slot {target} interrupted in phase {} with {}/{} chunks; install again to resume",
                    u.phase.name(),
                    u.n_done(),
                    u.n_chunks
                );
                actions.push(emit(EventKind::Interrupted, message));
            }
        }
        Phase::Flipped | Phase::Rebooting | Phase::Trial => {
            if booted == target {
                if t.good {
                    // A cut after mark-good and before the journal said `committed`: finish the commit.
                    commit(j, actions, "commit finished after a restart");
                } else if let Some(reason) = u.reason.clone() {
                    // A failed check was recorded, but the mark-bad or the reboot did not happen: do them again.
                    actions.push(emit(EventKind::RollingBack, format!("slot {target} failed: {reason}; rebooting")));
                    actions.push(Action::MarkBad(target));
                    actions.push(Action::Reboot);
                } else {
                    u.phase = Phase::Trial;
                    u.held = false;
                    actions.push(emit(EventKind::Trial, format!("slot {target} on trial; running health checks")));
                    actions.push(Action::Save);
                    actions.push(Action::RunChecks);
                }
            } else if flip_done && t.tries > 0 {
                // Flipped but not rebooted yet (`boot` run by hand): the bootloader will try the target next.
            } else {
                let reason = u.reason.clone().unwrap_or_else(|| {
                    format!(
                        "the bootloader fell back to slot {booted}: slot {target} was not good and had no tries left"
                    )
                });
                if state.qualifies(target) && !t.good {
                    actions.push(Action::MarkBad(target));
                }
                roll_back(u, reason, actions);
            }
        }
        Phase::Committed | Phase::RolledBack | Phase::Cancelled | Phase::Failed => {}
    }
}

fn commit(j: &mut Journal, actions: &mut Vec<Action>, how: &str) {
    let u = j.update.as_mut().expect("commit is only reached with an update");
    u.phase = Phase::Committed;
    u.held = false;
    u.reason = None;
    let (target, bundle, size_bytes) = (u.target, u.bundle.clone(), u.size_bytes);
    actions.push(emit(
        EventKind::Committed,
        format!("slot {target} committed with {} {}: {how}", bundle.name, bundle.version),
    ));
    j.security_version = j.security_version.max(bundle.security_version);
    j.set_slot(target, Some(SlotImage { bundle, size_bytes }));
    actions.push(Action::Save);
}

fn fail_trial(u: &mut Update, booted: Slot, reason: String, actions: &mut Vec<Action>) {
    actions.push(emit(EventKind::RollingBack, format!("slot {booted} failed: {reason}; rebooting")));
    u.reason = Some(reason);
    // Durability: the reason is saved before the mark-bad, so a cut in between repeats the mark-bad at boot.
    actions.push(Action::Save);
    actions.push(Action::MarkBad(booted));
    actions.push(Action::Reboot);
}

fn roll_back(u: &mut Update, reason: String, actions: &mut Vec<Action>) {
    actions.push(emit(EventKind::RolledBack, format!("slot {} rolled back: {reason}", u.target)));
    u.phase = Phase::RolledBack;
    u.held = false;
    u.reason = Some(reason);
    actions.push(Action::Save);
}

/// What `boot` does for each phase and kind of boot, as the Markdown table in docs/updater.md ("Reconciling at
/// boot"): the target slot B, slot A good, and B booted on trial, booted and good, or not booted (fallen back, or
/// not rebooted yet).
pub fn reconcile_table() -> String {
    use bootctl::rules::SlotState;
    let state =
        |b: SlotState, active: Slot| BootState::from_parts(SlotState { good: true, tries: 0 }, b, active, Slot::A);
    let cases: [(&str, Slot, BootState); 4] = [
        ("B booted on trial", Slot::B, state(SlotState { good: false, tries: 2 }, Slot::B)),
        ("B booted, already good", Slot::B, state(SlotState { good: true, tries: 0 }, Slot::B)),
        ("A booted, B active with tries left", Slot::A, state(SlotState { good: false, tries: 2 }, Slot::B)),
        ("A booted, B out of tries", Slot::A, state(SlotState { good: false, tries: 0 }, Slot::B)),
    ];
    // `written` reconciles as `downloading` does, and `cancelled` and `failed` as `committed`.
    let phases = Phase::ALL.into_iter().filter(|p| !matches!(p, Phase::Written | Phase::Cancelled | Phase::Failed));
    let mut out = String::from("| phase in the journal | boot | new phase | actions |\n| --- | --- | --- | --- |\n");
    for phase in phases {
        // A failure recorded is told apart in `trial`, a hold in `verified`.
        let mut variants = vec![(None, false)];
        match phase {
            Phase::Trial => variants.push((Some("a check failed"), false)),
            Phase::Verified => variants.push((None, true)),
            _ => {}
        }
        for (reason, held) in variants {
            for (what, booted, st) in &cases {
                let u = Update {
                    phase,
                    target: Slot::B,
                    bundle: crate::journal::BundleInfo {
                        manifest_blake3: String::new(),
                        name: String::new(),
                        version: String::new(),
                        security_version: 0,
                    },
                    source: String::new(),
                    size_bytes: 0,
                    chunk_size: 4096,
                    n_chunks: 0,
                    chunks_done: Vec::new(),
                    fetched_bytes: 0,
                    reused_bytes: 0,
                    reboot: false,
                    started: String::new(),
                    reason: reason.map(str::to_owned),
                    held,
                };
                let j = Journal { update: Some(u), ..Journal::default() };
                let s = step(&j, &Event::Booted { booted: *booted, state: *st }).expect("boot never fails");
                let new_phase = s.journal.phase().map_or("none", Phase::name);
                let actions: Vec<String> = s
                    .actions
                    .iter()
                    .filter_map(|a| match a {
                        Action::Emit(e) if e.kind == EventKind::Booted => None,
                        Action::Emit(e) => Some(format!("event `{}`", e.kind)),
                        Action::Save => Some("save".to_owned()),
                        Action::SetActive(s) => Some(format!("set-active {s}")),
                        Action::MarkGood(s) => Some(format!("mark-good {s}")),
                        Action::MarkBad(s) => Some(format!("mark-bad {s}")),
                        Action::RunChecks => Some("health checks".to_owned()),
                        Action::Reboot => Some("reboot".to_owned()),
                    })
                    .collect();
                let actions = if actions.is_empty() { "nothing".to_owned() } else { actions.join(", ") };
                let shown = match (reason, held) {
                    (Some(_), _) => format!("{} (failure recorded)", phase.name()),
                    (None, true) => format!("{} (held)", phase.name()),
                    (None, false) => phase.name().to_owned(),
                };
                out.push_str(&format!("| {shown} | {what} | {new_phase} | {actions} |\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::BundleInfo;
    use bootctl::rules::SlotState;

    const PHASES: [Phase; 10] = Phase::ALL;
    fn update(phase: Phase, target: Slot, reason: Option<&str>) -> Update {
        Update {
            phase,
            target,
            bundle: BundleInfo {
                manifest_blake3: "ab".repeat(32),
                name: "edge-stack".into(),
                version: "2".into(),
                security_version: 7,
            },
            source: "-".into(),
            size_bytes: 4 << 20,
            chunk_size: 1 << 20,
            n_chunks: 4,
            chunks_done: if phase == Phase::Downloading { vec![[0, 2]] } else { vec![[0, 4]] },
            fetched_bytes: 0,
            reused_bytes: 0,
            reboot: false,
            started: "2026-11-24T00:00:00Z".into(),
            reason: reason.map(str::to_owned),
            held: false,
        }
    }

    fn all_states() -> Vec<BootState> {
        let mut out = Vec::new();
        for ga in [false, true] {
            for ta in 0..=3 {
                for gb in [false, true] {
                    for tb in 0..=3 {
                        for active in [Slot::A, Slot::B] {
                            for last_good in [Slot::A, Slot::B] {
                                let a = SlotState { good: ga, tries: ta };
                                let b = SlotState { good: gb, tries: tb };
                                out.push(BootState::from_parts(a, b, active, last_good));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn all_journals() -> Vec<Journal> {
        let mut out = vec![Journal::default()];
        for phase in PHASES {
            for target in [Slot::A, Slot::B] {
                for reason in [None, Some("check web failed")] {
                    out.push(Journal { update: Some(update(phase, target, reason)), ..Journal::default() });
                }
                if phase == Phase::Verified {
                    let mut u = update(phase, target, None);
                    u.held = true;
                    out.push(Journal { update: Some(u), ..Journal::default() });
                }
            }
        }
        out
    }

    fn all_events(booted: Slot, state: BootState) -> Vec<Event> {
        vec![
            Event::Start { update: Box::new(update(Phase::Downloading, booted.other(), None)), booted, state },
            Event::Flip { booted, state, reboot: false },
            Event::Flip { booted, state, reboot: true },
            Event::Booted { booted, state },
            Event::ChecksPassed { booted },
            Event::ChecksFailed { booted, reason: "probe failed".into() },
            Event::MarkGood { booted, state },
            Event::Rollback { booted, state },
            Event::Cancel { booted, state },
            Event::RebootFailed { reason: "edge-init did not answer".into() },
        ]
    }

    /// The boot state after the bootloader actions of a step (tries as `set-active` gives them).
    fn apply(state: BootState, actions: &[Action]) -> BootState {
        actions.iter().fold(state, |s, a| match a {
            Action::SetActive(t) => s.set_active(*t, 3).expect("a step only activates a slot whose other is good"),
            Action::MarkGood(t) => s.mark_good(*t),
            Action::MarkBad(t) => s.mark_bad(*t),
            _ => s,
        })
    }

    /// Every journal × boot state × booted slot × event: the invariants that make an update safe.
    #[test]
    fn every_step_keeps_the_invariants() {
        let mut n = 0u64;
        for j in all_journals() {
            for state in all_states() {
                for booted in [Slot::A, Slot::B] {
                    for event in all_events(booted, state) {
                        let Ok(s) = step(&j, &event) else { continue };
                        n += 1;
                        let ctx = format!("{j:?}\n{state:?} booted {booted}\n{event:?}\n{:?}", s.actions);
                        // The journal is saved once when it changed (a restarted install may save it unchanged).
                        let saves = s.actions.iter().filter(|a| **a == Action::Save).count();
                        assert!(saves <= 1 && (s.journal == j || saves == 1), "{ctx}");
                        // The booted slot is never activated, a slot is activated only from `verified`, and
                        // only the booted slot is ever marked good.
                        for a in &s.actions {
                            match a {
                                Action::SetActive(t) => {
                                    assert_ne!(*t, booted, "{ctx}");
                                    assert_eq!(j.phase(), Some(Phase::Verified), "{ctx}");
                                }
                                Action::MarkGood(t) => assert_eq!(*t, booted, "{ctx}"),
                                _ => {}
                            }
                        }
                        // A good slot other than the one being tried stays good.
                        let after = apply(state, &s.actions);
                        for slot in [Slot::A, Slot::B] {
                            let tried = s.journal.update.as_ref().map(|u| u.target);
                            if state.slot(slot).good && Some(slot) != tried {
                                assert!(after.slot(slot).good, "{ctx}");
                            }
                        }
                        // The booted slot is only marked bad on the way to a reboot.
                        if s.actions.contains(&Action::MarkBad(booted)) {
                            assert!(s.actions.contains(&Action::Reboot), "{ctx}");
                        }
                        // Nothing is made bootable before it was verified.
                        if let Some(u) = &s.journal.update {
                            if u.phase.is_installing() || u.phase == Phase::Cancelled {
                                let t = after.slot(u.target);
                                let was = state.slot(u.target);
                                let newly = (t.good || t.tries > 0) && !(was.good || was.tries > 0);
                                assert!(!newly, "{ctx}");
                            }
                        }
                        // A hold lasts only as long as `verified`: no other phase carries it, so the journals an
                        // older updater may read after a fallback never do.
                        if let Some(u) = &s.journal.update {
                            assert!(!u.held || u.phase == Phase::Verified, "{ctx}");
                        }
                        // A final update stays final, and a boot never changes the bootloader after it.
                        if let (Some(before), Event::Booted { .. }) = (&j.update, &event) {
                            if before.phase.is_final() {
                                assert_eq!(s.journal, j, "{ctx}");
                                assert!(s.actions.iter().all(|a| matches!(a, Action::Emit(_))), "{ctx}");
                            }
                        }
                    }
                }
            }
        }
        assert!(n > 10_000, "{n} steps checked");
    }

    /// Running `boot` twice on the same boot (a cut after the first run's actions) decides nothing new.
    #[test]
    fn boot_is_idempotent() {
        for j in all_journals() {
            for state in all_states() {
                for booted in [Slot::A, Slot::B] {
                    let first = step(&j, &Event::Booted { booted, state }).expect("boot never fails");
                    if first.actions.contains(&Action::Reboot) || first.actions.contains(&Action::RunChecks) {
                        continue;
                    }
                    let state2 = apply(state, &first.actions);
                    let second = step(&first.journal, &Event::Booted { booted, state: state2 }).expect("boot");
                    assert_eq!(second.journal, first.journal, "{j:?} {state:?} {booted}");
                    assert!(second.actions.iter().all(|a| matches!(a, Action::Emit(_))), "{:?}", second.actions);
                }
            }
        }
    }

    fn provisioned_b_trial() -> (Journal, BootState) {
        let state = BootState::provisioned(Slot::A).set_active(Slot::B, 3).expect("A good").boot().1;
        let j = Journal { update: Some(update(Phase::Rebooting, Slot::B, None)), ..Journal::default() };
        (j, state)
    }

    #[test]
    fn an_update_cycle_commits() {
        let (j, state) = provisioned_b_trial();
        let s = step(&j, &Event::Booted { booted: Slot::B, state }).expect("boot");
        assert_eq!(s.journal.phase(), Some(Phase::Trial));
        assert!(s.actions.contains(&Action::RunChecks));
        let s = step(&s.journal, &Event::ChecksPassed { booted: Slot::B }).expect("pass");
        assert_eq!(s.journal.phase(), Some(Phase::Committed));
        assert_eq!(s.journal.security_version, 7);
        assert_eq!(s.journal.slot(Slot::B).map(|i| i.bundle.version.as_str()), Some("2"));
        assert_eq!(s.actions.iter().filter(|a| !matches!(a, Action::Emit(_))).count(), 2);
        assert_eq!(s.actions[0], Action::MarkGood(Slot::B));
    }

    #[test]
    fn a_failed_check_saves_its_reason_then_marks_bad_and_reboots() {
        let (j, state) = provisioned_b_trial();
        let s = step(&j, &Event::Booted { booted: Slot::B, state }).expect("boot");
        let s = step(&s.journal, &Event::ChecksFailed { booted: Slot::B, reason: "probe failed".into() }).expect("f");
        let effects: Vec<_> = s.actions.iter().filter(|a| !matches!(a, Action::Emit(_))).cloned().collect();
        assert_eq!(effects, [Action::Save, Action::MarkBad(Slot::B), Action::Reboot]);
        // A cut before the mark-bad: the next boot of B repeats it.
        let again = step(&s.journal, &Event::Booted { booted: Slot::B, state }).expect("boot");
        assert!(again.actions.contains(&Action::MarkBad(Slot::B)) && again.actions.contains(&Action::Reboot));
        // Back on A: rolled back, with the reason that is known.
        let state = state.mark_bad(Slot::B).boot().1;
        let back = step(&s.journal, &Event::Booted { booted: Slot::A, state }).expect("boot");
        let u = back.journal.update.expect("update");
        assert_eq!((u.phase, u.reason.as_deref()), (Phase::RolledBack, Some("probe failed")));
    }

    #[test]
    fn a_fallback_by_the_bootloader_is_reported() {
        let (j, _) = provisioned_b_trial();
        let mut state = BootState::provisioned(Slot::A).set_active(Slot::B, 1).expect("A good");
        state = state.boot().1;
        assert_eq!(state.slot(Slot::B).tries, 0);
        let s = step(&j, &Event::Booted { booted: Slot::A, state }).expect("boot");
        let u = s.journal.update.expect("update");
        assert_eq!(u.phase, Phase::RolledBack);
        assert!(u.reason.is_some_and(|r| r.contains("fell back")));
    }

    #[test]
    fn a_flip_cut_before_its_journal_is_finished_at_boot() {
        let j = Journal { update: Some(update(Phase::Verified, Slot::B, None)), ..Journal::default() };
        let state = BootState::provisioned(Slot::A).set_active(Slot::B, 3).expect("A good").boot().1;
        let s = step(&j, &Event::Booted { booted: Slot::B, state }).expect("boot");
        assert_eq!(s.journal.phase(), Some(Phase::Trial));
    }

    #[test]
    fn a_verified_install_into_a_slot_that_failed_before_is_not_a_rollback() {
        // B failed an earlier update: still active, no tries. A new install of B is verified, then the power goes
        // before the flip.
        let state = BootState::provisioned(Slot::A).set_active(Slot::B, 3).expect("A good").mark_bad(Slot::B);
        let j = Journal { update: Some(update(Phase::Verified, Slot::B, None)), ..Journal::default() };
        let s = step(&j, &Event::Booted { booted: Slot::A, state }).expect("boot");
        assert_eq!(s.journal.phase(), Some(Phase::Verified));
        assert!(s
            .actions
            .iter()
            .all(|a| matches!(a, Action::Emit(e) if e.kind == EventKind::Booted || e.kind == EventKind::Interrupted)));
    }

    #[test]
    fn issue_14_a_second_cancel_is_done_already() {
        let state = BootState::provisioned(Slot::A);
        let j = Journal { update: Some(update(Phase::Downloading, Slot::B, None)), ..Journal::default() };
        let first = step(&j, &Event::Cancel { booted: Slot::A, state }).expect("cancel");
        assert_eq!(first.journal.phase(), Some(Phase::Cancelled));
        let second = step(&first.journal, &Event::Cancel { booted: Slot::A, state }).expect("cancel again");
        assert_eq!(second.journal, first.journal);
        assert!(second.actions.is_empty(), "{:?}", second.actions);
    }

    #[test]
    fn issue_14_a_flipped_slot_is_recorded_and_a_failed_reboot_request_leaves_it_flipped() {
        let state = BootState::provisioned(Slot::A);
        let u = update(Phase::Verified, Slot::B, None);
        let j = Journal { update: Some(u), ..Journal::default() };
        let s = step(&j, &Event::Flip { booted: Slot::A, state, reboot: true }).expect("flip");
        assert_eq!(s.journal.phase(), Some(Phase::Rebooting));
        assert_eq!(s.journal.slot(Slot::B).map(|i| i.bundle.version.as_str()), Some("2"));
        assert_eq!(s.actions.last(), Some(&Action::Reboot));
        let f = step(&s.journal, &Event::RebootFailed { reason: "no answer".into() }).expect("reboot failed");
        let u = f.journal.update.as_ref().expect("update");
        assert_eq!((u.phase, u.reboot), (Phase::Flipped, false));
        assert!(f.actions.iter().any(|a| matches!(a, Action::Emit(e) if e.kind == EventKind::RebootFailed)));
        assert_eq!(f.actions.iter().filter(|a| **a == Action::Save).count(), 1);
    }

    /// A held target waits for its flip across reboots: a boot of the other slot records nothing and reports no
    /// interruption; a boot of the held slot itself (by hand, from the firmware's menu) fails it as an unfinished
    /// install does; the flip ends the hold.
    #[test]
    fn a_held_update_waits_across_boots_and_the_flip_ends_it() {
        let state = BootState::provisioned(Slot::A);
        let mut u = update(Phase::Verified, Slot::B, None);
        u.held = true;
        let j = Journal { update: Some(u), ..Journal::default() };
        let s = step(&j, &Event::Booted { booted: Slot::A, state }).expect("boot");
        assert_eq!(s.journal, j);
        assert!(
            s.actions.iter().all(|a| matches!(a, Action::Emit(e) if e.kind == EventKind::Booted)),
            "{:?}",
            s.actions
        );
        let unheld = Journal { update: Some(update(Phase::Verified, Slot::B, None)), ..Journal::default() };
        let s = step(&unheld, &Event::Booted { booted: Slot::A, state }).expect("boot");
        assert!(s.actions.iter().any(|a| matches!(a, Action::Emit(e) if e.kind == EventKind::Interrupted)));

        let s = step(&j, &Event::Booted { booted: Slot::B, state }).expect("boot of the held slot");
        let u = s.journal.update.as_ref().expect("update");
        assert_eq!((u.phase, u.held), (Phase::Failed, false));

        let s = step(&j, &Event::Flip { booted: Slot::A, state, reboot: false }).expect("flip");
        let u = s.journal.update.as_ref().expect("update");
        assert_eq!((u.phase, u.held, u.reboot), (Phase::Flipped, false, false));
        assert_eq!(s.actions.first(), Some(&Action::SetActive(Slot::B)));
    }

    #[test]
    fn refusals() {
        let state = BootState::provisioned(Slot::A);
        let check = |j: &Journal, e: Event, ok: fn(&Error) -> bool| {
            let r = step(j, &e);
            assert!(r.as_ref().err().is_some_and(ok), "{e:?}: {r:?}");
        };
        let none = Journal::default();
        let start = |target| Event::Start {
            update: Box::new(update(Phase::Downloading, target, None)),
            booted: Slot::A,
            state,
        };
        check(&none, start(Slot::A), |e| matches!(e, Error::TargetBooted { slot: Slot::A }));
        let trial = Journal { update: Some(update(Phase::Trial, Slot::B, None)), ..Journal::default() };
        check(&trial, start(Slot::B), |e| matches!(e, Error::Busy { phase: Phase::Trial, .. }));
        let on_b = BootState::provisioned(Slot::A).set_active(Slot::B, 3).expect("A good").boot().1;
        let start_b =
            Event::Start { update: Box::new(update(Phase::Downloading, Slot::A, None)), booted: Slot::B, state: on_b };
        check(&none, start_b, |e| matches!(e, Error::BootedNotGood { slot: Slot::B }));
        check(&none, Event::Cancel { booted: Slot::A, state }, |e| matches!(e, Error::NoUpdate { .. }));
        check(&trial, Event::Cancel { booted: Slot::B, state }, |e| matches!(e, Error::WrongPhase { .. }));
        check(&trial, Event::RebootFailed { reason: "x".into() }, |e| matches!(e, Error::WrongPhase { .. }));
        let committed = Journal { update: Some(update(Phase::Committed, Slot::B, None)), ..Journal::default() };
        check(&committed, Event::Rollback { booted: Slot::B, state }, |e| matches!(e, Error::WrongPhase { .. }));
    }
}
