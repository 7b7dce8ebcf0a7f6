//! The node API against a real endpoint on loopback, on SQLite and on PostgreSQL: enrollment, the desired state
//! with its ETag, inventory and reports, and every refusal of the "Bad input and faults", each asserting
//! its status, its `error` word, and that the database is the same before and after.

mod support;

use fleet_wire::admin::{NodeDetail, NodeSummary, Role};
use fleet_wire::node::{self, DesiredState, EnrollReply, NodeStatus, ReportAck, ReportKind};
use support::{report, Backend, Env, Node, NOW};

both!(
    enrollment_pending_accept_desired_reports,
    enrollment_is_idempotent_and_updates_the_inventory,
    accept_token_labels_and_token_limits,
    refused_node_requests_change_nothing,
    refused_enrollments_change_nothing,
    refused_admin_calls_change_nothing,
    bodies_too_large_or_malformed_are_refused,
    reports_are_stored_once_and_history_is_bounded,
    pruning_goes_in_batches_and_keeps_what_is_live,
    a_restart_loses_nothing,
    polls_at_once_are_each_answered_as_alone,
);

/// An enrolled node accepted into a group with a bundle, and the endpoint's admin token.
fn enrolled(env: &Env, seed: u8) -> (Node, support::Admin) {
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("pending");
    let node = env.node(seed);
    let reply = node.enroll(&token);
    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
    (node, admin)
}

fn enrollment_pending_accept_desired_reports(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("pending");
    let node = env.node(1);
    let reply = node.enroll(&token);
    assert_eq!(reply.status, 201);
    let enrolled: EnrollReply = reply.json();
    assert_eq!((enrolled.node_id.clone(), enrolled.status), (node.id.clone(), NodeStatus::Pending));
    assert_eq!(enrolled.poll_interval_secs, 60);

    // Pending: a desired state with nothing in it.
    let reply = node.desired();
    assert_eq!(reply.status, 200);
    let desired: DesiredState = reply.json();
    assert_eq!((desired.status, desired.bundle, desired.actions.len()), (NodeStatus::Pending, None, 0));
    let etag = reply.header("etag").expect("an ETag");

    // The same state again: 304 with the same tag.
    let mut headers = node.sign("GET", &node::desired_path(&node.id), b"");
    headers.push(("if-none-match".into(), etag.clone()));
    let reply = node.send_signed("GET", &node::desired_path(&node.id), &headers, b"");
    assert_eq!((reply.status, reply.header("etag")), (304, Some(etag.clone())));
    assert!(reply.body.is_empty());

    // Accepted and in a group: the state changes, so does its tag.
    let summary: NodeSummary = admin.ok("POST", &format!("/v1/admin/nodes/{}/accept", node.id), None);
    assert_eq!(summary.status, NodeStatus::Accepted);
    let summary: NodeSummary =
        admin.ok("PUT", &format!("/v1/admin/nodes/{}/group", node.id), Some(serde_json::json!({ "group": "tills" })));
    assert_eq!(summary.group.as_deref(), Some("tills"));
    let reply = node.desired();
    let desired: DesiredState = reply.json();
    assert_eq!(desired.status, NodeStatus::Accepted);
    assert_ne!(reply.header("etag"), Some(etag));

    // Reports: stored and acknowledged; the current state follows them.
    let mut committed = report(2, ReportKind::Committed);
    committed.version = Some("2.0.0".into());
    committed.slot = Some("B".into());
    committed.phase = Some("committed".into());
    let reply = node.reports(vec![report(1, ReportKind::Flipped), committed]);
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json::<ReportAck>(), ReportAck { stored: 2, duplicates: 0, acked_seq: 2 });
    let detail: NodeDetail = admin.ok("GET", &format!("/v1/admin/nodes/{}", node.id), None);
    assert_eq!(detail.node.booted_version.as_deref(), Some("2.0.0"));
    assert_eq!(detail.node.booted_slot.as_deref(), Some("B"));
    assert_eq!(detail.node.phase.as_deref(), Some("committed"));
    assert_eq!(detail.node.last_report.as_deref(), Some("committed"));
    assert_eq!(detail.events.iter().map(|e| e.report.seq).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(detail.inventory.hostname, "node-1");
    assert_eq!(detail.node.labels.get("fleet").map(String::as_str), Some("north"), "the token's labels");
    assert_eq!(detail.node.labels.get("role").map(String::as_str), Some("till"), "the node's labels");
}

fn enrollment_is_idempotent_and_updates_the_inventory(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("pending");
    let node = env.node(2);
    assert_eq!(node.enroll(&token).status, 201);
    env.clock.set(NOW + 1);
    let mut inv = support::inventory("renamed");
    inv.site = Some("depot-9".into());
    let req = node::EnrollRequest {
        token: token.clone(),
        public_key: node::encode_public_key(&node.key.verifying_key()),
        inventory: inv,
    };
    let body = serde_json::to_vec(&req).expect("serialize");
    let headers = node.sign_as(node.id.as_str(), &node.key, "POST", node::ENROLL_PATH, &body, NOW + 1);
    let reply = node.send_signed("POST", node::ENROLL_PATH, &headers, &body);
    assert_eq!(reply.status, 200, "the same key enrolls again: the same record");
    assert_eq!(reply.json::<EnrollReply>().node_id, node.id);
    let list: fleet_wire::admin::NodeList = admin.ok("GET", "/v1/admin/nodes", None);
    assert_eq!(list.nodes.len(), 1);
    assert_eq!((list.nodes[0].hostname.as_str(), list.nodes[0].site.as_deref()), ("renamed", Some("depot-9")));
    let tokens: fleet_wire::admin::TokenList<fleet_wire::admin::EnrollmentTokenInfo> =
        admin.ok("GET", "/v1/admin/enrollment-tokens", None);
    assert_eq!(tokens.tokens[0].uses, 1, "a second enrollment of one node is not a second use");

    // The inventory by itself.
    let mut inv = support::inventory("third-name");
    inv.update_phase = Some("idle".into());
    assert_eq!(node.put_inventory(&inv).status, 204);
    let detail: NodeDetail = admin.ok("GET", &format!("/v1/admin/nodes/{}", node.id), None);
    assert_eq!((detail.inventory.hostname.as_str(), detail.node.phase.as_deref()), ("third-name", Some("idle")));
}

fn accept_token_labels_and_token_limits(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let created: fleet_wire::admin::CreatedToken<fleet_wire::admin::EnrollmentTokenInfo> = admin.ok(
        "POST",
        "/v1/admin/enrollment-tokens",
        Some(serde_json::json!({ "name": "line-3", "policy": "accept", "labels": { "line": "3" }, "max_uses": 1 })),
    );
    let a = env.node(3);
    let reply = a.enroll(&created.secret);
    assert_eq!(reply.json::<EnrollReply>().status, NodeStatus::Accepted);
    let before = env.dump();
    let b = env.node(4);
    assert_eq!(b.enroll(&created.secret).refusal(), (403, "token-exhausted".into()));
    assert_eq!(env.dump(), before);

    let expiring: fleet_wire::admin::CreatedToken<fleet_wire::admin::EnrollmentTokenInfo> = admin.ok(
        "POST",
        "/v1/admin/enrollment-tokens",
        Some(serde_json::json!({ "name": "short", "policy": "pending", "expires_in_secs": 60 })),
    );
    env.clock.set(NOW + 60);
    let before = env.dump();
    let body = b.enroll_body(&expiring.secret);
    let headers = b.sign_as(b.id.as_str(), &b.key, "POST", node::ENROLL_PATH, &body, NOW + 60);
    assert_eq!(b.send_signed("POST", node::ENROLL_PATH, &headers, &body).refusal(), (403, "token-expired".into()));
    assert_eq!(env.dump(), before);
}

fn refused_node_requests_change_nothing(backend: Backend) {
    let env = Env::new(backend);
    let (a, admin) = enrolled(&env, 10);
    let b = env.node(11);
    let token = admin.enrollment_token("accept");
    assert_eq!(b.enroll(&token).status, 201);
    let batch = serde_json::to_vec(&node::ReportBatch { reports: vec![report(1, ReportKind::Booted)] }).expect("json");
    let path_a = node::reports_path(&a.id);

    let check = |what: &str, reply: support::Reply, expected: (u16, &str), before: &str| {
        assert_eq!(reply.refusal(), (expected.0, expected.1.to_owned()), "{what}");
        assert_eq!(env.dump(), before, "{what}: the database changed");
    };

    let before = env.dump();
    // B signs with its own key a request on A's records.
    let headers = b.sign("POST", &path_a, &batch);
    check("b on a's path", b.send_signed("POST", &path_a, &headers, &batch), (403, "wrong-node"), &before);
    // B claims to be A, signing with its own key.
    let headers = b.sign_as(a.id.as_str(), &b.key, "POST", &path_a, &batch, NOW);
    check("b as a", a.send_signed("POST", &path_a, &headers, &batch), (401, "bad-signature"), &before);
    // No signature at all.
    let headers = vec![("content-digest".to_owned(), fleet_wire::digest::content_digest(&batch))];
    check("unsigned", a.send_signed("POST", &path_a, &headers, &batch), (401, "missing-signature"), &before);
    // A signature over another body.
    let mut headers = a.sign("POST", &path_a, &batch);
    let other = serde_json::to_vec(&node::ReportBatch { reports: vec![report(2, ReportKind::Booted)] }).expect("json");
    headers[0].1 = fleet_wire::digest::content_digest(&other);
    check("digest of another body", a.send_signed("POST", &path_a, &headers, &batch), (401, "bad-signature"), &before);
    // A body that is not the one the digest names.
    let headers = a.sign("POST", &path_a, &batch);
    check("another body", a.send_signed("POST", &path_a, &headers, &other), (400, "bad-digest"), &before);
    // Too old.
    let headers = a.sign_as(a.id.as_str(), &a.key, "POST", &path_a, &batch, NOW - 301);
    check("too old", a.send_signed("POST", &path_a, &headers, &batch), (401, "stale-signature"), &before);
    // A node the endpoint does not know.
    let stranger = env.node(12);
    let path_s = node::reports_path(&stranger.id);
    let headers = stranger.sign("POST", &path_s, &batch);
    check("unknown", stranger.send_signed("POST", &path_s, &headers, &batch), (401, "unknown-node"), &before);

    // A replay: the first is stored, the same signed request again is refused and changes nothing.
    let headers = a.sign("POST", &path_a, &batch);
    assert_eq!(a.send_signed("POST", &path_a, &headers, &batch).status, 200);
    let before = env.dump();
    check("replay", a.send_signed("POST", &path_a, &headers, &batch), (409, "replayed"), &before);
    // A poll replayed is refused too (its first copy recorded last_seen and its replay id); two polls in the same
    // second, each with its own nonce, are two requests.
    let desired_a = node::desired_path(&a.id);
    let poll = a.sign("GET", &desired_a, b"");
    assert_eq!(a.send_signed("GET", &desired_a, &poll, b"").status, 200);
    assert_eq!(a.request("GET", &desired_a, b"").status, 200);
    let before = env.dump();
    check("replayed poll", a.send_signed("GET", &desired_a, &poll, b""), (409, "replayed"), &before);

    // Rejected, then decommissioned: every request refused, nothing changes.
    let _: NodeSummary = admin.ok("POST", &format!("/v1/admin/nodes/{}/reject", a.id), None);
    env.clock.set(NOW + 1);
    let before = env.dump();
    let headers = a.sign_as(a.id.as_str(), &a.key, "POST", &path_a, &batch, NOW + 1);
    check("rejected reports", a.send_signed("POST", &path_a, &headers, &batch), (403, "node-rejected"), &before);
    let path = node::desired_path(&a.id);
    let headers = a.sign_as(a.id.as_str(), &a.key, "GET", &path, b"", NOW + 1);
    check("rejected poll", a.send_signed("GET", &path, &headers, b""), (403, "node-rejected"), &before);
    let owner = env.admin(Role::Admin);
    let _: NodeSummary = owner.ok("POST", &format!("/v1/admin/nodes/{}/decommission", b.id), None);
    let before = env.dump();
    let path = node::desired_path(&b.id);
    let headers = b.sign_as(b.id.as_str(), &b.key, "GET", &path, b"", NOW + 1);
    check("decommissioned poll", b.send_signed("GET", &path, &headers, b""), (403, "node-decommissioned"), &before);
    let body = b.enroll_body(&token);
    let headers = b.sign_as(b.id.as_str(), &b.key, "POST", node::ENROLL_PATH, &body, NOW + 1);
    check(
        "decommissioned enrolls again",
        b.send_signed("POST", node::ENROLL_PATH, &headers, &body),
        (403, "node-decommissioned"),
        &before,
    );
}

fn refused_enrollments_change_nothing(backend: Backend) {
    let env = Env::new(backend);
    let admin = env.admin(Role::Operator);
    let token = admin.enrollment_token("pending");
    let node = env.node(20);
    let before = env.dump();
    assert_eq!(node.enroll("nothing.like-a-token").refusal(), (403, "token-unknown".into()));
    assert_eq!(env.dump(), before);
    // Signed by another key than the one it enrolls.
    let other = env.node(21);
    let body = node.enroll_body(&token);
    let headers = other.sign("POST", node::ENROLL_PATH, &body);
    assert_eq!(node.send_signed("POST", node::ENROLL_PATH, &headers, &body).refusal(), (401, "key-mismatch".into()));
    let headers = node.sign_as(node.id.as_str(), &other.key, "POST", node::ENROLL_PATH, &body, NOW);
    assert_eq!(node.send_signed("POST", node::ENROLL_PATH, &headers, &body).refusal(), (401, "bad-signature".into()));
    assert_eq!(env.dump(), before);
    // A revoked token.
    let tokens: fleet_wire::admin::TokenList<fleet_wire::admin::EnrollmentTokenInfo> =
        admin.ok("GET", "/v1/admin/enrollment-tokens", None);
    let id = &tokens.tokens[0].id;
    let _: fleet_wire::admin::EnrollmentTokenInfo =
        admin.ok("POST", &format!("/v1/admin/enrollment-tokens/{id}/revoke"), None);
    let before = env.dump();
    assert_eq!(node.enroll(&token).refusal(), (403, "token-revoked".into()));
    assert_eq!(env.dump(), before);
}

fn refused_admin_calls_change_nothing(backend: Backend) {
    let env = Env::new(backend);
    let (node, _) = enrolled(&env, 30);
    let viewer = env.admin(Role::Viewer);
    let operator = env.admin(Role::Operator);
    let accept = format!("/v1/admin/nodes/{}/accept", node.id);
    let before = env.dump();
    let anonymous = support::send("POST", &format!("{}{accept}", env.url), &[], Some(b""));
    assert_eq!(anonymous.refusal(), (401, "no-token".into()));
    let forged = support::Admin { url: env.url.clone(), secret: "0123.4567".into() };
    assert_eq!(forged.call("POST", &accept, None).refusal(), (401, "bad-token".into()));
    assert_eq!(viewer.call("POST", &accept, None).refusal(), (403, "forbidden".into()));
    let decommission = format!("/v1/admin/nodes/{}/decommission", node.id);
    assert_eq!(operator.call("POST", &decommission, None).refusal(), (403, "forbidden".into()));
    let body = serde_json::json!({ "name": "x", "role": "admin" });
    assert_eq!(operator.call("POST", "/v1/admin/admin-tokens", Some(body)).refusal(), (403, "forbidden".into()));
    assert_eq!(env.dump(), before);
    // A viewer reads.
    let list: fleet_wire::admin::NodeList = viewer.ok("GET", "/v1/admin/nodes?status=pending", None);
    assert_eq!(list.nodes.len(), 1);
    // A revoked admin token is refused from then on.
    let owner = env.admin(Role::Admin);
    let tokens: fleet_wire::admin::TokenList<fleet_wire::admin::AdminTokenInfo> =
        owner.ok("GET", "/v1/admin/admin-tokens", None);
    let op_id = operator.secret.split('.').next().expect("id").to_owned();
    assert!(tokens.tokens.iter().any(|t| t.id == op_id));
    let _: fleet_wire::admin::AdminTokenInfo =
        owner.ok("POST", &format!("/v1/admin/admin-tokens/{op_id}/revoke"), None);
    let before = env.dump();
    assert_eq!(operator.call("POST", &accept, None).refusal(), (401, "bad-token".into()));
    assert_eq!(env.dump(), before);
}

fn bodies_too_large_or_malformed_are_refused(backend: Backend) {
    let env = Env::new(backend);
    let (node, _) = enrolled(&env, 40);
    let path = node::inventory_path(&node.id);
    let before = env.dump();
    let huge = vec![b' '; node::MAX_BODY_BYTES + 1];
    assert_eq!(node.request("PUT", &path, &huge).refusal(), (413, "too-large".into()));
    let reply = node.request("PUT", &path, b"{\"hostname\": ");
    assert_eq!(reply.refusal(), (400, "bad-json".into()));
    let mut inv = serde_json::to_value(support::inventory("n")).expect("json");
    inv["colour"] = "blue".into();
    let reply = node.request("PUT", &path, &serde_json::to_vec(&inv).expect("json"));
    assert_eq!(reply.refusal(), (400, "bad-json".into()));
    assert!(reply.json::<node::ErrorReply>().message.contains("colour"), "the field is named");
    // A huge inventory under the byte limit: too many NICs.
    let mut inv = support::inventory("n");
    inv.hardware.nics = vec![node::Nic { name: "eth".into(), mac: "00:00:00:00:00:00".into() }; 1000];
    let body = serde_json::to_vec(&inv).expect("json");
    assert!(body.len() < node::MAX_BODY_BYTES);
    assert_eq!(node.request("PUT", &path, &body).refusal(), (400, "bad-field".into()));
    assert_eq!(env.dump(), before);
}

fn reports_are_stored_once_and_history_is_bounded(backend: Backend) {
    let env = Env::with_config(backend, |c| c.retention.max_reports = 5);
    let (node, admin) = enrolled(&env, 50);
    let batch = |range: std::ops::RangeInclusive<u64>| range.map(|s| report(s, ReportKind::Booted)).collect::<Vec<_>>();
    assert_eq!(node.reports(batch(1..=3)).json::<ReportAck>(), ReportAck { stored: 3, duplicates: 0, acked_seq: 3 });
    env.clock.set(NOW + 1);
    // The same reports resent (a new signature): stored once.
    let body = serde_json::to_vec(&node::ReportBatch { reports: batch(2..=4) }).expect("json");
    let path = node::reports_path(&node.id);
    let headers = node.sign_as(node.id.as_str(), &node.key, "POST", &path, &body, NOW + 1);
    let ack: ReportAck = node.send_signed("POST", &path, &headers, &body).json();
    assert_eq!(ack, ReportAck { stored: 1, duplicates: 2, acked_seq: 4 });
    let body = serde_json::to_vec(&node::ReportBatch { reports: batch(5..=8) }).expect("json");
    let headers = node.sign_as(node.id.as_str(), &node.key, "POST", &path, &body, NOW + 1);
    let ack: ReportAck = node.send_signed("POST", &path, &headers, &body).json();
    assert_eq!(ack.acked_seq, 8);
    let page: fleet_wire::admin::EventPage =
        admin.ok("GET", &format!("/v1/admin/nodes/{}/events?limit=3", node.id), None);
    assert_eq!(page.events.iter().map(|e| e.report.seq).collect::<Vec<_>>(), [8, 7, 6]);
    assert_eq!(page.next_offset, Some(3));
    let page: fleet_wire::admin::EventPage =
        admin.ok("GET", &format!("/v1/admin/nodes/{}/events?limit=3&offset=3", node.id), None);
    assert_eq!(page.events.iter().map(|e| e.report.seq).collect::<Vec<_>>(), [5, 4], "only the newest 5 are kept");
    assert_eq!(page.next_offset, None);

    // Pruning by age, and of replay ids past the window.
    assert!(env.dump().contains("# replays"));
    let retention = edge_cloud::store::Retention { max_reports: 5, max_age_secs: 100 };
    env.rt.block_on(env.store.prune(retention, (NOW + 1000) as i64)).expect("prune");
    let dump = env.dump();
    let section = |name: &str| {
        let start = dump.find(&format!("# {name} ")).expect("section");
        dump[start..].lines().skip(1).take_while(|l| !l.starts_with('#')).count()
    };
    assert_eq!((section("reports"), section("replays")), (0, 0));
}

/// More expired replay ids and old reports than several of the prune's batches (of 100 rows): all go, and what is
/// still live stays.
fn pruning_goes_in_batches_and_keeps_what_is_live(backend: Backend) {
    let env = Env::with_config(backend, |c| c.retention.max_reports = 10_000);
    let (node, _admin) = enrolled(&env, 70);
    let path = node::reports_path(&node.id);
    let send_reports = |seqs: std::ops::RangeInclusive<u64>, at: u64| {
        let reports = seqs.map(|s| report(s, ReportKind::Booted)).collect();
        let body = serde_json::to_vec(&node::ReportBatch { reports }).expect("json");
        let headers = node.sign_as(node.id.as_str(), &node.key, "POST", &path, &body, at);
        assert_eq!(node.send_signed("POST", &path, &headers, &body).status, 200);
    };
    let poll = |at: u64| {
        let path = node::desired_path(&node.id);
        let headers = node.sign_as(node.id.as_str(), &node.key, "GET", &path, b"", at);
        assert_eq!(node.send_signed("GET", &path, &headers, b"").status, 200);
    };
    for _ in 0..1_089 {
        poll(NOW);
    }
    for first in (1..=1_100).step_by(100) {
        send_reports(first..=first + 99, NOW);
    }
    // Later, past the signature window of all the above: two polls and a report that are live.
    let later = NOW + 1_000;
    env.clock.set(later);
    poll(later);
    poll(later);
    send_reports(1_101..=1_101, later);
    let dump = env.dump();
    let count = |dump: &str, name: &str| {
        let start = dump.find(&format!("# {name} ")).expect("section");
        dump[start..].lines().skip(1).take_while(|l| !l.starts_with('#')).count()
    };
    // The enrollment, 1,089 polls and 11 batches at NOW; 3 requests later.
    assert_eq!((count(&dump, "reports"), count(&dump, "replays")), (1_101, 1 + 1_089 + 11 + 3));

    let retention = edge_cloud::store::Retention { max_reports: 10_000, max_age_secs: 500 };
    env.rt.block_on(env.store.prune(retention, later as i64)).expect("prune");
    let dump = env.dump();
    assert_eq!((count(&dump, "reports"), count(&dump, "replays")), (1, 3), "only the live rows are left");
    assert!(dump.contains("1101"), "the live report is the one kept");
}

fn a_restart_loses_nothing(backend: Backend) {
    let mut env = Env::new(backend);
    let (node, admin) = enrolled(&env, 60);
    assert_eq!(node.reports(vec![report(1, ReportKind::Booted)]).status, 200);
    let before = env.dump();
    env.restart();
    assert_eq!(env.dump(), before);
    let node = node.at(&env.url);
    let admin = admin.at(&env.url);
    env.clock.set(NOW + 1);
    let body = serde_json::to_vec(&node::ReportBatch { reports: vec![report(2, ReportKind::Booted)] }).expect("json");
    let path = node::reports_path(&node.id);
    let headers = node.sign_as(node.id.as_str(), &node.key, "POST", &path, &body, NOW + 1);
    assert_eq!(node.send_signed("POST", &path, &headers, &body).json::<ReportAck>().acked_seq, 2);
    let page: fleet_wire::admin::EventPage = admin.ok("GET", &format!("/v1/admin/nodes/{}/events", node.id), None);
    assert_eq!(page.events.len(), 2);
}

/// Polls arriving together (on SQLite the store answers them in batches, one transaction each): every poll gets the
/// answer it would get alone, a replay id held by two polls of the same moment lets one through, and only the polls
/// let through are recorded (their replay ids and their nodes' `last_seen`).
fn polls_at_once_are_each_answered_as_alone(backend: Backend) {
    use edge_cloud::error::{Error, Refusal};
    use edge_cloud::store::Replay;

    let env = Env::new(backend);
    let admin = env.admin(Role::Admin);
    let token = admin.enrollment_token("pending");
    let nodes: Vec<Node> = (0..4)
        .map(|i| {
            let n = env.node(200 + i);
            assert_eq!(n.enroll(&token).status, 201);
            n
        })
        .collect();
    let id = |i: usize| nodes[i].id.to_string();
    let _: NodeSummary = admin.ok("POST", &format!("/v1/admin/nodes/{}/accept", id(0)), None);
    let reboot: fleet_wire::admin::ActionInfo =
        admin.ok("POST", &format!("/v1/admin/nodes/{}/actions", id(0)), Some(serde_json::json!({"kind": "reboot"})));
    let _: NodeSummary = admin.ok("POST", &format!("/v1/admin/nodes/{}/reject", id(2)), None);
    let _: NodeSummary = admin.ok("POST", &format!("/v1/admin/nodes/{}/decommission", id(3)), None);
    let stranger = env.node(250).id.to_string();

    // 30 polls of each node and of the stranger, each its own replay id; then three of node 0 and three of node 1
    // sharing one id.
    let at = NOW as i64 + 10;
    let mut polls: Vec<(String, Replay)> = Vec::new();
    for k in 0..30 {
        for node in [id(0), id(1), id(2), id(3), stranger.clone()] {
            polls.push((node.clone(), Replay { id: format!("{node}-{k}"), expires_at: at + 300 }));
        }
    }
    for node in [id(0), id(1)] {
        for _ in 0..3 {
            polls.push((node.clone(), Replay { id: format!("{node}-twice"), expires_at: at + 300 }));
        }
    }
    let answers = env.rt.block_on(async {
        let tasks: Vec<_> = polls
            .iter()
            .cloned()
            .map(|(node, replay)| {
                let store = env.store.clone();
                tokio::spawn(async move { store.desired(&node, &replay, at).await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.expect("a poll's task"));
        }
        answers
    });

    let mut let_through = 0;
    let mut twice = [0, 0];
    for ((node, replay), answer) in polls.iter().zip(&answers) {
        let what = format!("poll {} of {node}: {answer:?}", replay.id);
        if replay.id.ends_with("-twice") {
            match answer {
                Ok(_) => twice[usize::from(*node == id(1))] += 1,
                Err(Error::Refused(Refusal::Replayed)) => {}
                Err(e) => panic!("{what}: {e}"),
            }
            if answer.is_err() {
                continue;
            }
        }
        match answer {
            Ok(d) if *node == id(0) => {
                assert_eq!(d.status, NodeStatus::Accepted, "{what}");
                assert_eq!(d.actions.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [reboot.id.as_str()], "{what}");
                let_through += 1;
            }
            Ok(d) if *node == id(1) => {
                assert_eq!((d.status, d.bundle.is_none(), d.actions.len()), (NodeStatus::Pending, true, 0), "{what}");
                let_through += 1;
            }
            Err(Error::Refused(Refusal::NodeRejected { id })) if *node == nodes[2].id.to_string() => {
                assert_eq!(*id, *node, "{what}");
            }
            Err(Error::Refused(Refusal::NodeDecommissioned { id })) if *node == nodes[3].id.to_string() => {
                assert_eq!(*id, *node, "{what}");
            }
            Err(Error::Refused(Refusal::NodeUnknown { id })) if *node == stranger => assert_eq!(*id, *node, "{what}"),
            _ => panic!("{what}"),
        }
    }
    assert_eq!(twice, [1, 1], "one of each shared replay id let through");
    assert_eq!(let_through, 62);

    let dump = env.dump();
    let start = dump.find("# replays ").expect("the replays section");
    let replays: Vec<&str> = dump[start..].lines().skip(1).take_while(|l| !l.starts_with('#')).collect();
    // The 4 enrollments' ids and the polls let through, no other.
    assert_eq!(replays.len(), 4 + 62, "{replays:#?}");
    assert!(!replays.iter().any(|l| l.contains(&stranger) || l.contains(&format!("{}-", id(2)))));
    for i in 0..4 {
        let detail: fleet_wire::admin::NodeDetail = admin.ok("GET", &format!("/v1/admin/nodes/{}", id(i)), None);
        let polled = detail.node.last_seen.as_deref() == Some(edge_cloud::clock::rfc3339(at).as_str());
        assert_eq!(polled, i < 2, "node {i}'s last_seen: {:?}", detail.node.last_seen);
    }
}
