//! The node in QEMU managed through the fleet endpoint: `edge-cloud` (its router over a SQLite store, serving TLS on
//! the host's 127.0.0.1, reached by the guest as `https://10.0.2.100/` through QEMU's forward, verified against the
//! fleet's CA baked into the node's image) and the node's `edge-agent`,
//! a service of `edge-init`. The scenario of docs/qemu-tests.md, "Fleet": the node's reports and its telemetry (a
//! service's numbered lines) reach the endpoint once and in order, across a cut of the node's link (QMP `set_link`)
//! with a reboot in it.

use std::time::Duration;

use edge_cloud::harness::{Database, Endpoint};
use fleet_wire::admin::{NodeDetail, NodeList};
use fleet_wire::node::{NodeStatus, Report, ReportKind};
use qemu_tests::node::{self, Assets, BundleSpec};
use qemu_tests::{ok, wait_for, Vm};

/// How long one boot may take from power-on to the services, on a busy 2-core machine under TCG.
const BOOT: Duration = Duration::from_secs(240);
/// How long a shell command may take.
const CMD: Duration = Duration::from_secs(60);
/// How long the agent may take to act on what the endpoint says (a poll, then a whole install under TCG).
const AGENT: Duration = Duration::from_secs(600);

/// The ticker's lines the endpoint holds, by boot tag, in the endpoint's order: (number, lines lost before it).
fn ticks(ep: &Endpoint, id: &str) -> std::collections::BTreeMap<String, Vec<(u64, u64)>> {
    let mut by_boot: std::collections::BTreeMap<String, Vec<(u64, u64)>> = Default::default();
    let mut after = 0;
    loop {
        let page: fleet_wire::telemetry::LogPage = ep.admin_ok(
            "GET",
            &format!("/v1/admin/nodes/{id}/logs?after={after}&from=first&limit=5000&grep=tick%20"),
            None,
        );
        if page.lines.is_empty() {
            return by_boot;
        }
        after = page.next_after;
        for l in page.lines.iter().filter(|l| l.source == "ticker") {
            let mut words = l.text.split_whitespace().skip(1);
            let (Some(boot), Some(n)) = (words.next(), words.next().and_then(|n| n.parse().ok())) else { continue };
            by_boot.entry(boot.to_owned()).or_default().push((n, l.lost));
        }
    }
}

fn kinds(reports: &[Report]) -> Vec<(ReportKind, Option<String>)> {
    reports.iter().map(|r| (r.kind, r.version.clone())).collect()
}

/// Each report once, numbered from 1 without a gap: nothing lost, nothing counted twice.
fn assert_complete(reports: &[Report]) {
    let seqs: Vec<u64> = reports.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=reports.len() as u64).collect::<Vec<_>>(), "{:?}", kinds(reports));
}

#[test]
fn fleet_a_node_enrolls_is_accepted_updated_and_reports_what_it_did_while_the_endpoint_was_away() {
    let assets = ok(Assets::fleet());
    let v1 = ok(assets.bundle(&BundleSpec::good("1.0.0", 1)));
    let v2 = ok(assets.bundle(&BundleSpec::good("2.0.0", 2)));
    let v3 = ok(assets.bundle(&BundleSpec::good("3.0.0", 3)));
    // Over TLS: the node trusts the fleet's CA baked into its image and nothing else.
    let tls = assets.fleet_tls();
    let mut ep = Endpoint::new(Database::Sqlite, &assets.keyring(), Some("https://10.0.2.100")).with_tls(
        &tls.server_cert,
        &tls.server_key,
        &tls.ca_cert,
    );
    ep.start(2);

    // Provisioning: the site's enrollment token on the data partition of the disk, as `edge-image disk` seeds it.
    let token = ep.enrollment_token("pending");
    let seed = ok(assets.token_seed("fleet-seed", &token));
    let disk = ok(assets.disk_seeded("fleet", &v1, Some(&seed)));
    // The stick the second update comes on, while the endpoint is away.
    let stick = assets.dir().join("disks/fleet-stick.img");
    let _ = std::fs::remove_file(&stick);
    ok(qemu_tests::host_command(
        std::process::Command::new("mkfs.vfat").args(["-n", "EDGE-STICK", "-C"]).arg(&stick).arg("65536"),
    ));
    ok(qemu_tests::host_command(
        std::process::Command::new("mcopy").arg("-i").arg(&stick).arg(&v3).arg("::/update.edgeb"),
    ));
    let mut options = ok(assets.vm_options("fleet", &disk, Some(ep.port())));
    options.extra_disks.push(stick);
    let mut vm = ok(Vm::start(assets.tools(), options));
    assert_eq!(ok(node::next_boot(&mut vm, BOOT)), 'A');
    ok(node::services_up(&mut vm, BOOT));

    // The node enrolls and waits in the pending pool.
    let id = wait_for(AGENT, "the node enrolls", || {
        let list: NodeList = ep.admin_ok("GET", "/v1/admin/nodes?status=pending", None);
        list.nodes.first().map(|n| n.id.to_string())
    });
    let detail: NodeDetail = ep.admin_ok("GET", &format!("/v1/admin/nodes/{id}"), None);
    assert_eq!(detail.node.status, NodeStatus::Pending);
    // A service starts writing a numbered line every 100 ms; its lines reach the endpoint as the node's logs.
    ok(vm.sh_ok("mkdir -p /data/edge-node && touch /data/edge-node/ticker", CMD));
    wait_for(AGENT, "the ticker's lines reach the endpoint", || {
        (ticks(&ep, &id).values().map(Vec::len).sum::<usize>() > 10).then_some(())
    });
    assert_eq!(detail.inventory.arch, assets.arch().name());
    // Slot A's bundle is known from the first contact: the provisioning disk recorded it in the updater's journal.
    let slot_a = detail.inventory.slots.iter().find(|s| s.slot == "A").expect("slot A in the inventory");
    assert!(slot_a.booted, "{:?}", detail.inventory.slots);
    assert_eq!(slot_a.bundle.as_ref().map(|b| b.version.as_str()), Some("1.0.0"), "{:?}", detail.inventory.slots);

    // Accepted and labelled, then given 2.0.0 through its group.
    let _: serde_json::Value = ep.admin_ok("POST", &format!("/v1/admin/nodes/{id}/accept"), None);
    let _: serde_json::Value = ep.admin_ok(
        "PUT",
        &format!("/v1/admin/nodes/{id}/labels"),
        Some(serde_json::json!({"set": {"site": "harbour-1"}})),
    );
    let v2_hash = ep.upload(&std::fs::read(&v2).expect("bundle 2.0.0"));
    let _: serde_json::Value =
        ep.admin_ok("PUT", "/v1/admin/groups/harbour", Some(serde_json::json!({"bundle": v2_hash})));
    let _: serde_json::Value =
        ep.admin_ok("PUT", &format!("/v1/admin/nodes/{id}/group"), Some(serde_json::json!({"group": "harbour"})));

    // The agent installs it from the endpoint's store, edge-init reboots the node, the updater commits B.
    assert_eq!(ok(node::next_boot(&mut vm, AGENT)), 'B');
    let line = ok(vm.expect("slot B committed with", BOOT));
    assert!(line.contains("2.0.0"), "{line}");
    ok(node::services_up(&mut vm, BOOT));
    let summary = wait_for(AGENT, "the endpoint shows 2.0.0 committed", || {
        let d: NodeDetail = ep.admin_ok("GET", &format!("/v1/admin/nodes/{id}"), None);
        (d.node.booted_version.as_deref() == Some("2.0.0") && d.node.phase.as_deref() == Some("committed"))
            .then_some(d.node)
    });
    assert_eq!(summary.booted_slot.as_deref(), Some("B"));

    // The node's link is cut; it is updated from a stick by hand and commits on its own, rebooting meanwhile.
    ok(vm.qmp(r#"{"execute": "set_link", "arguments": {"name": "net0", "up": false}}"#));
    ok(vm.sh_ok("mkdir -p /run/stick && mount -t vfat -o ro /dev/vdb /run/stick", CMD));
    ok(vm.sh_ok("edge-update install /run/stick/update.edgeb", AGENT));
    ok(vm.sh_detached("edge-init ctl reboot", CMD));
    assert_eq!(ok(node::next_boot(&mut vm, BOOT)), 'A');
    let line = ok(vm.expect("slot A committed with", BOOT));
    assert!(line.contains("3.0.0"), "{line}");
    ok(node::services_up(&mut vm, BOOT));

    // The link is back: the endpoint receives the whole history in order, each report once.
    ok(vm.qmp(r#"{"execute": "set_link", "arguments": {"name": "net0", "up": true}}"#));
    let reports = wait_for(AGENT, "the node's history reaches the endpoint", || {
        let r = ep.reports(&id);
        r.iter().any(|x| x.kind == ReportKind::Committed && x.version.as_deref() == Some("3.0.0")).then_some(r)
    });
    assert_complete(&reports);
    let seen = kinds(&reports);
    let at = |kind: ReportKind, version: &str| {
        seen.iter()
            .position(|(k, v)| *k == kind && v.as_deref() == Some(version))
            .unwrap_or_else(|| panic!("{kind:?} {version} in {seen:?}"))
    };
    assert!(seen[0].0 == ReportKind::Booted || seen[0].0 == ReportKind::Enrolled, "{seen:?}");
    assert!(at(ReportKind::Flipped, "2.0.0") < at(ReportKind::Committed, "2.0.0"));
    assert!(at(ReportKind::Committed, "2.0.0") < at(ReportKind::Started, "3.0.0"));
    assert!(at(ReportKind::Flipped, "3.0.0") < at(ReportKind::Committed, "3.0.0"));
    let summary = wait_for(AGENT, "the endpoint shows 3.0.0 committed", || {
        let d: NodeDetail = ep.admin_ok("GET", &format!("/v1/admin/nodes/{id}"), None);
        (d.node.booted_version.as_deref() == Some("3.0.0")).then_some(d.node)
    });
    assert_eq!(summary.booted_slot.as_deref(), Some("A"));
    let status = ok(vm.sh_ok("edge-bootctl status", CMD));
    assert!(status.contains("slot A:     good, active, booted"), "{status}");
    assert_eq!(ok(vm.sh_ok("cat /etc/edge/version", CMD)).trim(), "3.0.0");

    // The endpoint now names 1.0.0, below the node's floor (it runs security version 3): the node checks for itself,
    // refuses it, says so, and installs nothing.
    let v1_hash = ep.upload(&std::fs::read(&v1).expect("bundle 1.0.0"));
    let _: serde_json::Value =
        ep.admin_ok("PUT", "/v1/admin/groups/harbour", Some(serde_json::json!({"bundle": v1_hash})));
    let refused = wait_for(AGENT, "the node refuses 1.0.0, a downgrade", || {
        // The group's 2.0.0, below the floor too since 3.0.0, may have been refused first.
        ep.reports(&id).into_iter().find(|r| r.kind == ReportKind::Refused && r.version.as_deref() == Some("1.0.0"))
    });
    assert_eq!(refused.version.as_deref(), Some("1.0.0"), "{refused:?}");
    assert_eq!(refused.exit_code, Some(7), "a downgrade is edge-update's exit class 7: {refused:?}");
    let status = ok(vm.sh_ok("edge-bootctl status", CMD));
    assert!(status.contains("slot A:     good, active, booted"), "nothing was installed: {status}");

    // The ticker stops; every numbered line of every boot it ran in is at the endpoint once and in order, or
    // counted as lost before the line after it, up to the last line it knows it wrote in that boot (it records it
    // when it is stopped, at each shutdown too).
    let boot = ok(vm.sh_ok("cut -c1-8 /proc/sys/kernel/random/boot_id", CMD)).trim().to_owned();
    // `ctl stop` answers once the signal is sent; the ticker writes its end when its `sleep` returns.
    ok(vm.sh_ok(
        &format!("edge-init ctl stop ticker && until [ -e /data/edge-node/ticker.{boot}.last ]; do sleep 0.1; done"),
        CMD,
    ));
    let ends = ok(vm.sh_ok("cd /data/edge-node && for f in ticker.*.last; do echo \"$f $(cat \"$f\")\"; done", CMD));
    let ends: std::collections::BTreeMap<String, i64> = ends
        .lines()
        .filter_map(|l| {
            let (file, n) = l.trim().split_once(' ')?;
            Some((file.strip_prefix("ticker.")?.strip_suffix(".last")?.to_owned(), n.parse().ok()?))
        })
        .collect();
    assert!(ends.len() >= 3, "the ticker ran and was stopped in three boots at least: {ends:?}");
    let last_here = *ends.get(&boot).expect("this boot's end");
    let by_boot = wait_for(AGENT, "the ticker's last line reaches the endpoint", || {
        let t = ticks(&ep, &id);
        t.get(&boot).and_then(|l| l.last()).is_some_and(|(n, _)| *n as i64 >= last_here).then_some(t)
    });
    for (tag, end) in &ends {
        let lines = by_boot.get(tag).map(Vec::as_slice).unwrap_or_default();
        let numbers: Vec<u64> = lines.iter().map(|(n, _)| *n).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "boot {tag}: each line once, in order");
        let top = numbers.last().map_or(-1, |n| *n as i64);
        assert!(top >= *end, "boot {tag}: the endpoint has lines to {top}, the ticker wrote to {end} at least");
        let missing = (top + 1) as u64 - numbers.len() as u64;
        let lost: u64 = lines.iter().map(|(_, lost)| *lost).sum();
        assert!(missing <= lost, "boot {tag}: {missing} lines missing, {lost} counted lost");
    }
}
