//! The agent loop's decisions, pure: every wakeup and every result of a contact, install or action is an
//! [`Event`], and [`step`] says what it changes and what to do next. Nothing here does I/O, reads a clock or draws a
//! random number, so every event in every state is a table test; `agent` carries the [`Action`]s out.
//!
//! The rule that makes actions happen at most once lives here too: [`step`] records an action done in the state
//! it returns, and the executor saves that state before it carries out any action [`step`] returned.

use std::time::Duration;

use fleet_wire::node::{Action as RemoteAction, ActionKind, BundleRef, DesiredState, NodeStatus, WaitOn, Window};

use crate::client::Polled;
use crate::config::Timing;
use crate::state::{Hold, State};

/// How a contact ended, without its error (logged where it was met).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    /// Answered as asked.
    Ok(T),
    /// The endpoint refuses this node (401, 403).
    Rejected,
    /// The endpoint refused the request with this status (another 4xx).
    Refused(u16),
    /// Unreachable or failing.
    Down,
}

/// What the node is doing, as the decisions need it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// The manifest hash of the bundle in the booted slot, when the journal knows it.
    pub booted_manifest: Option<String>,
    /// An `edge-update` holds the updater's lock (an install from the CLI, or the boot checks).
    pub install_running: bool,
    /// The manifest hash of the journal's update when it is past installing (flipped, on trial, committed, rolled
    /// back, failed or cancelled): the updater's own durable record that this bundle was done with, which holds
    /// even when the agent was stopped before it saved its state (edge-init's shutdown right after a flip).
    pub update_done: Option<String>,
    /// The manifest hash of a target verified and held for a later flip (`edge-update install --no-flip`).
    pub held: Option<String>,
    /// The node's clock, Unix seconds (maintenance windows are judged by it).
    pub now: u64,
    /// An application holds the update lock.
    pub app_lock: bool,
}

/// How an install of the desired bundle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// Verified and held for its flip: decided at once, with the node's facts of that moment.
    Verified,
    /// Flipped (a reboot was asked of edge-init).
    Flipped,
    /// Refused by the node's own checks (reported `refused`): not tried again until the desired bundle changes.
    Refused,
    /// Failed on the way (the network, a disk): tried again at the next poll, resuming.
    Failed,
    /// Another `edge-update` holds the lock, or an application took the update lock just before the flip: tried
    /// again at the next poll.
    Busy,
}

/// Every wakeup of the loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The wait is over: a new round of contacts. `inventory_changed`: the inventory's hash differs from the one
    /// the endpoint took.
    Wake {
        /// The inventory changed since the endpoint took it.
        inventory_changed: bool,
    },
    /// The enrollment's answer: the node's status and the suggested poll interval.
    Enrolled(Outcome<(NodeStatus, u32)>),
    /// The desired state's answer, and the node's facts at that time.
    Desired(Outcome<Polled>, Facts),
    /// A batch was sent; `true` when more reports wait.
    Reported(Outcome<bool>),
    /// The inventory with this hash was sent.
    InventoryPut(Outcome<String>),
    /// The install of the bundle with this manifest hash ended.
    Installed(String, Installed),
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `POST /v1/enroll` with the token, the key and the inventory.
    Enroll,
    /// Send the next batch of the spool, if it holds any.
    SendReports,
    /// `PUT` the inventory.
    PutInventory,
    /// `GET` the desired state.
    PollDesired,
    /// Install this bundle through the updater, up to verified (held for its flip).
    Install(BundleRef),
    /// Flip the held target of this bundle and reboot into it; `lock_overridden`: an application's update lock has
    /// held it back as long as the policy allows, and is passed over.
    Flip {
        /// The desired bundle.
        bundle: BundleRef,
        /// The lock is passed over.
        lock_overridden: bool,
    },
    /// Report that the held target of this bundle now waits on this (recorded in the state already).
    Wait(BundleRef, WaitOn),
    /// Give up a held target that is no longer desired (`edge-update cancel`).
    CancelHold,
    /// Carry out a remote action (already recorded done).
    Run(RemoteAction),
    /// Report a remote action refused (already recorded done), and why.
    Refuse(RemoteAction, &'static str),
}

/// The loop's state that is not worth a disk write: the failure count and the pace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Failed contacts in a row.
    pub failures: u32,
    /// The endpoint refuses this node or its enrollment: contact it at the slowest pace.
    pub slow: bool,
    /// The endpoint's poll interval, clamped to the config's floor and ceiling.
    pub poll_interval: Duration,
}

impl Link {
    /// At start: no failures, polling at the floor until the endpoint says otherwise.
    pub fn new(timing: &Timing) -> Link {
        Link { failures: 0, slow: false, poll_interval: timing.poll_floor }
    }
}

/// What an event leads to.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The link after it.
    pub link: Link,
    /// The state after it (saved before any action is carried out when it changed).
    pub state: State,
    /// What to do next, in order, after the actions already queued.
    pub actions: Vec<Action>,
    /// Drop the rest of this round's queued contacts (the endpoint is down or refuses the node).
    pub end_round: bool,
}

/// Decides what `event` changes and what to do next.
pub fn step(link: &Link, state: &State, timing: &Timing, facts_now: Event) -> Step {
    let mut s = Step { link: *link, state: state.clone(), actions: Vec::new(), end_round: false };
    match facts_now {
        Event::Wake { inventory_changed } => {
            if state.status.is_none() {
                s.actions.push(Action::Enroll);
            } else {
                s.actions.push(Action::SendReports);
                if inventory_changed {
                    s.actions.push(Action::PutInventory);
                }
                s.actions.push(Action::PollDesired);
            }
        }
        Event::Enrolled(outcome) => match outcome {
            Outcome::Ok((status, poll_secs)) => {
                contact_ok(&mut s.link, timing, Some(poll_secs));
                s.state.status = Some(status);
                // The inventory went with the enrollment; it is put once more, so that an endpoint that already
                // knew this key (a 200) holds today's, and the hash it took is recorded the one way.
                s.actions.extend([Action::SendReports, Action::PutInventory, Action::PollDesired]);
            }
            // A revoked or unknown token, a refused body: retried slowly, since a token may be re-issued.
            Outcome::Rejected | Outcome::Refused(_) => refused(&mut s),
            Outcome::Down => down(&mut s),
        },
        Event::Desired(outcome, facts) => match outcome {
            Outcome::Ok(polled) => {
                let poll_secs = match polled {
                    Polled::Changed(desired, etag) => {
                        let secs = desired.poll_interval_secs;
                        s.state.status = Some(desired.status);
                        s.state.desired = Some(*desired);
                        s.state.etag = etag;
                        Some(secs)
                    }
                    Polled::NotModified => None,
                };
                contact_ok(&mut s.link, timing, poll_secs);
                if let Some(desired) = s.state.desired.clone() {
                    s.actions = follow(&mut s.state, &desired, &facts, timing);
                }
            }
            // The endpoint no longer knows this node (its records were lost): enroll again, with the same key.
            Outcome::Refused(404) => {
                contact_ok(&mut s.link, timing, None);
                s.state.status = None;
                s.state.etag = None;
                s.end_round = true;
            }
            Outcome::Rejected => refused(&mut s),
            Outcome::Refused(_) | Outcome::Down => down(&mut s),
        },
        Event::Reported(outcome) => match outcome {
            Outcome::Ok(more) => {
                contact_ok(&mut s.link, timing, None);
                if more {
                    s.actions.push(Action::SendReports);
                }
            }
            Outcome::Rejected => refused(&mut s),
            // A batch refused as malformed stays in the spool (nothing is dropped): backing off keeps it from
            // being sent in a tight loop, and the refusal is logged for an operator.
            Outcome::Refused(_) | Outcome::Down => down(&mut s),
        },
        Event::InventoryPut(outcome) => match outcome {
            Outcome::Ok(hash) => {
                contact_ok(&mut s.link, timing, None);
                s.state.inventory_hash = Some(hash);
            }
            Outcome::Rejected => refused(&mut s),
            Outcome::Refused(_) | Outcome::Down => down(&mut s),
        },
        Event::Installed(hash, end) => match end {
            // Asked again at once: the poll's answer (a 304, mostly) brings the facts the flip is decided on.
            Installed::Verified => s.actions.push(Action::PollDesired),
            Installed::Flipped | Installed::Refused => {
                s.state.settled_bundle = Some(hash);
                s.state.hold = None;
            }
            // Retried at a later poll, which backs off like a failed contact while it keeps failing.
            Installed::Failed => s.link.failures = s.link.failures.saturating_add(1),
            Installed::Busy => {}
        },
    }
    s
}

/// What the desired state asks of the node now: each action not yet done (recorded done here), then for the bundle
/// either its held target's flip (or the wait for it), or its install when the node does not run it, is not done
/// with it and no install is under way; and a held target no longer desired is given up.
fn follow(state: &mut State, desired: &DesiredState, facts: &Facts, timing: &Timing) -> Vec<Action> {
    let mut actions = Vec::new();
    for a in &desired.actions {
        if state.action_done(&a.id) {
            continue;
        }
        state.record_action(&a.id);
        if a.kind == ActionKind::Reboot && facts.install_running {
            actions.push(Action::Refuse(a.clone(), "an install is writing the other slot"));
        } else {
            actions.push(Action::Run(a.clone()));
        }
    }
    if desired.status != NodeStatus::Accepted || facts.install_running {
        return actions;
    }
    if state.hold.as_ref().is_some_and(|h| facts.held.as_deref() != Some(h.manifest.as_str())) {
        state.hold = None;
    }
    match (&desired.bundle, facts.held.as_deref()) {
        (Some(b), Some(held)) if held == b.manifest_hash => actions.extend(flip_or_wait(state, b, facts, timing)),
        (b, held) => {
            let install = b.as_ref().filter(|b| {
                let hash = Some(b.manifest_hash.as_str());
                let runs = facts.booted_manifest.as_deref() == hash;
                let settled = state.settled_bundle.as_deref() == hash || facts.update_done.as_deref() == hash;
                !runs && !settled
            });
            match install {
                // An install of another bundle replaces a held target.
                Some(b) => actions.push(Action::Install(b.clone())),
                None if held.is_some() => actions.push(Action::CancelHold),
                None => {}
            }
        }
    }
    actions
}

/// The held target of `b`: flipped when its rule allows it now, else the wait reported when its reason changed.
/// In order: a paused deployment, the node's clock outside every window, an application's update lock (until it
/// has held the flip back for the rule's `lock_max_secs`, or the config's bound without a rule).
fn flip_or_wait(state: &mut State, b: &BundleRef, facts: &Facts, timing: &Timing) -> Option<Action> {
    let mut hold = match state.hold.take() {
        Some(h) if h.manifest == b.manifest_hash => h,
        _ => Hold { manifest: b.manifest_hash.clone(), waiting_on: None, lock_since: None },
    };
    let rule = b.flip.as_ref();
    let lock_max = rule.map_or(timing.update_lock_max.as_secs(), |r| r.lock_max_secs);
    let wait = if rule.is_some_and(|r| !r.allowed) {
        Some(WaitOn::Paused)
    } else if rule.is_some_and(|r| !r.windows.is_empty() && !inside(&r.windows, facts.now)) {
        Some(WaitOn::Window)
    } else if facts.app_lock {
        let since = *hold.lock_since.get_or_insert(facts.now);
        (facts.now.saturating_sub(since) < lock_max).then_some(WaitOn::UpdateLock)
    } else {
        None
    };
    let action = match wait {
        Some(on) if hold.waiting_on == Some(on) => None,
        Some(on) => {
            hold.waiting_on = Some(on);
            Some(Action::Wait(b.clone(), on))
        }
        None => Some(Action::Flip { bundle: b.clone(), lock_overridden: facts.app_lock }),
    };
    state.hold = Some(hold);
    action
}

/// Whether `now` (Unix seconds) falls in one of `windows` (RFC 3339, start included, end not); a window that does
/// not parse holds no instant.
pub fn inside(windows: &[Window], now: u64) -> bool {
    let at = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .ok()
            .and_then(|t| u64::try_from(t.unix_timestamp()).ok())
    };
    windows.iter().any(|w| matches!((at(&w.start), at(&w.end)), (Some(s), Some(e)) if s <= now && now < e))
}

fn contact_ok(link: &mut Link, timing: &Timing, poll_secs: Option<u32>) {
    link.failures = 0;
    link.slow = false;
    if let Some(secs) = poll_secs {
        link.poll_interval = Duration::from_secs(u64::from(secs)).clamp(timing.poll_floor, timing.poll_ceiling);
    }
}

fn refused(s: &mut Step) {
    s.link.failures = 0;
    s.link.slow = true;
    s.end_round = true;
}

fn down(s: &mut Step) {
    s.link.failures = s.link.failures.saturating_add(1);
    s.end_round = true;
}

/// How long to wait before the next round: the capped exponential backoff while contacts fail, the slowest pace
/// while the endpoint refuses the node, the poll interval otherwise; each shortened by up to the jitter fraction
/// (`random` in `0.0..1.0`).
pub fn delay(link: &Link, timing: &Timing, random: f64) -> Duration {
    let base = if link.failures > 0 {
        let doublings = (link.failures - 1).min(30);
        timing.backoff_base.saturating_mul(1u32 << doublings).min(timing.backoff_cap)
    } else if link.slow {
        timing.poll_ceiling
    } else {
        link.poll_interval
    };
    base.mul_f64(1.0 - timing.jitter * random.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_wire::node::FlipRule;
    use fleet_wire::node::NodeStatus::{Accepted, Pending};

    fn timing() -> Timing {
        Timing {
            poll_floor: Duration::from_secs(10),
            poll_ceiling: Duration::from_secs(600),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(60),
            jitter: 0.5,
            update_lock_max: Duration::from_secs(3600),
        }
    }

    fn bundle(hash: char) -> BundleRef {
        BundleRef {
            name: "edge-os".into(),
            version: "2.0.0".into(),
            security_version: 1,
            manifest_hash: hash.to_string().repeat(64),
            size_bytes: 10,
            urls: vec!["http://x/b".into()],
            flip: None,
        }
    }

    fn desired(status: NodeStatus, b: Option<char>, actions: &[(&str, ActionKind)]) -> DesiredState {
        DesiredState {
            status,
            poll_interval_secs: 60,
            bundle: b.map(bundle),
            actions: actions.iter().map(|(id, kind)| RemoteAction { id: (*id).into(), kind: *kind }).collect(),
        }
    }

    fn enrolled(d: Option<DesiredState>) -> State {
        State { status: Some(Accepted), desired: d, ..State::default() }
    }

    fn link(failures: u32, slow: bool) -> Link {
        Link { failures, slow, poll_interval: Duration::from_secs(30) }
    }

    fn facts(booted: Option<char>, running: bool) -> Facts {
        Facts {
            booted_manifest: booted.map(|c| c.to_string().repeat(64)),
            install_running: running,
            update_done: None,
            held: None,
            now: 0,
            app_lock: false,
        }
    }

    /// Facts of a node running `a` with `b` held, at `now`, with or without an application's lock.
    fn holding(now: u64, app_lock: bool) -> Facts {
        Facts { held: Some("b".repeat(64)), now, app_lock, ..facts(Some('a'), false) }
    }

    /// 2026-12-06T02:00:00Z and 04:00:00Z, a window's bounds.
    const TWO_AM: u64 = 1_796_522_400;
    const FOUR_AM: u64 = TWO_AM + 7200;

    fn rule(allowed: bool, windowed: bool, lock_max_secs: u64) -> FlipRule {
        let windows = if windowed {
            vec![Window { start: "2026-12-06T02:00:00Z".into(), end: "2026-12-06T04:00:00Z".into() }]
        } else {
            Vec::new()
        };
        FlipRule { deployment: "d1".into(), allowed, windows, lock_max_secs }
    }

    fn with_rule(r: Option<FlipRule>) -> DesiredState {
        let mut d = desired(Accepted, Some('b'), &[]);
        d.bundle.as_mut().expect("a bundle").flip = r;
        d
    }

    /// Polls `d` (unchanged since the last poll) with `f` from `state`.
    fn poll_with(state: &State, d: &DesiredState, f: Facts) -> Step {
        let state = State { desired: Some(d.clone()), ..state.clone() };
        step(&link(0, false), &state, &timing(), Event::Desired(Outcome::Ok(Polled::NotModified), f))
    }

    #[test]
    fn a_wake_enrolls_first_then_reports_inventory_and_polls() {
        let check = |state: &State, inventory_changed: bool, expected: &[Action]| {
            let s = step(&link(0, false), state, &timing(), Event::Wake { inventory_changed });
            assert_eq!(s.actions, expected, "{state:?} {inventory_changed}");
            assert!(!s.end_round);
            assert_eq!(&s.state, state, "a wake changes no state");
        };
        use Action::*;
        for changed in [false, true] {
            check(&State::default(), changed, &[Enroll]);
        }
        check(&enrolled(None), false, &[SendReports, PollDesired]);
        check(&enrolled(None), true, &[SendReports, PutInventory, PollDesired]);
        let pending = State { status: Some(Pending), ..State::default() };
        check(&pending, false, &[SendReports, PollDesired]);
    }

    /// Every contact outcome, from a link that failed before and one that was slow: what each does to the link.
    #[test]
    fn every_contact_outcome_sets_the_pace() {
        let t = timing();
        // (event, failures after from 3 failures, slow after, ends the round)
        let cases: Vec<(Event, u32, bool, bool)> = vec![
            (Event::Enrolled(Outcome::Ok((Pending, 5))), 0, false, false),
            (Event::Enrolled(Outcome::Rejected), 0, true, true),
            (Event::Enrolled(Outcome::Refused(400)), 0, true, true),
            (Event::Enrolled(Outcome::Down), 4, false, true),
            (Event::Desired(Outcome::Ok(Polled::NotModified), Facts::default()), 0, false, false),
            (Event::Desired(Outcome::Rejected, Facts::default()), 0, true, true),
            (Event::Desired(Outcome::Refused(404), Facts::default()), 0, false, true),
            (Event::Desired(Outcome::Refused(400), Facts::default()), 4, false, true),
            (Event::Desired(Outcome::Down, Facts::default()), 4, false, true),
            (Event::Reported(Outcome::Ok(false)), 0, false, false),
            (Event::Reported(Outcome::Rejected), 0, true, true),
            (Event::Reported(Outcome::Refused(413)), 4, false, true),
            (Event::Reported(Outcome::Down), 4, false, true),
            (Event::InventoryPut(Outcome::Ok("h".into())), 0, false, false),
            (Event::InventoryPut(Outcome::Rejected), 0, true, true),
            (Event::InventoryPut(Outcome::Refused(400)), 4, false, true),
            (Event::InventoryPut(Outcome::Down), 4, false, true),
        ];
        for (event, failures, slow, end_round) in cases {
            for was_slow in [false, true] {
                let s = step(&link(3, was_slow), &enrolled(None), &t, event.clone());
                // A failure keeps the slow pace it had: it says nothing new of the node's standing.
                let slow = slow || (was_slow && failures > 0);
                assert_eq!((s.link.failures, s.link.slow, s.end_round), (failures, slow, end_round), "{event:?}");
            }
        }
    }

    #[test]
    fn an_enrollment_records_the_status_and_puts_the_inventory() {
        let s = step(&link(0, false), &State::default(), &timing(), Event::Enrolled(Outcome::Ok((Pending, 5))));
        assert_eq!(s.state.status, Some(Pending));
        assert_eq!(s.actions, vec![Action::SendReports, Action::PutInventory, Action::PollDesired]);
        // The endpoint's 5 s is clamped to the floor.
        assert_eq!(s.link.poll_interval, Duration::from_secs(10));
    }

    #[test]
    fn a_node_the_endpoint_forgot_enrolls_again() {
        let state = State { etag: Some("\"e\"".into()), ..enrolled(None) };
        let s = step(&link(0, false), &state, &timing(), Event::Desired(Outcome::Refused(404), Facts::default()));
        assert_eq!((s.state.status, s.state.etag), (None, None));
    }

    #[test]
    fn more_reports_are_sent_at_once_and_an_inventory_sent_is_remembered() {
        let t = timing();
        let s = step(&link(0, false), &enrolled(None), &t, Event::Reported(Outcome::Ok(true)));
        assert_eq!(s.actions, vec![Action::SendReports]);
        let s = step(&link(0, false), &enrolled(None), &t, Event::InventoryPut(Outcome::Ok("h2".into())));
        assert_eq!(s.state.inventory_hash.as_deref(), Some("h2"));
    }

    /// The desired state, against what the node runs and does: when a bundle is installed, when it is not.
    #[test]
    fn the_desired_bundle_is_installed_only_when_the_node_needs_it() {
        let t = timing();
        let install = |d: DesiredState, settled: Option<char>, f: Facts| {
            let state = State { settled_bundle: settled.map(|c| c.to_string().repeat(64)), ..enrolled(None) };
            let polled = Polled::Changed(Box::new(d), Some("\"e2\"".into()));
            let s = step(&link(0, false), &state, &t, Event::Desired(Outcome::Ok(polled), f));
            assert_eq!(s.state.etag.as_deref(), Some("\"e2\""));
            s.actions.iter().any(|a| matches!(a, Action::Install(_)))
        };
        assert!(install(desired(Accepted, Some('b'), &[]), None, facts(Some('a'), false)));
        assert!(install(desired(Accepted, Some('b'), &[]), Some('a'), facts(None, false)), "another one settled");
        assert!(!install(desired(Accepted, Some('b'), &[]), None, facts(Some('b'), false)), "runs it");
        assert!(!install(desired(Accepted, Some('b'), &[]), Some('b'), facts(Some('a'), false)), "settled");
        assert!(!install(desired(Accepted, Some('b'), &[]), None, facts(Some('a'), true)), "install under way");
        assert!(!install(desired(Pending, Some('b'), &[]), None, facts(Some('a'), false)), "not accepted");
        assert!(!install(desired(Accepted, None, &[]), None, facts(Some('a'), false)), "no bundle");
        // Flipped and rolled back, the agent stopped before it saved its state: the journal says it is done.
        let rolled_back = Facts { update_done: Some("b".repeat(64)), ..facts(Some('a'), false) };
        assert!(!install(desired(Accepted, Some('b'), &[]), None, rolled_back.clone()), "the journal is done with it");
        let other = Facts { update_done: Some("c".repeat(64)), ..rolled_back };
        assert!(install(desired(Accepted, Some('b'), &[]), None, other), "done with another");
    }

    #[test]
    fn an_unchanged_desired_state_is_followed_again() {
        // After a failed install (the network), the 304 of the next poll retries it.
        let state = enrolled(Some(desired(Accepted, Some('b'), &[])));
        let s = step(
            &link(0, false),
            &state,
            &timing(),
            Event::Desired(Outcome::Ok(Polled::NotModified), facts(Some('a'), false)),
        );
        assert_eq!(s.actions, vec![Action::Install(bundle('b'))]);
    }

    #[test]
    fn each_action_is_recorded_done_once_and_a_reboot_waits_for_no_install() {
        let t = timing();
        let d = desired(Accepted, None, &[("r1", ActionKind::Reboot), ("d1", ActionKind::Diagnostics)]);
        let poll = |state: &State, f: Facts| {
            step(&link(0, false), state, &t, Event::Desired(Outcome::Ok(Polled::Changed(Box::new(d.clone()), None)), f))
        };
        let s = poll(&enrolled(None), facts(None, false));
        assert_eq!(s.actions, vec![Action::Run(d.actions[0].clone()), Action::Run(d.actions[1].clone())]);
        assert_eq!(s.state.actions_done, vec!["r1".to_owned(), "d1".to_owned()]);
        let again = poll(&s.state, facts(None, false));
        assert!(again.actions.is_empty(), "at most once");
        let s = poll(&enrolled(None), facts(None, true));
        assert_eq!(s.actions[0], Action::Refuse(d.actions[0].clone(), "an install is writing the other slot"));
        assert_eq!(s.actions[1], Action::Run(d.actions[1].clone()));
    }

    #[test]
    fn an_install_that_flipped_or_was_refused_settles_the_bundle() {
        let t = timing();
        for (end, settles) in [
            (Installed::Flipped, true),
            (Installed::Refused, true),
            (Installed::Failed, false),
            (Installed::Busy, false),
        ] {
            let s = step(&link(0, false), &enrolled(None), &t, Event::Installed("h".into(), end));
            assert_eq!(s.state.settled_bundle.is_some(), settles, "{end:?}");
            assert!(s.actions.is_empty() && !s.end_round);
        }
    }

    #[test]
    fn a_target_is_installed_held_and_decided_on_at_once() {
        let t = timing();
        let s = step(&link(0, false), &enrolled(None), &t, Event::Installed("b".repeat(64), Installed::Verified));
        assert_eq!(s.actions, vec![Action::PollDesired], "the flip is decided with the facts of that moment");
        let held = State {
            hold: Some(Hold { manifest: "b".repeat(64), waiting_on: Some(WaitOn::Window), lock_since: Some(5) }),
            ..enrolled(None)
        };
        let s = step(&link(0, false), &held, &t, Event::Installed("b".repeat(64), Installed::Flipped));
        assert_eq!((s.state.settled_bundle, s.state.hold), (Some("b".repeat(64)), None));
    }

    /// The flip rule against the node's facts: (rule, now, lock held, expected).
    #[test]
    fn a_held_target_flips_only_when_its_rule_allows_it() {
        let inside = TWO_AM + 60;
        let cases: Vec<(Option<FlipRule>, u64, bool, Option<WaitOn>)> = vec![
            (None, 0, false, None),
            (None, 0, true, Some(WaitOn::UpdateLock)),
            (Some(rule(true, false, 600)), 0, false, None),
            (Some(rule(false, false, 600)), 0, false, Some(WaitOn::Paused)),
            (Some(rule(false, true, 600)), inside, true, Some(WaitOn::Paused)),
            (Some(rule(true, true, 600)), inside, false, None),
            (Some(rule(true, true, 600)), TWO_AM, false, None),
            (Some(rule(true, true, 600)), TWO_AM - 1, false, Some(WaitOn::Window)),
            (Some(rule(true, true, 600)), FOUR_AM, false, Some(WaitOn::Window)),
            (Some(rule(true, true, 600)), FOUR_AM - 1, false, None),
            (Some(rule(true, true, 600)), inside, true, Some(WaitOn::UpdateLock)),
            (Some(rule(true, true, 600)), FOUR_AM + 10, true, Some(WaitOn::Window)),
            // A bound of 0: the lock never holds a flip back.
            (Some(rule(true, false, 0)), 0, true, None),
        ];
        for (r, now, lock, expected) in cases {
            let d = with_rule(r.clone());
            let s = poll_with(&enrolled(None), &d, holding(now, lock));
            let what = format!("{r:?} at {now}, lock {lock}");
            match expected {
                None => {
                    let flip = Action::Flip { bundle: d.bundle.clone().expect("a bundle"), lock_overridden: lock };
                    assert_eq!(s.actions, vec![flip], "{what}");
                }
                Some(on) => {
                    assert_eq!(s.actions, vec![Action::Wait(d.bundle.clone().expect("a bundle"), on)], "{what}");
                    assert_eq!(s.state.hold.as_ref().and_then(|h| h.waiting_on), Some(on), "{what}");
                    // The same wait again is not reported again.
                    let again = poll_with(&s.state, &d, holding(now, lock));
                    assert!(again.actions.is_empty(), "{what}: {:?}", again.actions);
                }
            }
            assert_eq!(s.state.hold.as_ref().map(|h| h.manifest.clone()), Some("b".repeat(64)), "{what}");
        }
    }

    /// The lock's bound counts from the first time the lock held the target back, through the windows' closing and
    /// reopening, so an application that lets go only outside the windows does not hold it back for ever.
    #[test]
    fn the_update_lock_holds_a_flip_back_no_longer_than_the_rule_allows() {
        let d = with_rule(Some(rule(true, false, 3600)));
        let mut state = enrolled(None);
        let mut seen = Vec::new();
        for (now, lock) in [(100, true), (2000, false), (3000, true), (3699, true), (3700, true)] {
            let s = poll_with(&state, &d, holding(now, lock));
            seen.push(s.actions.clone());
            state = s.state;
        }
        let b = d.bundle.clone().expect("a bundle");
        assert_eq!(seen[0], vec![Action::Wait(b.clone(), WaitOn::UpdateLock)]);
        // Let go at 2000: flipped then (an application taking it again just before the flip is the executor's).
        assert_eq!(seen[1], vec![Action::Flip { bundle: b.clone(), lock_overridden: false }]);
        assert!(seen[2].is_empty() && seen[3].is_empty(), "still waiting on the lock, reported once: {seen:?}");
        assert_eq!(seen[4], vec![Action::Flip { bundle: b.clone(), lock_overridden: true }]);
        assert_eq!(state.hold.as_ref().and_then(|h| h.lock_since), Some(100));
        // Across the windows: the lock seen at 02:30, the window closes, the lock is still held when it reopens a
        // day later, long past the bound: flipped at once.
        let mut windowed = rule(true, true, 3600);
        windowed.windows.push(Window { start: "2026-12-07T02:00:00Z".into(), end: "2026-12-07T04:00:00Z".into() });
        let d = with_rule(Some(windowed));
        let b = d.bundle.clone().expect("a bundle");
        let s = poll_with(&enrolled(None), &d, holding(TWO_AM + 1800, true));
        assert_eq!(s.actions, vec![Action::Wait(b.clone(), WaitOn::UpdateLock)]);
        let s = poll_with(&s.state, &d, holding(FOUR_AM + 60, true));
        assert_eq!(s.actions, vec![Action::Wait(b.clone(), WaitOn::Window)]);
        let s = poll_with(&s.state, &d, holding(TWO_AM + 86_400 + 60, true));
        assert_eq!(s.actions, vec![Action::Flip { bundle: b, lock_overridden: true }]);
    }

    #[test]
    fn a_held_target_no_longer_desired_is_given_up_or_replaced() {
        let held_other = |running| Facts { held: Some("c".repeat(64)), ..facts(Some('a'), running) };
        // Another bundle desired: its install replaces the hold.
        let s = poll_with(&enrolled(None), &desired(Accepted, Some('b'), &[]), held_other(false));
        assert_eq!(s.actions, vec![Action::Install(bundle('b'))]);
        // No bundle desired, or the one the node runs (an aborted deployment, back to the baseline): given up.
        let s = poll_with(&enrolled(None), &desired(Accepted, None, &[]), held_other(false));
        assert_eq!(s.actions, vec![Action::CancelHold]);
        let runs_it = Facts { booted_manifest: Some("b".repeat(64)), ..held_other(false) };
        let s = poll_with(&enrolled(None), &desired(Accepted, Some('b'), &[]), runs_it);
        assert_eq!(s.actions, vec![Action::CancelHold]);
        // Not while an install runs, not for a node that is not accepted; a hold of another bundle is forgotten.
        let st = State {
            hold: Some(Hold { manifest: "c".repeat(64), waiting_on: Some(WaitOn::Paused), lock_since: None }),
            ..enrolled(None)
        };
        let s = poll_with(&st, &desired(Accepted, None, &[]), held_other(true));
        assert!(s.actions.is_empty());
        let s = poll_with(&st, &desired(Pending, None, &[]), held_other(false));
        assert!(s.actions.is_empty());
        let s = poll_with(&st, &desired(Accepted, None, &[]), facts(Some('a'), false));
        assert_eq!((s.actions.len(), s.state.hold), (0, None));
    }

    #[test]
    fn a_window_holds_its_start_and_not_its_end() {
        let w = |start: &str, end: &str| vec![Window { start: start.into(), end: end.into() }];
        let two_to_four = w("2026-12-06T02:00:00Z", "2026-12-06T04:00:00Z");
        assert!(inside(&two_to_four, TWO_AM) && inside(&two_to_four, FOUR_AM - 1));
        assert!(!inside(&two_to_four, TWO_AM - 1) && !inside(&two_to_four, FOUR_AM));
        // An offset is honoured; a window that does not parse holds no instant.
        assert!(inside(&w("2026-12-06T03:00:00+01:00", "2026-12-06T04:00:00Z"), TWO_AM));
        assert!(!inside(&w("06.12.2026 02:00", "2026-12-06T04:00:00Z"), TWO_AM + 1));
        assert!(!inside(&[], TWO_AM));
    }

    #[test]
    fn the_wait_backs_off_capped_and_keeps_the_slow_and_poll_paces() {
        let t = timing();
        let check = |l: Link, random: f64, secs: f64| assert_eq!(delay(&l, &t, random).as_secs_f64(), secs, "{l:?}");
        check(link(0, false), 0.0, 30.0);
        check(link(0, false), 1.0, 15.0);
        check(link(0, true), 0.0, 600.0);
        check(link(1, true), 0.0, 2.0);
        check(link(2, false), 0.0, 4.0);
        check(link(5, false), 0.0, 32.0);
        check(link(6, false), 0.0, 60.0);
        check(link(u32::MAX, false), 0.0, 60.0);
        check(link(6, false), 0.5, 45.0);
        // The endpoint's interval is clamped to the ceiling.
        let s = step(
            &link(0, false),
            &enrolled(None),
            &t,
            Event::Desired(
                Outcome::Ok(Polled::Changed(
                    Box::new(DesiredState { poll_interval_secs: 100_000, ..desired(Accepted, None, &[]) }),
                    None,
                )),
                Facts::default(),
            ),
        );
        assert_eq!(s.link.poll_interval, t.poll_ceiling);
    }

    /// Every event in every state of a grid (enrollment, failures, pace, desired state, what is settled and done,
    /// what the node runs): the rules that hold whatever the combination.
    #[test]
    fn every_event_in_every_state_keeps_the_loops_rules() {
        let t = timing();
        let d = desired(Accepted, Some('b'), &[("r1", ActionKind::Reboot), ("d1", ActionKind::Diagnostics)]);
        let mut states = Vec::new();
        for status in [None, Some(Pending), Some(Accepted)] {
            let paused = with_rule(Some(rule(false, true, 600)));
            let windowed = with_rule(Some(rule(true, true, 600)));
            for stored in [None, Some(d.clone()), Some(desired(Pending, Some('b'), &[])), Some(paused), Some(windowed)]
            {
                for settled in [None, Some('b')] {
                    for done in [false, true] {
                        let mut st = State { status, desired: stored.clone(), ..State::default() };
                        st.settled_bundle = settled.map(|c| c.to_string().repeat(64));
                        if done {
                            st.record_action("r1");
                        }
                        states.push(st);
                    }
                }
            }
        }
        let mut events: Vec<Event> = vec![
            Event::Enrolled(Outcome::Ok((Accepted, 30))),
            Event::Enrolled(Outcome::Rejected),
            Event::Enrolled(Outcome::Refused(400)),
            Event::Enrolled(Outcome::Down),
        ];
        let journal_done = Facts { update_done: Some("b".repeat(64)), ..facts(Some('a'), false) };
        for f in [
            facts(None, false),
            facts(Some('a'), false),
            facts(Some('b'), false),
            facts(Some('a'), true),
            journal_done,
            holding(TWO_AM + 60, false),
            holding(FOUR_AM, false),
            holding(TWO_AM + 60, true),
            Facts { held: Some("c".repeat(64)), ..facts(Some('a'), false) },
        ] {
            events.push(Event::Desired(Outcome::Ok(Polled::NotModified), f.clone()));
            events.push(Event::Desired(
                Outcome::Ok(Polled::Changed(Box::new(d.clone()), Some("\"e\"".into()))),
                f.clone(),
            ));
            for o in [Outcome::Rejected, Outcome::Refused(404), Outcome::Refused(400), Outcome::Down] {
                events.push(Event::Desired(o, f.clone()));
            }
        }
        for o in [Outcome::Ok(true), Outcome::Ok(false), Outcome::Rejected, Outcome::Refused(413), Outcome::Down] {
            events.push(Event::Reported(o));
        }
        for o in [Outcome::Ok("h".into()), Outcome::Rejected, Outcome::Refused(400), Outcome::Down] {
            events.push(Event::InventoryPut(o));
        }
        for end in [Installed::Verified, Installed::Flipped, Installed::Refused, Installed::Failed, Installed::Busy] {
            events.push(Event::Installed("b".repeat(64), end));
        }
        events.push(Event::Wake { inventory_changed: false });
        events.push(Event::Wake { inventory_changed: true });
        let mut n = 0;
        for st in &states {
            for l in [link(0, false), link(3, false), link(0, true), link(3, true)] {
                for ev in &events {
                    n += 1;
                    let s = step(&l, st, &t, ev.clone());
                    let what = format!("{ev:?} in {st:?} {l:?}");
                    let (down, reached) = match ev {
                        Event::Enrolled(o) => (matches!(o, Outcome::Down), !matches!(o, Outcome::Down)),
                        Event::Desired(o, _) => (
                            matches!(o, Outcome::Down | Outcome::Refused(400)),
                            !matches!(o, Outcome::Down | Outcome::Refused(400)),
                        ),
                        Event::Reported(o) => (
                            matches!(o, Outcome::Down | Outcome::Refused(_)),
                            matches!(o, Outcome::Ok(_) | Outcome::Rejected),
                        ),
                        Event::InventoryPut(o) => (
                            matches!(o, Outcome::Down | Outcome::Refused(_)),
                            matches!(o, Outcome::Ok(_) | Outcome::Rejected),
                        ),
                        _ => (false, false),
                    };
                    // The pace: a failure counts one more, a reached endpoint resets the count.
                    if down {
                        assert_eq!(s.link.failures, l.failures + 1, "{what}");
                        assert!(s.end_round, "{what}");
                    }
                    if reached {
                        assert_eq!(s.link.failures, 0, "{what}");
                    }
                    // A wake enrolls exactly when the node is not enrolled, and does nothing else then.
                    if let Event::Wake { .. } = ev {
                        assert_eq!(s.actions.first() == Some(&Action::Enroll), st.status.is_none(), "{what}");
                        assert!(st.status.is_some() || s.actions.len() == 1, "{what}");
                    }
                    for a in &s.actions {
                        match a {
                            // At most once: each action carried out was not done before and is recorded now.
                            Action::Run(x) | Action::Refuse(x, _) => {
                                assert!(!st.action_done(&x.id) && s.state.action_done(&x.id), "{what}");
                            }
                            // Never while an install runs, never one the node runs or is done with, never for a
                            // node that is not accepted.
                            Action::Install(b) => {
                                let Event::Desired(_, f) = ev else { panic!("an install from {what}") };
                                assert!(!f.install_running, "{what}");
                                assert_ne!(f.booted_manifest.as_deref(), Some(b.manifest_hash.as_str()), "{what}");
                                assert_ne!(s.state.settled_bundle.as_deref(), Some(b.manifest_hash.as_str()), "{what}");
                                assert_ne!(f.update_done.as_deref(), Some(b.manifest_hash.as_str()), "{what}");
                                assert_eq!(s.state.desired.as_ref().map(|d| d.status), Some(Accepted), "{what}");
                            }
                            // A flip only of the desired bundle's held target, when its rule allows it now, past
                            // an application's lock only when it held the flip back; never while an install runs.
                            Action::Flip { bundle: b, lock_overridden } => {
                                let Event::Desired(_, f) = ev else { panic!("a flip from {what}") };
                                assert!(!f.install_running, "{what}");
                                assert_eq!(f.held.as_deref(), Some(b.manifest_hash.as_str()), "{what}");
                                let wanted = s.state.desired.as_ref().and_then(|d| d.bundle.as_ref());
                                assert_eq!(wanted, Some(b), "{what}");
                                if let Some(r) = &b.flip {
                                    assert!(r.allowed && (r.windows.is_empty() || inside(&r.windows, f.now)), "{what}");
                                }
                                assert!(!lock_overridden || f.app_lock, "{what}");
                            }
                            Action::Wait(b, _) => {
                                let Event::Desired(_, f) = ev else { panic!("a wait from {what}") };
                                assert_eq!(f.held.as_deref(), Some(b.manifest_hash.as_str()), "{what}");
                            }
                            Action::CancelHold => {
                                let Event::Desired(_, f) = ev else { panic!("a cancel from {what}") };
                                let wanted = s.state.desired.as_ref().and_then(|d| d.bundle.as_ref());
                                assert!(f.held.is_some() && f.held.as_ref() != wanted.map(|b| &b.manifest_hash));
                                assert!(!f.install_running, "{what}");
                            }
                            _ => {}
                        }
                    }
                    // The ETag changes only with the desired state it belongs to.
                    if s.state.etag != st.etag && s.state.etag.is_some() {
                        assert!(matches!(ev, Event::Desired(Outcome::Ok(Polled::Changed(..)), _)), "{what}");
                    }
                }
            }
        }
        assert!(n > 5000, "{n} cases");
    }
}
