//! `edge-cloud` as an operator runs it: the binary against an endpoint served on loopback over a SQLite file, the
//! first admin token made offline with `admin-token create`, then the client's verbs with human output and with
//! `--json`, and refusals as exit codes.

mod support;

use fleet_wire::admin::{AuditPage, CreatedToken, EnrollmentTokenInfo, GroupList, NodeList, NodeSummary, TokenList};
use support::{edge_cloud, Backend, Env};

#[test]
fn the_admin_verbs_against_a_served_endpoint() {
    let env = Env::new(Backend::Sqlite);
    let data = env.data_dir();
    let data = data.to_str().expect("utf-8 path");

    // The first admin token, offline, straight into the endpoint's database.
    let run =
        edge_cloud(&["admin-token", "create", "--data", data, "--name", "root", "--role", "admin", "--json"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let created: CreatedToken<fleet_wire::admin::AdminTokenInfo> = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!((created.token.name.as_str(), created.token.created_by.as_str()), ("root", "bootstrap"));
    let secret = created.secret;
    let vars = [("EDGE_CLOUD_URL", env.url.as_str()), ("EDGE_CLOUD_TOKEN", secret.as_str())];

    // An enrollment token, human and JSON.
    let run = edge_cloud(&["tokens", "create", "--name", "line-3", "--policy", "pending", "--label", "line=3"], &vars);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("line-3") && run.stdout.contains("shown once"), "{}", run.stdout);
    let token = run.stdout.lines().rfind(|l| !l.is_empty()).expect("the secret line").to_owned();
    let run = edge_cloud(&["tokens", "list", "--json"], &vars);
    let list: TokenList<EnrollmentTokenInfo> = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(list.tokens.len(), 1);

    // A node enrolls; the client lists, accepts, labels and groups it.
    let node = env.node(120);
    let reply = node.enroll(&token);
    assert_eq!(reply.status, 201, "{token:?}: {}", String::from_utf8_lossy(&reply.body));
    let id = node.id.to_string();
    let run = edge_cloud(&["nodes", "list"], &vars);
    assert!(run.stdout.contains(&id) && run.stdout.contains("pending"), "{}", run.stdout);
    let run = edge_cloud(&["nodes", "list", "--status", "pending", "--json"], &vars);
    let list: NodeList = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(list.nodes.len(), 1);
    let run = edge_cloud(&["nodes", "accept", &id, "--json"], &vars);
    let n: NodeSummary = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(n.status.word(), "accepted");
    let run = edge_cloud(&["nodes", "label", &id, "region=eu", "--remove", "line"], &vars);
    assert!(run.stdout.contains("region=eu") && !run.stdout.contains("line=3"), "{}", run.stdout);
    let run = edge_cloud(&["nodes", "group", &id, "tills"], &vars);
    assert!(run.stdout.contains("group:    tills"), "{}", run.stdout);
    let run = edge_cloud(&["groups", "list", "--json"], &vars);
    let groups: GroupList = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(groups.groups[0].n_nodes, 1);
    let run = edge_cloud(&["nodes", "reboot", &id], &vars);
    assert!(run.stdout.contains("reboot") && run.stdout.contains("queued"), "{}", run.stdout);
    let run = edge_cloud(&["nodes", "show", &id], &vars);
    assert!(run.stdout.contains("actions:") && run.stdout.contains("status:   accepted"), "{}", run.stdout);
    let run = edge_cloud(&["events", &id, "--json"], &vars);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = edge_cloud(&["audit", "--json"], &vars);
    let audit: AuditPage = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(audit.entries[0].action, "action-queue");
    let run = edge_cloud(&["audit"], &vars);
    assert!(run.stdout.contains("node-accept"), "{}", run.stdout);

    // Refusals: the endpoint's word on stderr and exit code 3; no endpoint, 2.
    let run = edge_cloud(&["nodes", "accept", "n-00000000000000000000000000000000"], &vars);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("not-found"), "{}", run.stderr);
    let run = edge_cloud(&["nodes", "list"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = edge_cloud(&["nodes", "list", "--url", &env.url, "--token", "nope.nope"], &[]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("bad-token"), "{}", run.stderr);
}

#[test]
fn the_rollout_verbs_against_a_served_endpoint() {
    use fleet_wire::rollout::{DeploymentInfo, DeploymentList, SiteList};
    let env = Env::new(Backend::Sqlite);
    let admin = env.admin(fleet_wire::admin::Role::Operator);
    let vars = [("EDGE_CLOUD_URL", env.url.as_str()), ("EDGE_CLOUD_TOKEN", admin.secret.as_str())];
    let token = admin.enrollment_token("accept");
    let node = env.node(121);
    assert_eq!(node.enroll(&token).status, 201);
    let hash = support::add_bundle(&env, "2.0.0", 'c');

    let run = edge_cloud(
        &["sites", "set", "depot-7", "--time-zone", "Europe/Berlin", "--window", "mon-fri 02:00-04:00"],
        &vars,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("Europe/Berlin") && run.stdout.contains("mon-fri 02:00-04:00"), "{}", run.stdout);
    let run = edge_cloud(&["sites", "set", "depot-8", "--time-zone", "Nowhere/Land"], &vars);
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert!(run.stderr.contains("Nowhere/Land"), "{}", run.stderr);
    let run = edge_cloud(&["sites", "list", "--json"], &vars);
    let sites: SiteList = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!((sites.sites.len(), sites.sites[0].n_nodes), (1, 1));

    let run = edge_cloud(
        &[
            "deployments",
            "create",
            "v2",
            "--bundle",
            &hash,
            "--selector",
            "role = till",
            "--canary",
            "1",
            "--waves",
            "50%,100%",
            "--max-per-site",
            "1",
            "--brake",
            "1",
            "--json",
        ],
        &vars,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let d: DeploymentInfo = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!((d.n_nodes, d.waves.len()), (1, 3));
    let run = edge_cloud(&["deployments", "create", "bad", "--bundle", &hash, "--waves", "50%"], &vars);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("100%"), "{}", run.stderr);
    let run = edge_cloud(&["deployments", "show", &d.id], &vars);
    assert!(run.stdout.contains("canary 1") && run.stdout.contains("role = till"), "{}", run.stdout);
    let run = edge_cloud(&["deployments", "pause", &d.id], &vars);
    assert!(run.stdout.contains("paused:   operator"), "{}", run.stdout);
    let run = edge_cloud(&["deployments", "resume", &d.id, "--json"], &vars);
    let d2: DeploymentInfo = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(d2.state.word(), "running");
    let run = edge_cloud(&["deployments", "nodes", &d.id], &vars);
    assert!(run.stdout.contains(node.id.as_str()) && run.stdout.contains("waiting"), "{}", run.stdout);
    let run = edge_cloud(&["deployments", "abort", &d.id], &vars);
    assert!(run.stdout.contains("aborted"), "{}", run.stdout);
    let run = edge_cloud(&["deployments", "abort", &d.id], &vars);
    assert!(run.code != 0 && run.stderr.contains("aborted"), "{} {}", run.code, run.stderr);
    let run = edge_cloud(&["deployments", "list", "--json"], &vars);
    let list: DeploymentList = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(list.deployments.len(), 1);
}
