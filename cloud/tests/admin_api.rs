//! The admin API against a real endpoint on loopback, on both backends: labels and the list's filters, groups and
//! pins giving the desired bundle, merging an old identity, remote actions through to the node's report and its
//! diagnostics, and the audit row every change writes.

mod support;

use fleet_wire::admin::{
    ActionInfo, ActionState, AuditPage, DiagnosticsInfo, GroupList, NodeDetail, NodeList, NodeSummary, Role,
};
use fleet_wire::node::{self, ActionKind, DesiredState, NodeStatus, ReportKind};
use serde_json::json;
use support::{report, Backend, Env};

both!(labels_groups_pins_and_the_audit_log, merging_an_old_identity, actions_reach_the_node_and_settle);

fn bundle(env: &Env, version: &str, hash_byte: char) -> String {
    support::add_bundle(env, version, hash_byte)
}

fn labels_groups_pins_and_the_audit_log(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("accept");
    let (a, b) = (env.node(80), env.node(81));
    assert_eq!(a.enroll(&token).status, 201);
    assert_eq!(b.enroll(&token).status, 201);
    let summary: NodeSummary = admin.ok(
        "PUT",
        &format!("/v1/admin/nodes/{}/labels", a.id),
        Some(json!({ "set": { "region": "eu", "role": "kiosk" }, "remove": ["fleet"] })),
    );
    assert_eq!(summary.labels.get("role").map(String::as_str), Some("kiosk"), "an admin's label wins");
    assert!(!summary.admin_labels.contains_key("fleet"));
    let list: NodeList = admin.ok("GET", "/v1/admin/nodes?label=region=eu", None);
    assert_eq!(list.nodes.iter().map(|n| &n.id).collect::<Vec<_>>(), [&a.id]);
    let list: NodeList = admin.ok("GET", "/v1/admin/nodes?label=role", None);
    assert_eq!(list.nodes.len(), 2);
    assert_eq!(admin.call("GET", "/v1/admin/nodes?status=lost", None).refusal(), (400, "bad-query".into()));

    let v2 = bundle(&env, "2.0.0", 'a');
    let v3 = bundle(&env, "3.0.0", 'b');
    for n in [&a, &b] {
        let _: NodeSummary =
            admin.ok("PUT", &format!("/v1/admin/nodes/{}/group", n.id), Some(json!({ "group": "tills" })));
    }
    let before = env.dump();
    let missing = "c".repeat(64);
    let reply = admin.call("PUT", "/v1/admin/groups/tills", Some(json!({ "bundle": missing })));
    assert_eq!(reply.refusal(), (404, "not-found".into()));
    assert_eq!(env.dump(), before);
    let _: fleet_wire::admin::GroupInfo = admin.ok("PUT", "/v1/admin/groups/tills", Some(json!({ "bundle": v2 })));
    let groups: GroupList = admin.ok("GET", "/v1/admin/groups", None);
    assert_eq!((groups.groups[0].n_nodes, groups.groups[0].bundle.as_deref()), (2, Some(v2.as_str())));
    let _: NodeSummary = admin.ok("PUT", &format!("/v1/admin/nodes/{}/pin", b.id), Some(json!({ "bundle": v3 })));
    let version = |n: &support::Node| n.desired().json::<DesiredState>().bundle.map(|b| b.version);
    assert_eq!(version(&a).as_deref(), Some("2.0.0"), "the group's bundle");
    let desired: DesiredState = b.desired().json();
    let bundle = desired.bundle.expect("a bundle");
    assert_eq!(
        (bundle.version.as_str(), bundle.urls.as_slice()),
        ("3.0.0", ["https://cdn.example/3.0.0.bundle".to_owned()].as_slice())
    );

    let audit: AuditPage = admin.ok("GET", "/v1/admin/audit?limit=100", None);
    let actions: Vec<&str> = audit.entries.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "admin-token-create",
            "token-create",
            "node-label",
            "bundle-add",
            "bundle-add",
            "node-group",
            "node-group",
            "group-bundle",
            "node-pin"
        ]
    );
    let label = &audit.entries.iter().find(|e| e.action == "node-label").expect("label entry");
    assert_eq!(label.target, a.id.as_str());
    assert!(label.actor_name.starts_with("operator-"));
    assert_eq!(label.change["before"]["admin_labels"], json!({ "fleet": "north" }));
    assert_eq!(label.change["after"]["admin_labels"], json!({ "region": "eu", "role": "kiosk" }));
}

fn merging_an_old_identity(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Admin);
    let token = admin.enrollment_token("pending");
    let old = env.node(90);
    assert_eq!(old.enroll(&token).status, 201);
    let _: NodeSummary = admin.ok("POST", &format!("/v1/admin/nodes/{}/accept", old.id), None);
    let _: NodeSummary =
        admin.ok("PUT", &format!("/v1/admin/nodes/{}/group", old.id), Some(json!({ "group": "depot" })));
    assert_eq!(old.reports(vec![report(1, ReportKind::Committed), report(2, ReportKind::Booted)]).status, 200);
    // The data partition was wiped: the node comes back with a new key.
    let new = env.node(91);
    assert_eq!(new.enroll(&token).status, 201);
    assert_eq!(new.reports(vec![report(1, ReportKind::Enrolled)]).status, 200);
    let merged: NodeSummary =
        admin.ok("POST", &format!("/v1/admin/nodes/{}/merge", new.id), Some(json!({ "from": old.id })));
    assert_eq!(merged.group.as_deref(), Some("depot"));
    assert_eq!(merged.admin_labels.get("fleet").map(String::as_str), Some("north"));
    let detail: NodeDetail = admin.ok("GET", &format!("/v1/admin/nodes/{}", old.id), None);
    assert_eq!(
        (detail.node.status, detail.node.merged_into.clone()),
        (NodeStatus::Decommissioned, Some(new.id.clone()))
    );
    let events: fleet_wire::admin::EventPage = admin.ok("GET", &format!("/v1/admin/nodes/{}/events", new.id), None);
    let mut got: Vec<(String, u64)> = events.events.iter().map(|e| (e.node.to_string(), e.report.seq)).collect();
    got.sort();
    let mut want = vec![(old.id.to_string(), 1), (old.id.to_string(), 2), (new.id.to_string(), 1)];
    want.sort();
    assert_eq!(got, want, "the old identity's history is shown with the new one's");
    let before = env.dump();
    let again = admin.call("POST", &format!("/v1/admin/nodes/{}/merge", new.id), Some(json!({ "from": old.id })));
    assert_eq!(again.refusal(), (409, "conflict".into()));
    assert_eq!(env.dump(), before);
}

fn actions_reach_the_node_and_settle(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("pending");
    let node = env.node(100);
    assert_eq!(node.enroll(&token).status, 201);
    let queue = format!("/v1/admin/nodes/{}/actions", node.id);
    let before = env.dump();
    assert_eq!(admin.call("POST", &queue, Some(json!({ "kind": "reboot" }))).refusal(), (409, "conflict".into()));
    assert_eq!(admin.call("POST", &queue, Some(json!({ "kind": "shell" }))).refusal(), (400, "bad-json".into()));
    assert_eq!(env.dump(), before);
    let _: NodeSummary = admin.ok("POST", &format!("/v1/admin/nodes/{}/accept", node.id), None);
    let reboot: ActionInfo = admin.ok("POST", &queue, Some(json!({ "kind": "reboot" })));
    let diag: ActionInfo = admin.ok("POST", &queue, Some(json!({ "kind": "diagnostics" })));
    let desired: DesiredState = node.desired().json();
    let mut kinds: Vec<(String, &str)> = desired.actions.iter().map(|a| (a.id.clone(), a.kind.word())).collect();
    let mut want =
        vec![(reboot.id.clone(), ActionKind::Reboot.word()), (diag.id.clone(), ActionKind::Diagnostics.word())];
    want.sort();
    kinds.sort();
    assert_eq!(kinds, want);

    // Diagnostics for a reboot are refused; for the diagnostics action they are stored.
    let diagnostics = node::Diagnostics {
        collected: "2027-01-15T08:00:00Z".into(),
        status: json!({ "phase": "idle" }),
        events: vec!["booted".into()],
        log_tail: vec!["line".into()],
        config: json!({ "endpoint": "https://fleet.example" }),
    };
    let body = serde_json::to_vec(&diagnostics).expect("json");
    let before = env.dump();
    let reply = node.request("PUT", &node::diagnostics_path(&node.id, &reboot.id), &body);
    assert_eq!(reply.refusal(), (409, "conflict".into()));
    assert_eq!(env.dump(), before);
    assert_eq!(node.request("PUT", &node::diagnostics_path(&node.id, &diag.id), &body).status, 204);
    let stored: DiagnosticsInfo = admin.ok("GET", &format!("/v1/admin/actions/{}/diagnostics", diag.id), None);
    assert_eq!(stored.diagnostics, diagnostics);

    // The node reports both: they leave its desired state and are settled.
    let mut done = report(1, ReportKind::ActionDone);
    done.action = Some(diag.id.clone());
    let mut refused = report(2, ReportKind::ActionRefused);
    refused.action = Some(reboot.id.clone());
    refused.reason = Some("an install is writing".into());
    assert_eq!(node.reports(vec![done, refused]).status, 200);
    let desired: DesiredState = node.request("GET", &node::desired_path(&node.id), b"").json();
    assert!(desired.actions.is_empty());
    let detail: NodeDetail = admin.ok("GET", &format!("/v1/admin/nodes/{}", node.id), None);
    let state = |id: &str| detail.actions.iter().find(|a| a.id == id).expect("action").clone();
    assert_eq!((state(&diag.id).state, state(&diag.id).has_diagnostics), (ActionState::Done, true));
    assert_eq!(
        (state(&reboot.id).state, state(&reboot.id).result.as_deref()),
        (ActionState::Refused, Some("an install is writing"))
    );
}
