//! A rollout through the fleet endpoint to two nodes in QEMU at one site (docs/qemu-tests.md, "Fleet rollout"):
//! `edge-cloud` serving TLS on the host's 127.0.0.1 as qemu-tests/tests/fleet.rs does, both nodes' agents enrolling
//! with one token, and a deployment of 2.0.0 with at most one node of the site updating at once and a brake at the
//! first failure. The nodes update one after the other; the second one's 2.0.0 fails its health check there (a
//! fault put on that node's data partition while the first updates), the node rolls back to 1.0.0 on its own, and
//! the rollout pauses by itself.

use std::time::Duration;

use edge_cloud::harness::{Database, Endpoint};
use fleet_wire::admin::{AuditPage, NodeList};
use fleet_wire::node::ReportKind;
use fleet_wire::rollout::{DeploymentInfo, DeploymentState, MemberList, MemberState, PauseReason};
use qemu_tests::node::{self, Assets, BundleSpec};
use qemu_tests::{ok, wait_for, Vm};

/// How long one boot may take from power-on to the services, on a busy 2-core machine under TCG (two guests).
const BOOT: Duration = Duration::from_secs(300);
/// How long a shell command may take.
const CMD: Duration = Duration::from_secs(90);
/// How long the agent may take to act on what the endpoint says (a poll, then a whole install under TCG).
const AGENT: Duration = Duration::from_secs(900);

#[test]
fn fleet_rollout_two_nodes_at_one_site_update_one_after_the_other_and_a_failure_pauses_it() {
    let assets = ok(Assets::fleet());
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let v2 = ok(assets.bundle(&BundleSpec::good("2.0.0", 2)));
    let tls = assets.fleet_tls();
    let mut ep = Endpoint::new(Database::Sqlite, &assets.keyring(), Some("https://10.0.2.100")).with_tls(
        &tls.server_cert,
        &tls.server_key,
        &tls.ca_cert,
    );
    ep.start(2);
    let token = ep.enrollment_token("accept");
    let seed = ok(assets.token_seed("rollout-seed", &token));
    let mut vms: Vec<Vm> = ["rollout-1", "rollout-2"]
        .iter()
        .map(|name| {
            let disk = ok(assets.disk_seeded(name, &v1, Some(&seed)));
            ok(Vm::start(assets.tools(), ok(assets.vm_options(name, &disk, Some(ep.port())))))
        })
        .collect();
    for vm in &mut vms {
        assert_eq!(ok(node::next_boot(vm, BOOT)), 'A');
        ok(node::services_up(vm, BOOT));
    }
    wait_for(AGENT, "both nodes enroll, accepted, at site harbour", || {
        let list: NodeList = ep.admin_ok("GET", "/v1/admin/nodes?status=accepted", None);
        (list.nodes.len() == 2 && list.nodes.iter().all(|n| n.site.as_deref() == Some("harbour"))).then_some(())
    });
    // Each node's id, as its agent made it (the key exists once the node has enrolled).
    let ids: Vec<String> = vms.iter_mut().map(|vm| ok(vm.sh_ok("edge-agent id", CMD)).trim().to_owned()).collect();
    assert_ne!(ids[0], ids[1]);

    let v2_hash = ep.upload(&std::fs::read(&v2).expect("bundle 2.0.0"));
    let policy = serde_json::json!({"waves": ["100%"], "max_per_site": 1, "brake": "1"});
    let body =
        serde_json::json!({"name": "harbour-2", "bundle": v2_hash, "selector": "site = harbour", "policy": policy});
    let created: DeploymentInfo = ep.admin_ok("POST", "/v1/admin/deployments", Some(body));
    assert_eq!(created.n_nodes, 2);
    let members = |ep: &Endpoint| -> MemberList {
        ep.admin_ok("GET", &format!("/v1/admin/deployments/{}/nodes", created.id), None)
    };

    // One node is let start; the other's data partition gets the fault its health check will find.
    let first = wait_for(AGENT, "one node starts", || {
        let m = members(&ep);
        let updating: Vec<String> =
            m.nodes.iter().filter(|n| n.state == MemberState::Updating).map(|n| n.node.clone()).collect();
        assert!(updating.len() <= 1, "the per-site limit: {m:?}");
        updating.into_iter().next()
    });
    let f = ids.iter().position(|id| *id == first).expect("the first is one of ours");
    let s = 1 - f;
    ok(vms[s].sh_ok("mkdir -p /data/edge-node && touch /data/edge-node/unhealthy", CMD));

    // The first updates and commits; the second has not begun meanwhile.
    assert_eq!(ok(node::next_boot(&mut vms[f], AGENT)), 'B');
    let line = ok(vms[f].expect("slot B committed with", BOOT));
    assert!(line.contains("2.0.0"), "{line}");
    wait_for(AGENT, "the endpoint records the first node's commit", || {
        members(&ep).nodes.iter().any(|n| n.node == first && n.state == MemberState::Committed).then_some(())
    });

    // Then the second: told to start only now, it installs, boots 2.0.0 on trial, fails its check, falls back.
    assert_eq!(ok(node::next_boot(&mut vms[s], AGENT)), 'B');
    ok(vms[s].expect("health: this node is marked unhealthy", BOOT));
    ok(vms[s].expect("slot B: marked bad", BOOT));
    assert_eq!(ok(node::next_boot(&mut vms[s], BOOT)), 'A', "the second node falls back to slot A");
    ok(vms[s].expect("slot B rolled back", BOOT));
    ok(node::services_up(&mut vms[s], BOOT));

    // The rollout pauses by itself, at its brake, and says why.
    let info: DeploymentInfo = wait_for(AGENT, "the brake pauses the rollout", || {
        let d: DeploymentInfo = ep.admin_ok("GET", &format!("/v1/admin/deployments/{}", created.id), None);
        (d.state == DeploymentState::Paused).then_some(d)
    });
    let pause = info.pause.clone().expect("a pause");
    assert_eq!(pause.reason, PauseReason::Brake, "{pause:?}");
    assert_eq!((info.n_committed, info.n_failed), (1, 1), "{info:?}");
    let m = members(&ep);
    let of = |id: &str| m.nodes.iter().find(|n| n.node == id).expect("a member").clone();
    let (a, b) = (of(&ids[f]), of(&ids[s]));
    assert_eq!((a.state, b.state), (MemberState::Committed, MemberState::Failed), "{m:?}");
    // One after the other, by the endpoint's own records.
    let finished = a.finished_at.expect("the first finished");
    let started = b.started_at.expect("the second started");
    assert!(finished <= started, "the second began ({started}) before the first ended ({finished})");
    let reports = ep.reports(&ids[s]);
    assert!(
        reports.iter().any(|r| r.kind == ReportKind::RolledBack && r.version.as_deref() == Some("2.0.0")),
        "{:?}",
        reports.iter().map(|r| (r.kind, r.version.clone())).collect::<Vec<_>>()
    );
    let audit: AuditPage = ep.admin_ok("GET", "/v1/admin/audit", None);
    assert!(audit.entries.iter().any(|e| e.action == "deployment-brake" && e.target == created.id));
    let status = ok(vms[s].sh_ok("edge-bootctl status", CMD));
    // Back on A by the bootloader's fallback, B bad with no tries left (as tests/node.rs finds after a rollback).
    assert!(status.contains("next boot:  A (good)") && status.contains("slot A:     good, booted"), "{status}");
    assert!(status.contains("slot B:     not good, 0 tries left"), "{status}");
    assert_eq!(ok(vms[s].sh_ok("cat /etc/edge/version", CMD)).trim(), "1.0.0");
    assert_eq!(ok(vms[f].sh_ok("cat /etc/edge/version", CMD)).trim(), "2.0.0");
}
