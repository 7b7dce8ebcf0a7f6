//! A rollout policy, parsed from the admin API's `RolloutPolicy`, and the decisions it makes, pure: which wave a
//! deployment is in and how many nodes may have begun by its end, whether a waiting node may start now, when the
//! brake trips, and what happens when a wave ends (docs/rollouts.md, "Waves and limits", "The failure brake").
//!
//! The store calls these inside the transaction that holds the deployment's row locked, with the counters read in
//! it, so every decision is made on what is committed (never on what a replica remembers) and the counters and the
//! decision change together.

use fleet_wire::rollout::RolloutPolicy;

/// How far a wave goes: a share of the deployment's nodes or a number of them, begun by its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Percent of the deployment's nodes, rounded up.
    Percent(u32),
    /// This many nodes (at most all of them).
    Count(u64),
}

impl Reach {
    fn parse(text: &str) -> Option<Reach> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: u32 = p.trim().parse().ok()?;
            return (1..=100).contains(&p).then_some(Reach::Percent(p));
        }
        let n: u64 = t.parse().ok()?;
        (n > 0).then_some(Reach::Count(n))
    }

    /// The number of nodes this reaches of `n` (a share rounded up, a count at most `n`).
    pub fn of(self, n: u64) -> u64 {
        match self {
            Reach::Percent(p) => (n * u64::from(p)).div_ceil(100),
            Reach::Count(c) => c.min(n),
        }
    }
}

impl std::fmt::Display for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reach::Percent(p) => write!(f, "{p}%"),
            Reach::Count(c) => write!(f, "{c}"),
        }
    }
}

/// A policy that parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The waves in order, the canary first when there is one; the last reaches every node.
    pub waves: Vec<Reach>,
    /// Whether the first wave is a canary.
    pub canary: bool,
    /// At most this many nodes updating at once in the deployment.
    pub max_concurrent: Option<u64>,
    /// At most this many nodes of one site updating at once.
    pub max_per_site: Option<u64>,
    /// Each wave after the first waits for an operator's resume.
    pub approve_waves: bool,
    /// Failures in the current wave that pause the deployment.
    pub brake: Option<Reach>,
    /// Flip only inside site windows.
    pub windows: bool,
    /// The longest an update lock may hold a flip back.
    pub lock_max_secs: u64,
}

/// A policy that does not parse: the field and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {field} {value:?}: expected {expected}")]
pub struct PolicyError {
    /// The field.
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// What it must be.
    pub expected: &'static str,
}

impl Policy {
    /// Parses and checks a policy: waves that never go back, the last reaching every node.
    pub fn parse(p: &RolloutPolicy) -> Result<Policy, PolicyError> {
        let mut waves = Vec::new();
        if p.canary > 0 {
            waves.push(Reach::Count(u64::from(p.canary)));
        }
        let mut last_percent = 0;
        let mut last_count = 0;
        for w in &p.waves {
            let bad = |expected| PolicyError { field: "waves", value: w.clone(), expected };
            let r = Reach::parse(w).ok_or_else(|| bad("a share from 1% to 100% or a count of at least 1"))?;
            match r {
                Reach::Percent(x) if x <= last_percent => return Err(bad("a share above the wave before")),
                Reach::Count(x) if x <= last_count => return Err(bad("a count above the wave before")),
                Reach::Percent(x) => last_percent = x,
                Reach::Count(x) => last_count = x,
            }
            waves.push(r);
        }
        match p.waves.last() {
            Some(w) if Reach::parse(w) == Some(Reach::Percent(100)) => {}
            last => {
                return Err(PolicyError {
                    field: "waves",
                    value: last.cloned().unwrap_or_default(),
                    expected: "a last wave of 100%",
                })
            }
        }
        let brake = match &p.brake {
            None => None,
            Some(b) => Some(Reach::parse(b).ok_or_else(|| PolicyError {
                field: "brake",
                value: b.clone(),
                expected: "a number of failures of at least 1, or a share from 1% to 100% of the wave",
            })?),
        };
        Ok(Policy {
            waves,
            canary: p.canary > 0,
            max_concurrent: p.max_concurrent.map(u64::from),
            max_per_site: p.max_per_site.map(u64::from),
            approve_waves: p.approve_waves,
            brake,
            windows: p.windows,
            lock_max_secs: p.lock_max_secs,
        })
    }

    /// The nodes that have begun by the end of wave `wave` in a deployment of `n` nodes: never less than the waves
    /// before it reach (a count can fall below an earlier share as the deployment grows).
    pub fn target(&self, wave: u32, n: u64) -> u64 {
        let last = self.waves.len().saturating_sub(1);
        self.waves[..=(wave as usize).min(last)].iter().map(|r| r.of(n)).max().unwrap_or(n)
    }

    /// Nodes in wave `wave` alone.
    pub fn wave_size(&self, wave: u32, n: u64) -> u64 {
        let before = if wave == 0 { 0 } else { self.target(wave - 1, n) };
        self.target(wave, n) - before
    }

    /// Whether `wave` is the last.
    pub fn is_last(&self, wave: u32) -> bool {
        wave as usize + 1 >= self.waves.len()
    }

    /// Failures in wave `wave` that trip the brake (at least 1), when the policy has one.
    pub fn brake_at(&self, wave: u32, n: u64) -> Option<u64> {
        self.brake.map(|b| match b {
            Reach::Count(c) => c,
            Reach::Percent(_) => b.of(self.wave_size(wave, n)).max(1),
        })
    }

    /// A wave's size as the policy says it.
    pub fn describe(&self, wave: u32) -> String {
        match self.waves.get(wave as usize) {
            Some(r) if wave == 0 && self.canary => format!("canary {r}"),
            Some(r) => r.to_string(),
            None => String::new(),
        }
    }
}

/// A deployment's counters, as its row holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// The current wave.
    pub wave: u32,
    /// Nodes in the deployment.
    pub members: u64,
    /// Nodes told to start, ever (updating, committed or failed).
    pub begun: u64,
    /// Nodes updating now.
    pub in_flight: u64,
    /// Failures in the current wave.
    pub wave_failed: u64,
}

/// Whether a waiting node starts, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Tell it to update.
    Start,
    /// The current wave has begun all it reaches.
    WaveFull,
    /// The deployment has `max_concurrent` nodes updating.
    FleetLimit,
    /// The node's site has `max_per_site` nodes updating.
    SiteLimit,
}

/// Decides whether a waiting node of a running deployment starts: within its wave's reach, the deployment's limit,
/// and its site's (`site_in_flight`: nodes of its site updating; a node with no site has no site limit).
pub fn decide(policy: &Policy, c: &Counters, site_in_flight: Option<u64>) -> Verdict {
    if c.begun >= policy.target(c.wave, c.members) {
        return Verdict::WaveFull;
    }
    if policy.max_concurrent.is_some_and(|m| c.in_flight >= m) {
        return Verdict::FleetLimit;
    }
    if let (Some(m), Some(s)) = (policy.max_per_site, site_in_flight) {
        if s >= m {
            return Verdict::SiteLimit;
        }
    }
    Verdict::Start
}

/// What follows once a node of the current wave has committed or failed (and the counters say so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing changes.
    Continue,
    /// The wave's failures reached the brake: pause, with the count and the threshold.
    Brake {
        /// Failures in the wave.
        failed: u64,
        /// The threshold.
        threshold: u64,
    },
    /// The wave has ended and the next begins.
    NextWave,
    /// The wave has ended and the next waits for an operator.
    AwaitApproval,
}

/// Decides what a node's end in the current wave leads to.
pub fn after_end(policy: &Policy, c: &Counters, failed: bool) -> Next {
    if failed {
        if let Some(threshold) = policy.brake_at(c.wave, c.members) {
            if c.wave_failed >= threshold {
                return Next::Brake { failed: c.wave_failed, threshold };
            }
        }
    }
    if wave_ended(policy, c) && !policy.is_last(c.wave) {
        return if policy.approve_waves { Next::AwaitApproval } else { Next::NextWave };
    }
    Next::Continue
}

/// Whether the current wave has ended: it has begun all it reaches (or every node) and none is updating.
pub fn wave_ended(policy: &Policy, c: &Counters) -> bool {
    c.in_flight == 0 && (c.begun >= policy.target(c.wave, c.members) || c.begun >= c.members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(canary: u32, waves: &[&str], brake: Option<&str>) -> RolloutPolicy {
        RolloutPolicy {
            canary,
            waves: waves.iter().map(|w| w.to_string()).collect(),
            max_concurrent: Some(5),
            max_per_site: Some(1),
            approve_waves: false,
            brake: brake.map(str::to_owned),
            windows: true,
            lock_max_secs: 60,
        }
    }

    #[test]
    fn waves_reach_cumulative_shares() {
        let p = Policy::parse(&policy(10, &["10%", "50%", "100%"], Some("10%"))).expect("policy");
        assert_eq!(p.waves.len(), 4);
        let n = 1000;
        let targets: Vec<u64> = (0..4).map(|w| p.target(w, n)).collect();
        assert_eq!(targets, [10, 100, 500, 1000]);
        assert_eq!(p.wave_size(1, n), 90);
        assert_eq!(p.brake_at(1, n), Some(9));
        assert_eq!(p.brake_at(0, n), Some(1), "10% of a canary of 10 rounds up to 1");
        // A small deployment: the canary is all of it; later shares never go below it.
        assert_eq!((0..4).map(|w| p.target(w, 5)).collect::<Vec<_>>(), [5, 5, 5, 5]);
        assert!(p.is_last(3) && !p.is_last(2));
        assert_eq!(p.describe(0), "canary 10");
        assert_eq!(p.describe(2), "50%");
    }

    #[test]
    fn bad_policies_name_the_field() {
        let bad = |waves: &[&str], brake: Option<&str>, field: &str| {
            let e = Policy::parse(&policy(0, waves, brake)).expect_err("bad");
            assert_eq!(e.field, field, "{waves:?} {brake:?}: {e}");
        };
        bad(&["50%", "10%", "100%"], None, "waves");
        bad(&["10%", "50%"], None, "waves");
        bad(&["0%", "100%"], None, "waves");
        bad(&["101%"], None, "waves");
        bad(&["ten", "100%"], None, "waves");
        bad(&["100%"], Some("0"), "brake");
        bad(&["100%"], Some("x%"), "brake");
        Policy::parse(&policy(0, &["20", "100%"], Some("3"))).expect("counts are fine");
    }

    #[test]
    fn a_node_starts_within_its_wave_and_the_limits() {
        let p = Policy::parse(&policy(2, &["50%", "100%"], Some("2"))).expect("policy");
        let c = Counters { wave: 0, members: 10, begun: 0, in_flight: 0, wave_failed: 0 };
        assert_eq!(decide(&p, &c, Some(0)), Verdict::Start);
        assert_eq!(decide(&p, &Counters { begun: 2, ..c }, Some(0)), Verdict::WaveFull);
        assert_eq!(decide(&p, &Counters { wave: 1, begun: 2, in_flight: 5, ..c }, None), Verdict::FleetLimit);
        assert_eq!(decide(&p, &Counters { wave: 1, begun: 2, in_flight: 1, ..c }, Some(1)), Verdict::SiteLimit);
        assert_eq!(decide(&p, &Counters { wave: 1, begun: 2, in_flight: 1, ..c }, None), Verdict::Start);
    }

    #[test]
    fn a_wave_ends_when_all_it_reaches_have_ended() {
        let mut p = Policy::parse(&policy(2, &["50%", "100%"], Some("2"))).expect("policy");
        let c = Counters { wave: 0, members: 10, begun: 2, in_flight: 1, wave_failed: 0 };
        assert_eq!(after_end(&p, &c, false), Next::Continue);
        assert_eq!(after_end(&p, &Counters { in_flight: 0, ..c }, false), Next::NextWave);
        assert_eq!(after_end(&p, &Counters { in_flight: 0, wave_failed: 1, ..c }, true), Next::NextWave);
        assert_eq!(
            after_end(&p, &Counters { in_flight: 0, wave_failed: 2, ..c }, true),
            Next::Brake { failed: 2, threshold: 2 }
        );
        assert_eq!(after_end(&p, &Counters { wave: 2, begun: 10, in_flight: 0, ..c }, false), Next::Continue);
        p.approve_waves = true;
        assert_eq!(after_end(&p, &Counters { in_flight: 0, ..c }, false), Next::AwaitApproval);
        // A deployment smaller than its wave ends the wave once every node has begun.
        assert!(wave_ended(&p, &Counters { wave: 1, members: 3, begun: 3, in_flight: 0, wave_failed: 0 }));
    }
}
