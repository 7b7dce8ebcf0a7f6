//! The agent loop's decisions, pure: every wakeup and every result of a contact, install or action is an
//! [`Event`], and [`step`] says what it changes and what to do next. Nothing here does I/O, reads a clock or draws a
//! random number, so every event in every state is a table test; `agent` carries the [`Action`]s out.
//!
//! The rule that makes actions happen at most once lives here too: [`step`] records an action done in the state
//! it returns, and the executor saves that state before it carries out any action [`step`] returned.

use std::time::Duration;

use fleet_wire::node::{Action as RemoteAction, ActionKind, BundleRef, DesiredState, NodeStatus};

use crate::client::Polled;
use crate::config::Timing;
use crate::state::State;

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
}

/// How an install of the desired bundle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// Verified and flipped (a reboot was asked of edge-init).
    Flipped,
    /// Refused by the node's own checks (reported `refused`): not tried again until the desired bundle changes.
    Refused,
    /// Failed on the way (the network, a disk): tried again at the next poll, resuming.
    Failed,
    /// Another `edge-update` holds the lock: tried again at the next poll.
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
    /// Install this bundle through the updater.
    Install(BundleRef),
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
                    s.actions = follow(&mut s.state, &desired, &facts);
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
            Installed::Flipped | Installed::Refused => s.state.settled_bundle = Some(hash),
            // Retried at a later poll, which backs off like a failed contact while it keeps failing.
            Installed::Failed => s.link.failures = s.link.failures.saturating_add(1),
            Installed::Busy => {}
        },
    }
    s
}

/// What the desired state asks of the node now: each action not yet done (recorded done here), then the bundle
/// when the node does not run it, is not done with it and no install is under way.
fn follow(state: &mut State, desired: &DesiredState, facts: &Facts) -> Vec<Action> {
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
    if let Some(b) = &desired.bundle {
        let runs = facts.booted_manifest.as_deref() == Some(b.manifest_hash.as_str());
        let settled = state.settled_bundle.as_deref() == Some(b.manifest_hash.as_str())
            || facts.update_done.as_deref() == Some(b.manifest_hash.as_str());
        if desired.status == NodeStatus::Accepted && !runs && !settled && !facts.install_running {
            actions.push(Action::Install(b.clone()));
        }
    }
    actions
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
    use fleet_wire::node::NodeStatus::{Accepted, Pending};

    fn timing() -> Timing {
        Timing {
            poll_floor: Duration::from_secs(10),
            poll_ceiling: Duration::from_secs(600),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(60),
            jitter: 0.5,
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
        Facts { booted_manifest: booted.map(|c| c.to_string().repeat(64)), install_running: running, update_done: None }
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
            for stored in [None, Some(d.clone()), Some(desired(Pending, Some('b'), &[]))] {
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
        for f in
            [facts(None, false), facts(Some('a'), false), facts(Some('b'), false), facts(Some('a'), true), journal_done]
        {
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
        for end in [Installed::Flipped, Installed::Refused, Installed::Failed, Installed::Busy] {
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
