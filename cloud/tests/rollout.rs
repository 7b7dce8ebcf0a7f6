//! Rollouts against the real endpoint on loopback, on both backends, with two replicas on one database: a fleet of
//! 1,000 simulated agents, a deployment of canary 10 and waves of 10 %, 50 % and 100 % under a fleet-wide and a
//! per-site limit, failures injected (installs that fail, updates that roll back), sites with maintenance windows,
//! the endpoint's clock moved by the test (no sleeps). Asserted from the endpoint's own records: the limits are never
//! passed, the brake pauses at exactly its threshold and nothing starts while it holds, no node outside the selector
//! (or pinned) is ever told to update, nodes that come to match later join, flips happen only inside their site's
//! window, and an aborted deployment starts no one more. Plus the overlap refusal, approvals between waves, and
//! pause and resume by hand.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use ed25519_dalek::SigningKey;
use fleet_wire::admin::{AuditPage, NodeSummary, Role};
use fleet_wire::node::{self, DesiredState, NodeId, ReportKind};
use fleet_wire::rollout::{DeploymentInfo, DeploymentState, MemberList, MemberState, PauseReason};
use serde_json::json;
use support::{add_bundle, Admin, Backend, Env, Node};

both!(a_thousand_agents_roll_out_in_waves_within_the_limits, waves_wait_for_approval_and_an_abort_stops_starts);

/// The fleet's sites: a third in UTC+3 with a window of 00:00-12:00 local, a third in UTC+9 with 20:00-04:00
/// local, a third with no window. Fixed offsets without daylight saving, so the test can tell the local time by hand.
const SITES: usize = 20;

fn site_name(i: usize) -> String {
    format!("site-{i:02}")
}

/// The site's UTC offset in hours and its window in local hours (start, end), if it has one.
fn site_window(i: usize) -> Option<(i64, i64, i64)> {
    match i % 3 {
        0 => Some((3, 0, 12)),
        1 => Some((9, 20, 4)),
        _ => None,
    }
}

fn in_window(site: usize, at: i64) -> bool {
    let Some((offset, start, end)) = site_window(site) else { return true };
    let local_hour = (at + offset * 3600).rem_euclid(86_400) / 3600;
    if start < end {
        (start..end).contains(&local_hour)
    } else {
        local_hour >= start || local_hour < end
    }
}

/// How a simulated agent fails the update, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The install fails (a download that cannot finish).
    Install,
    /// The new slot fails its health check and rolls back.
    Health,
}

/// Where a simulated agent's update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Idle,
    Downloading,
    Verified,
    Flipped,
    Done,
}

/// A simulated agent: it does what `edge-agent` does with a desired state, one step per poll.
struct Agent {
    node: Node,
    site: usize,
    role: &'static str,
    fault: Fault,
    seq: u64,
    running: String,
    step: Step,
    /// Versions it was told to run.
    told: BTreeSet<String>,
    /// When it flipped, and the deployment that let it.
    flips: Vec<i64>,
    /// A flip rule that said allowed while the test knew the deployment to be paused all along.
    allowed_while_paused: u32,
}

fn key_of(i: usize) -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    SigningKey::from_bytes(&seed)
}

fn node_at(url: &str, i: usize) -> Node {
    let key = key_of(i);
    let id = NodeId::of_key(&key.verifying_key());
    Node { url: url.to_owned(), key, id }
}

fn inventory(i: usize, site: usize, role: &str) -> node::Inventory {
    let mut inv = support::inventory(&format!("node-{i}"));
    inv.site = Some(site_name(site));
    inv.labels = [("role".to_owned(), role.to_owned())].into();
    inv.slots = vec![node::SlotInventory {
        slot: "A".into(),
        booted: true,
        state: "good".into(),
        bundle: Some(node::SlotBundle {
            name: "stack".into(),
            version: "1.0.0".into(),
            security_version: 1,
            manifest_hash: "11".repeat(32),
            stack: Default::default(),
        }),
    }];
    inv
}

impl Agent {
    fn new(url: &str, i: usize, site: usize, role: &'static str) -> Agent {
        let fault = match i {
            _ if i % 37 == 5 => Fault::Install,
            _ if i % 41 == 9 => Fault::Health,
            _ => Fault::None,
        };
        Agent {
            node: node_at(url, i),
            site,
            role,
            fault,
            seq: 0,
            running: "1.0.0".into(),
            step: Step::Idle,
            told: BTreeSet::new(),
            flips: Vec::new(),
            allowed_while_paused: 0,
        }
    }

    fn signed(&self, url: &str, method: &str, path: &str, body: &[u8], now: i64) -> support::Reply {
        let n = self.node.at(url);
        let headers = n.sign_as(n.id.as_str(), &n.key, method, path, body, now as u64);
        n.send_signed(method, path, &headers, body)
    }

    fn enroll(&self, url: &str, token: &str, i: usize, now: i64) {
        let req = node::EnrollRequest {
            token: token.to_owned(),
            public_key: node::encode_public_key(&self.node.key.verifying_key()),
            inventory: inventory(i, self.site, self.role),
        };
        let body = serde_json::to_vec(&req).expect("json");
        let reply = self.signed(url, "POST", node::ENROLL_PATH, &body, now);
        assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
    }

    fn report(&mut self, url: &str, kind: ReportKind, version: &str, now: i64) {
        self.seq += 1;
        let mut r = support::report(self.seq, kind);
        r.version = Some(version.to_owned());
        r.time = edge_cloud::clock::rfc3339(now);
        let body = serde_json::to_vec(&node::ReportBatch { reports: vec![r] }).expect("json");
        let reply = self.signed(url, "POST", &node::reports_path(&self.node.id), &body, now);
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    }

    /// One poll and what the agent does with its answer.
    fn poll(&mut self, url: &str, now: i64, paused_all_round: bool) {
        let reply = self.signed(url, "GET", &node::desired_path(&self.node.id), b"", now);
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let desired: DesiredState = reply.json();
        let Some(bundle) = desired.bundle else { return };
        self.told.insert(bundle.version.clone());
        if bundle.version == self.running {
            return;
        }
        let version = bundle.version.clone();
        let flip = bundle.flip.clone();
        if paused_all_round && flip.as_ref().is_some_and(|f| f.allowed) {
            self.allowed_while_paused += 1;
        }
        match self.step {
            Step::Idle => {
                self.report(url, ReportKind::Downloading, &version, now);
                self.step = Step::Downloading;
            }
            Step::Downloading if self.fault == Fault::Install => {
                self.report(url, ReportKind::InstallFailed, &version, now);
                self.step = Step::Done;
            }
            Step::Downloading => {
                self.report(url, ReportKind::Verified, &version, now);
                self.step = Step::Verified;
            }
            Step::Verified => {
                let may = match &flip {
                    None => true,
                    Some(f) => {
                        f.allowed
                            && (f.windows.is_empty()
                                || f.windows.iter().any(|w| secs(&w.start) <= now && now < secs(&w.end)))
                    }
                };
                if may {
                    self.report(url, ReportKind::Flipped, &version, now);
                    self.flips.push(now);
                    self.step = Step::Flipped;
                }
            }
            Step::Flipped if self.fault == Fault::Health => {
                self.report(url, ReportKind::RolledBack, &version, now);
                self.step = Step::Done;
            }
            Step::Flipped => {
                self.report(url, ReportKind::Committed, &version, now);
                self.running = version;
                self.step = Step::Idle;
            }
            Step::Done => {}
        }
    }
}

fn secs(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time")
        .unix_timestamp()
}

/// The endpoint's records of a deployment.
fn records(admin: &Admin, id: &str) -> (DeploymentInfo, MemberList) {
    (
        admin.ok("GET", &format!("/v1/admin/deployments/{id}"), None),
        admin.ok("GET", &format!("/v1/admin/deployments/{id}/nodes"), None),
    )
}

/// The limits hold in what the endpoint recorded: nodes updating now, in all and per site; and over the whole
/// history, at every instant a node started, the nodes whose update spans it.
fn check_limits(members: &MemberList, max: usize, per_site: usize, ctx: &str) {
    let updating: Vec<_> = members.nodes.iter().filter(|m| m.state == MemberState::Updating).collect();
    assert!(updating.len() <= max, "{ctx}: {} updating, limit {max}", updating.len());
    let mut by_site: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &updating {
        *by_site.entry(m.site.as_deref().unwrap_or("")).or_default() += 1;
    }
    for (site, n) in by_site {
        assert!(n <= per_site, "{ctx}: {n} updating at {site}, limit {per_site}");
    }
    let spans: Vec<(i64, i64, &str)> = members
        .nodes
        .iter()
        .filter_map(|m| {
            let start = secs(m.started_at.as_deref()?);
            let end = m.finished_at.as_deref().map_or(i64::MAX, secs);
            Some((start, end, m.site.as_deref().unwrap_or("")))
        })
        .collect();
    for &(t, _, site) in &spans {
        let live: Vec<_> = spans.iter().filter(|(s, e, _)| *s <= t && t < *e).collect();
        assert!(live.len() <= max, "{ctx}: {} updating at {t}, limit {max}", live.len());
        let at_site = live.iter().filter(|(_, _, s)| *s == site).count();
        assert!(at_site <= per_site, "{ctx}: {at_site} updating at {site} at {t}, limit {per_site}");
    }
}

/// Runs one round: every agent in `who` polls (through the replicas in turn, from four threads at once), then the
/// clock moves two hours (one poll interval of the simulation).
fn round(env: &Env, urls: &[String], agents: &Mutex<Vec<Agent>>, who: &[usize], paused_all_round: bool) {
    let now = env.clock.now_secs();
    let n = agents.lock().expect("agents").len();
    let taken: Vec<Mutex<Option<Agent>>> = {
        let mut all = agents.lock().expect("agents");
        (0..n)
            .map(|i| {
                Mutex::new(if who.contains(&i) {
                    Some(std::mem::replace(&mut all[i], Agent::placeholder()))
                } else {
                    None
                })
            })
            .collect()
    };
    std::thread::scope(|s| {
        for t in 0..4 {
            let taken = &taken;
            s.spawn(move || {
                for (k, &i) in who.iter().enumerate().filter(|(k, _)| k % 4 == t) {
                    let url = &urls[(i + k) % urls.len()];
                    if let Some(a) = taken[i].lock().expect("agent").as_mut() {
                        a.poll(url, now, paused_all_round);
                    }
                }
            });
        }
    });
    let mut all = agents.lock().expect("agents");
    for (i, slot) in taken.into_iter().enumerate() {
        if let Some(a) = slot.into_inner().expect("agent") {
            all[i] = a;
        }
    }
    drop(all);
    env.clock.set(env.clock.now_secs() as u64 + 7200);
}

impl Agent {
    fn placeholder() -> Agent {
        Agent::new("http://placeholder", usize::MAX / 2, 0, "none")
    }
}

trait NowSecs {
    fn now_secs(&self) -> i64;
}

impl NowSecs for edge_cloud::clock::FixedClock {
    fn now_secs(&self) -> i64 {
        use edge_cloud::clock::Clock as _;
        self.now() as i64
    }
}

/// The deployment's limits: nodes updating at once, in all and per site.
const MAX: usize = 100;
const PER_SITE: usize = 6;

fn a_thousand_agents_roll_out_in_waves_within_the_limits(backend: Backend) {
    let env = Env::new(backend);
    let (replica_url, _store2, _server2) = env.replica();
    let urls = vec![env.url.clone(), replica_url];
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("accept");
    let v2 = add_bundle(&env, "2.0.0", 'b');
    for i in 0..SITES {
        let body = match site_window(i) {
            Some((3, _, _)) => json!({"time_zone": "Etc/GMT-3", "windows": ["daily 00:00-12:00"]}),
            Some(_) => json!({"time_zone": "Asia/Tokyo", "windows": ["daily 20:00-04:00"]}),
            None => json!({"time_zone": "UTC", "windows": []}),
        };
        let _: fleet_wire::rollout::SiteInfo =
            admin.ok("PUT", &format!("/v1/admin/sites/{}", site_name(i)), Some(body));
    }

    // 1,000 nodes: nine in ten are tills (the selector's), the rest kiosks.
    let now = env.clock.now_secs();
    let agents: Vec<Agent> =
        (0..1000).map(|i| Agent::new(&env.url, i, i % SITES, if i % 10 == 3 { "kiosk" } else { "till" })).collect();
    for (i, a) in agents.iter().enumerate() {
        a.enroll(&urls[i % 2], &token, i, now);
    }
    // Five tills pinned to what they run: never in a deployment.
    let pinned: Vec<usize> = vec![0, 1, 2, 4, 5];
    let v1 = add_bundle(&env, "1.0.0", 'a');
    for &i in &pinned {
        let _: NodeSummary =
            admin.ok("PUT", &format!("/v1/admin/nodes/{}/pin", agents[i].node.id), Some(json!({"bundle": v1})));
    }

    let policy = json!({"canary": 10, "waves": ["10%", "50%", "100%"], "max_concurrent": MAX, "max_per_site": PER_SITE,
        "brake": "4"});
    let created: DeploymentInfo = {
        let reply = admin.call(
            "POST",
            "/v1/admin/deployments",
            Some(json!({"name": "v2", "bundle": v2, "selector": "role = till", "policy": policy})),
        );
        assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
        reply.json()
    };
    let id = created.id.clone();
    let tills = agents.iter().enumerate().filter(|(i, a)| a.role == "till" && !pinned.contains(i)).count() as u64;
    assert_eq!(created.n_nodes, tills);
    assert_eq!(
        created.waves.iter().map(|w| w.target).collect::<Vec<_>>(),
        [10, tills.div_ceil(10), tills.div_ceil(2), tills]
    );

    // An overlapping deployment is refused, naming nodes; nothing of it is kept.
    let before = env.dump();
    let reply = admin.call(
        "POST",
        "/v1/admin/deployments",
        Some(json!({"name": "v2-site-4", "bundle": v2, "selector": "site = site-04, role = till", "policy": policy})),
    );
    assert_eq!(reply.refusal(), (409, "conflict".into()));
    let message = reply.json::<node::ErrorReply>().message;
    let named = agents.iter().filter(|a| a.site == 4 && message.contains(a.node.id.as_str())).count();
    assert!(named >= 1 && message.contains(&id) && message.contains("49 of the 49 nodes"), "{message}");
    assert_eq!(env.dump(), before);

    let agents = Mutex::new(agents);
    let mut paused_since: Option<u64> = None;
    let mut brakes = 0;
    let mut late_joined = false;
    let mut relabeled: Option<(usize, usize)> = None;
    for r in 0..400 {
        let (info, members) = records(&admin, &id);
        let ctx = format!("{backend:?} round {r}");
        check_limits(&members, MAX, PER_SITE, &ctx);
        // Every brake pause: at exactly its threshold, then nothing starts until an operator resumes.
        let paused = info.state == DeploymentState::Paused;
        if let Some(begun) = paused_since {
            assert_eq!(info.n_nodes - info.n_waiting, begun, "{ctx}: a node started while the brake held");
        }
        if paused && paused_since.is_none() {
            let pause = info.pause.clone().expect("a pause says why");
            assert_eq!(pause.reason, PauseReason::Brake, "{ctx}: {pause:?}");
            let audit: AuditPage = admin.ok("GET", "/v1/admin/audit?limit=20", None);
            let entry = audit.entries.iter().find(|e| e.action == "deployment-brake").expect("the brake is audited");
            assert_eq!((entry.change["failed"].as_u64(), entry.change["threshold"].as_u64()), (Some(4), Some(4)));
            paused_since = Some(info.n_nodes - info.n_waiting);
            brakes += 1;
            // Hold it for a few rounds, then resume by hand.
            let who: Vec<usize> = (0..1000).collect();
            for _ in 0..3 {
                round(&env, &urls, &agents, &who, true);
                let (info, members) = records(&admin, &id);
                check_limits(&members, MAX, PER_SITE, &ctx);
                assert_eq!(info.n_nodes - info.n_waiting, paused_since.expect("paused"), "{ctx}: started while paused");
            }
            let resumed: DeploymentInfo = admin.ok("POST", &format!("/v1/admin/deployments/{id}/resume"), None);
            assert_eq!(resumed.state, DeploymentState::Running);
            paused_since = None;
            continue;
        }
        if info.complete && late_joined {
            break;
        }
        // Nodes that come to match later: new tills enrolled after wave 1, a kiosk labelled a till; and a till
        // that has not begun labelled a kiosk, which takes it out.
        if !late_joined && info.wave >= 2 {
            let mut all = agents.lock().expect("agents");
            let now = env.clock.now_secs();
            for i in 1000..1020 {
                let a = Agent::new(&env.url, i, i % SITES, "till");
                a.enroll(&urls[i % 2], &token, i, now);
                all.push(a);
            }
            let kiosk = (0..1000).find(|&i| all[i].role == "kiosk").expect("a kiosk");
            let waiting: BTreeSet<String> =
                members.nodes.iter().filter(|m| m.state == MemberState::Waiting).map(|m| m.node.clone()).collect();
            let till = (0..1000)
                .find(|&i| all[i].role == "till" && waiting.contains(all[i].node.id.as_str()))
                .expect("a waiting till");
            drop(all);
            let all = agents.lock().expect("agents");
            let _: NodeSummary = admin.ok(
                "PUT",
                &format!("/v1/admin/nodes/{}/labels", all[kiosk].node.id),
                Some(json!({"set": {"role": "till"}})),
            );
            let _: NodeSummary = admin.ok(
                "PUT",
                &format!("/v1/admin/nodes/{}/labels", all[till].node.id),
                Some(json!({"set": {"role": "kiosk"}})),
            );
            relabeled = Some((kiosk, till));
            late_joined = true;
            let (info, _) = records(&admin, &id);
            assert_eq!(info.n_nodes, tills + 20, "{ctx}: 20 new tills and a kiosk join, a till leaves");
        }
        // Nodes with nothing to do (settled, or outside the selector) poll every fourth round, the rest every round.
        let who: Vec<usize> = {
            let all = agents.lock().expect("agents");
            (0..all.len())
                .filter(|&i| {
                    r % 4 == 0 || (all[i].role == "till" && all[i].step != Step::Done && all[i].running != "2.0.0")
                })
                .collect()
        };
        round(&env, &urls, &agents, &who, false);
    }
    let (info, members) = records(&admin, &id);
    assert!(info.complete && late_joined, "{backend:?}: not complete after 400 rounds: {info:?}");
    assert!(brakes >= 1, "the injected failures never tripped the brake");
    check_limits(&members, MAX, PER_SITE, "the end");

    let agents = agents.into_inner().expect("agents");
    let (kiosk, till) = relabeled.expect("relabeled");
    let in_selector = |i: usize, a: &Agent| (a.role == "till" && i != till && !pinned.contains(&i)) || i == kiosk;
    for (i, a) in agents.iter().enumerate() {
        if in_selector(i, a) {
            let m = members
                .nodes
                .iter()
                .find(|m| m.node == a.node.id.as_str())
                .unwrap_or_else(|| panic!("node {i} is not in the deployment"));
            let expected = if a.fault == Fault::None { MemberState::Committed } else { MemberState::Failed };
            assert_eq!(m.state, expected, "node {i} ({:?})", a.fault);
        } else {
            assert!(
                !a.told.contains("2.0.0"),
                "node {i} ({}, pinned {}) was told to update",
                a.role,
                pinned.contains(&i)
            );
        }
        assert_eq!(a.allowed_while_paused, 0, "node {i} was allowed to flip while the deployment was paused");
        for &t in &a.flips {
            assert!(in_window(a.site, t), "node {i} at {} flipped at {t}, outside its window", site_name(a.site));
        }
    }
    let flips: usize = agents.iter().map(|a| a.flips.len()).sum();
    assert!(flips as u64 >= info.n_committed, "{flips} flips, {} committed", info.n_committed);
    eprintln!(
        "{backend:?}: {} nodes, {} committed, {} failed, {brakes} brakes",
        info.n_nodes, info.n_committed, info.n_failed
    );
}

fn waves_wait_for_approval_and_an_abort_stops_starts(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let viewer = env.admin(Role::Viewer);
    let token = admin.enrollment_token("accept");
    let v2 = add_bundle(&env, "2.0.0", 'b');
    let now = env.clock.now_secs();
    let mut agents: Vec<Agent> = (0..30).map(|i| Agent::new(&env.url, 2000 + i, i % 3, "till")).collect();
    for a in agents.iter_mut() {
        a.fault = Fault::None;
    }
    for (i, a) in agents.iter().enumerate() {
        a.enroll(&env.url, &token, 2000 + i, now);
    }
    // Bad input is refused with the field named.
    for (body, field) in [
        (json!({"name": "x", "bundle": v2, "selector": "role ==", "policy": {"waves": ["100%"]}}), "selector"),
        (json!({"name": "x", "bundle": v2, "selector": "", "policy": {"waves": ["50%"]}}), "waves"),
        (json!({"name": "x", "bundle": "ab".repeat(32), "selector": "", "policy": {"waves": ["100%"]}}), "bundle"),
    ] {
        let reply = admin.call("POST", "/v1/admin/deployments", Some(body));
        assert!(reply.status == 400 || reply.status == 404, "{}", reply.status);
        let message = reply.json::<node::ErrorReply>().message;
        assert!(message.contains(field), "{message}");
    }
    let reply = admin.call("PUT", "/v1/admin/sites/x", Some(json!({"time_zone": "Mars/Olympus"})));
    assert_eq!(reply.refusal(), (400, "bad-field".into()));
    let reply = admin.call("PUT", "/v1/admin/sites/x", Some(json!({"time_zone": "UTC", "windows": ["25:00-26:00"]})));
    assert_eq!(reply.refusal(), (400, "bad-field".into()));
    let reply = viewer.call(
        "POST",
        "/v1/admin/deployments",
        Some(json!({"name": "x", "bundle": v2, "policy": {"waves": ["100%"]}})),
    );
    assert_eq!(reply.refusal(), (403, "forbidden".into()));

    let created: DeploymentInfo = admin.ok(
        "POST",
        "/v1/admin/deployments",
        Some(json!({"name": "v2", "bundle": v2, "policy": {"canary": 3, "waves": ["50%", "100%"], "approve_waves": true}})),
    );
    let id = created.id;
    let agents = Mutex::new(agents);
    let all: Vec<usize> = (0..30).collect();
    for _ in 0..5 {
        round(&env, std::slice::from_ref(&env.url), &agents, &all, false);
    }
    let (info, members) = records(&admin, &id);
    assert_eq!(
        (info.state, info.pause.as_ref().map(|p| p.reason)),
        (DeploymentState::Paused, Some(PauseReason::Approval))
    );
    assert_eq!((info.wave, info.n_committed, info.n_waiting), (0, 3, 27), "the canary, then a wait");
    assert_eq!(members.nodes.iter().filter(|m| m.state == MemberState::Committed).count(), 3);
    for _ in 0..3 {
        round(&env, std::slice::from_ref(&env.url), &agents, &all, true);
    }
    assert_eq!(records(&admin, &id).0.n_waiting, 27, "nothing starts while the approval waits");

    // Approved: wave 1 runs; paused by hand part way, then aborted.
    let resumed: DeploymentInfo = admin.ok("POST", &format!("/v1/admin/deployments/{id}/resume"), None);
    assert_eq!((resumed.state, resumed.wave), (DeploymentState::Running, 1));
    round(&env, std::slice::from_ref(&env.url), &agents, &all, false);
    let paused: DeploymentInfo = admin.ok("POST", &format!("/v1/admin/deployments/{id}/pause"), None);
    assert_eq!(paused.pause.as_ref().map(|p| p.reason), Some(PauseReason::Operator));
    assert_eq!(
        admin.call("POST", &format!("/v1/admin/deployments/{id}/pause"), None).refusal(),
        (409, "conflict".into())
    );
    let aborted: DeploymentInfo = admin.ok("POST", &format!("/v1/admin/deployments/{id}/abort"), None);
    assert_eq!(aborted.state, DeploymentState::Aborted);
    let begun = aborted.n_nodes - aborted.n_waiting;
    let committed = aborted.n_committed;
    for _ in 0..6 {
        round(&env, std::slice::from_ref(&env.url), &agents, &all, true);
    }
    let (info, members) = records(&admin, &id);
    assert_eq!((info.n_nodes - info.n_waiting, info.n_committed), (begun, committed), "an abort starts no one");
    let agents = agents.into_inner().expect("agents");
    // Committed nodes keep the bundle; the others are told what they ran.
    for a in &agents {
        let reply = a.signed(&env.url, "GET", &node::desired_path(&a.node.id), b"", env.clock.now_secs());
        let desired: DesiredState = reply.json();
        let m = members.nodes.iter().find(|m| m.node == a.node.id.as_str()).expect("member");
        let version = desired.bundle.as_ref().map(|b| b.version.as_str());
        if m.state == MemberState::Committed {
            assert_eq!(version, Some("2.0.0"));
        } else {
            assert_eq!(version, None, "{:?}", m.state);
        }
    }
    assert_eq!(
        admin.call("POST", &format!("/v1/admin/deployments/{id}/resume"), None).refusal(),
        (409, "conflict".into())
    );

    // A deployment made after the abort takes every node over (out of the aborted one, whatever they did there):
    // those whose inventory says they run its bundle join committed, the others waiting.
    let now = env.clock.now_secs();
    for (i, a) in agents.iter().enumerate().take(2) {
        let mut inv = inventory(2000 + i, a.site, a.role);
        let b = inv.slots[0].bundle.as_mut().expect("a bundle");
        (b.version, b.manifest_hash) = ("2.0.0".into(), v2.clone());
        let body = serde_json::to_vec(&inv).expect("json");
        let reply = a.signed(&env.url, "PUT", &node::inventory_path(&a.node.id), &body, now);
        assert!(reply.status < 300, "{}", String::from_utf8_lossy(&reply.body));
    }
    let again: DeploymentInfo = admin.ok(
        "POST",
        "/v1/admin/deployments",
        Some(json!({"name": "v2-again", "bundle": v2, "policy": {"canary": 5, "waves": ["100%"]}})),
    );
    assert_eq!((again.n_nodes, again.n_committed, again.n_waiting), (30, 2, 28), "{again:?}");
    assert!(records(&admin, &id).1.nodes.is_empty(), "no node is left in the aborted deployment");
    let (_, members) = records(&admin, &again.id);
    assert_eq!(members.nodes.len(), 30);
    for m in &members.nodes {
        let runs_it = agents[..2].iter().any(|a| a.node.id.as_str() == m.node);
        if runs_it {
            assert_eq!((m.state, m.wave, m.finished_at.is_some()), (MemberState::Committed, Some(0), true), "{m:?}");
        } else {
            assert_eq!((m.state, m.wave, m.finished_at.is_some()), (MemberState::Waiting, None, false), "{m:?}");
        }
    }
    let audit: AuditPage = admin.ok("GET", "/v1/admin/audit?limit=50", None);
    let actions: Vec<&str> = audit.entries.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "deployment-create",
        "deployment-await-approval",
        "deployment-resume",
        "deployment-wave",
        "deployment-pause",
        "deployment-abort",
    ] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
}
