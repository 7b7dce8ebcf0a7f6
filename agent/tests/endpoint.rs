//! The agent's loop against an endpoint on loopback: enrollment, reports in order with their numbers, the
//! endpoint down and back, a link dropped after a batch was taken, a refused node, remote actions and a bundle
//! that is not the one named. The stand-in endpoint (`support`) only injects faults and records what the agent
//! sent; every request's signature is verified there.

mod support;

use std::time::Duration;

use fleet_wire::node::{Action, ActionKind, BundleRef, DesiredState, NodeStatus, ReportKind};
use support::{agent, Endpoint, Fault, Node};

fn kinds(ep: &Endpoint) -> Vec<ReportKind> {
    ep.reports().iter().map(|r| r.kind).collect()
}

#[test]
fn a_node_enrolls_reports_in_order_and_polls_with_its_etag() {
    let ep = Endpoint::start(NodeStatus::Pending);
    let node = Node::new(&ep.url());
    node.event("booted", "booted slot A");
    node.event("committed", "slot A committed");
    let mut a = agent(&node);
    let wait = a.round();
    let seen = ep.seen();
    assert!(seen.iter().all(|s| s.verified), "every request is signed by the node's key: {seen:?}");
    let paths: Vec<(&str, String)> = seen.iter().map(|s| (s.method.as_str(), s.path.clone())).collect();
    let id = a.node_id().to_string();
    assert_eq!(paths[0], ("POST", "/v1/enroll".to_owned()));
    assert_eq!(paths[1], ("POST", format!("/v1/nodes/{id}/reports")));
    assert_eq!(paths.last(), Some(&("GET", format!("/v1/nodes/{id}/desired"))));
    assert_eq!(paths[2], ("PUT", format!("/v1/nodes/{id}/inventory")), "the inventory once more after enrolling");
    assert_eq!(kinds(&ep), vec![ReportKind::Booted, ReportKind::Committed, ReportKind::Enrolled]);
    let seqs: Vec<u64> = ep.reports().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(a.state().status, Some(NodeStatus::Pending));
    assert_eq!(wait, Duration::from_secs(1), "the endpoint's interval, within floor and ceiling");
    // The next poll sends the ETag and gets 304; nothing else is sent again.
    node.event("trial", "on trial");
    a.round();
    let seen = ep.seen();
    let last = seen.last().expect("a poll");
    assert!(last.headers.iter().any(|(k, _)| k == "if-none-match"), "{last:?}");
    assert_eq!(last.status, 304);
    assert_eq!(seen.iter().filter(|s| s.path == "/v1/enroll").count(), 1);
    assert_eq!(kinds(&ep).last(), Some(&ReportKind::Trial));
    assert_eq!(a.n_pending(), 0);
    // Rounds back to back (no wait here) send the same poll within one second: never a replay.
    for _ in 0..3 {
        a.round();
    }
    assert_eq!(ep.lock().replays, 0);
    assert!(ep.seen().iter().all(|s| s.verified));
}

#[test]
fn with_the_endpoint_down_the_agent_backs_off_and_loses_nothing() {
    let ep = Endpoint::start(NodeStatus::Accepted);
    let node = Node::new(&ep.url());
    let mut a = agent(&node);
    a.round();
    ep.lock().always = Some(Fault::Unavailable);
    let mut waits = Vec::new();
    for i in 0..7 {
        node.event("booted", &format!("boot {i}"));
        waits.push(a.round().as_secs());
    }
    assert_eq!(waits, vec![2, 4, 8, 16, 16, 16, 16], "capped exponential backoff");
    let before = ep.reports().len();
    // The node restarts while the endpoint is still down: the spool and its numbering come back from the disk.
    drop(a);
    let mut a = agent(&node);
    assert_eq!(a.n_pending(), 7);
    ep.lock().always = None;
    // Back: the reports go in batches of 3, in order, and the pace is the poll interval again.
    assert_eq!(a.round(), Duration::from_secs(1));
    let reports = ep.reports();
    assert_eq!(reports.len(), before + 7);
    let messages: Vec<&str> = reports[before..].iter().map(|r| r.message.as_str()).collect();
    assert_eq!(messages, (0..7).map(|i| format!("boot {i}")).collect::<Vec<_>>());
    assert!(ep.lock().conflicts.is_empty());
}

#[test]
fn a_link_dropped_after_a_batch_was_taken_resends_the_same_numbers() {
    let ep = Endpoint::start(NodeStatus::Accepted);
    let node = Node::new(&ep.url());
    let mut a = agent(&node);
    a.round();
    for i in 0..5 {
        node.event("booted", &format!("boot {i}"));
    }
    ep.lock().faults = vec![Fault::DropAfter];
    a.round();
    a.round();
    let reports = ep.reports();
    let seqs: Vec<u64> = reports.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>(), "each once");
    let batches: Vec<Vec<u64>> = ep
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/reports"))
        .map(|s| {
            let b: fleet_wire::node::ReportBatch = serde_json::from_slice(&s.body).expect("batch");
            b.reports.iter().map(|r| r.seq).collect()
        })
        .collect();
    // The batch whose answer was lost goes again with the same numbers.
    let dropped = batches.iter().position(|b| b.first() == Some(&2)).expect("the dropped batch");
    assert_eq!(batches[dropped], batches[dropped + 1], "{batches:?}");
    assert!(ep.lock().conflicts.is_empty());
}

#[test]
fn a_refused_node_is_retried_at_the_slowest_pace() {
    let ep = Endpoint::start(NodeStatus::Accepted);
    let node = Node::new(&ep.url());
    ep.lock().always = Some(Fault::Forbidden);
    let mut a = agent(&node);
    assert_eq!(a.round(), Duration::from_secs(600));
    assert_eq!(a.state().status, None, "not enrolled");
    assert_eq!(a.round(), Duration::from_secs(600));
    ep.lock().always = None;
    a.round();
    assert_eq!(a.state().status, Some(NodeStatus::Accepted));
}

#[test]
fn an_action_runs_once() {
    let ep = Endpoint::start(NodeStatus::Accepted);
    let node = Node::new(&ep.url());
    let mut a = agent(&node);
    a.round();
    ep.lock().desired = Some(DesiredState {
        status: NodeStatus::Accepted,
        poll_interval_secs: 1,
        bundle: None,
        actions: vec![
            Action { id: "act-1".into(), kind: ActionKind::Diagnostics },
            Action { id: "act-2".into(), kind: ActionKind::Reboot },
        ],
    });
    for _ in 0..3 {
        a.round();
    }
    let reports = ep.reports();
    let actions: Vec<(ReportKind, Option<&str>)> =
        reports.iter().filter(|r| r.action.is_some()).map(|r| (r.kind, r.action.as_deref())).collect();
    // No edge-init listens on the control socket here: the reboot, reported done as it is asked, is then reported
    // refused; neither runs twice.
    assert_eq!(
        actions,
        vec![
            (ReportKind::ActionDone, Some("act-1")),
            (ReportKind::ActionDone, Some("act-2")),
            (ReportKind::ActionRefused, Some("act-2"))
        ]
    );
    let diagnostics = ep.lock().diagnostics.clone();
    assert_eq!(diagnostics.len(), 1);
    assert!(diagnostics[0].0.ends_with("/actions/act-1/diagnostics"));
    let text = diagnostics[0].1.to_string();
    assert!(!text.contains("fleet-token-1"), "no token in diagnostics");
    assert!(text.contains("edge-update.status/1"), "the updater's status: {text}");
}

fn desire(ep: &Endpoint, server: &testkit::http_server::Server, hash: &str, size: usize) {
    ep.lock().desired = Some(DesiredState {
        status: NodeStatus::Accepted,
        poll_interval_secs: 1,
        bundle: Some(BundleRef {
            name: "edge-stack".into(),
            version: "2.0.0".into(),
            security_version: 1,
            manifest_hash: hash.to_owned(),
            size_bytes: size as u64,
            urls: vec![server.url("/bundle")],
            flip: None,
        }),
        actions: vec![],
    });
}

#[test]
fn a_bundle_that_is_not_the_one_named_or_not_trusted_is_refused_once_and_nothing_is_written() {
    let ep = Endpoint::start(NodeStatus::Accepted);
    let node = Node::new(&ep.url());
    let server = testkit::http_server::Server::start();
    let (bytes, hash) = support::bundle(&support::bundle_key(), "2.0.0");
    server.put("/bundle", bytes.clone());
    let mut a = agent(&node);
    a.round();
    // The endpoint names another manifest than the one served.
    desire(&ep, &server, &"ab".repeat(32), bytes.len());
    a.round();
    a.round();
    let refused: Vec<_> = ep.reports().into_iter().filter(|r| r.kind == ReportKind::Refused).collect();
    assert_eq!(refused.len(), 1, "refused once, not retried");
    assert_eq!(refused[0].exit_code, Some(7));
    assert_eq!(std::fs::read(node.root().join("slot-b.img")).expect("slot"), vec![0u8; support::SLOT_BYTES]);
    // A bundle signed by a key the node does not trust, named with its own hash: the updater refuses it.
    let (bytes, hash_untrusted) = support::bundle(&image_layout::keys::SecretKey::from_seed([9; 32]), "2.0.1");
    server.put("/bundle", bytes.clone());
    desire(&ep, &server, &hash_untrusted, bytes.len());
    a.round();
    a.round();
    let refused: Vec<_> = ep.reports().into_iter().filter(|r| r.kind == ReportKind::Refused).collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[1].exit_code, Some(4), "the updater's class for an untrusted bundle");
    assert_eq!(std::fs::read(node.root().join("slot-b.img")).expect("slot"), vec![0u8; support::SLOT_BYTES]);
    let _ = hash;
}

#[test]
fn the_desired_bundle_is_installed_flipped_and_reported() {
    let ep = Endpoint::start(NodeStatus::Accepted);
    let node = Node::new(&ep.url());
    let server = testkit::http_server::Server::start();
    let (bytes, hash) = support::bundle(&support::bundle_key(), "2.0.0");
    server.put("/bundle", bytes.clone());
    let mut a = agent(&node);
    a.round();
    desire(&ep, &server, &hash, bytes.len());
    a.round();
    a.round();
    let kinds = kinds(&ep);
    // No edge-init here: the updater records that the reboot could not be asked for; the slot is flipped all the
    // same, and the agent does not install it again.
    for k in [ReportKind::Downloading, ReportKind::Started, ReportKind::Flipped, ReportKind::RebootFailed] {
        assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == ReportKind::Started).count(), 1, "{kinds:?}");
    assert_eq!(a.state().settled_bundle.as_deref(), Some(hash.as_str()));
    assert_eq!(a.state().stacks.get(&hash), Some(&serde_json::json!({"k3s": "v1.31.2"})));
    // The inventory now shows slot B's bundle, and was sent again.
    let inventories: Vec<fleet_wire::node::Inventory> = ep
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/inventory"))
        .map(|s| serde_json::from_slice(&s.body).expect("inventory"))
        .collect();
    let last = inventories.last().expect("an inventory after the install");
    let b = last.slots.iter().find(|s| s.slot == "B").expect("slot B");
    assert_eq!(b.bundle.as_ref().map(|x| x.manifest_hash.as_str()), Some(hash.as_str()));
    assert_eq!(b.state, "trial");
    // Stopped right after the flip, before its state was saved (edge-init's shutdown), then back on slot A (the
    // bootloader fell back): the updater's journal says this bundle was done with, so it is not installed again.
    drop(a);
    let state_path = node.root().join("data/edge-agent/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).expect("state")).expect("json");
    state["settled_bundle"] = serde_json::Value::Null;
    std::fs::write(&state_path, serde_json::to_vec(&state).expect("json")).expect("write");
    let journal_path = node.root().join("data/edge-update/journal.json");
    let text = std::fs::read_to_string(&journal_path).expect("journal");
    assert!(text.contains("\"phase\": \"flipped\"") || text.contains("\"phase\":\"flipped\""), "{text}");
    let text = text
        .replace("\"phase\": \"flipped\"", "\"phase\": \"rolled-back\"")
        .replace("\"phase\":\"flipped\"", "\"phase\":\"rolled-back\"");
    std::fs::write(&journal_path, text).expect("journal");
    let mut a = agent(&node);
    a.round();
    a.round();
    assert_eq!(ep.reports().iter().filter(|r| r.kind == ReportKind::Started).count(), 1, "installed once");
}

/// Listens where edge-init's control socket is, answers `ok` to each request line, and counts the reboots asked.
fn control_socket(path: &std::path::Path) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::io::{BufRead as _, Write as _};
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    let listener = std::os::unix::net::UnixListener::bind(path).expect("bind");
    let reboots = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = reboots.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut line = String::new();
            let _ = std::io::BufReader::new(&conn).read_line(&mut line);
            if line.trim() == "reboot" {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let _ = conn.write_all(b"ok\n");
        }
    });
    reboots
}

#[test]
fn a_reboot_action_asks_edge_init_once_and_is_refused_while_an_install_writes() {
    let ep = Endpoint::start(NodeStatus::Accepted);
    let node = Node::new(&ep.url());
    let reboots = control_socket(&node.root().join("run/control.sock"));
    let mut a = agent(&node);
    a.round();
    let reboot = |id: &str| Action { id: id.into(), kind: ActionKind::Reboot };
    ep.lock().desired = Some(DesiredState {
        status: NodeStatus::Accepted,
        poll_interval_secs: 1,
        bundle: None,
        actions: vec![reboot("r1")],
    });
    a.round();
    a.round();
    assert_eq!(reboots.load(std::sync::atomic::Ordering::SeqCst), 1, "asked once, never again");
    // An install holds the updater's lock: the next reboot action is refused, not run.
    let update = updater::config::Config::load(&node.update_config).expect("update config");
    let booted = updater::slots::booted(&update).expect("booted");
    let held = updater::run::Node::open(&update, booted).expect("the updater's lock");
    ep.lock().desired.as_mut().expect("desired").actions.push(reboot("r2"));
    a.round();
    drop(held);
    a.round();
    assert_eq!(reboots.load(std::sync::atomic::Ordering::SeqCst), 1);
    let actions: Vec<(ReportKind, Option<String>)> =
        ep.reports().into_iter().filter(|r| r.action.is_some()).map(|r| (r.kind, r.action)).collect();
    assert_eq!(
        actions,
        vec![(ReportKind::ActionDone, Some("r1".to_owned())), (ReportKind::ActionRefused, Some("r2".to_owned()))]
    );
}
