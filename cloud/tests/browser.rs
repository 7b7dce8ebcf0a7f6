//! The web view in a real headless Chromium (Debian's, driven through chromedriver by testkit's WebDriver client)
//! against a real endpoint on loopback: an operator logs in with an admin token, accepts a pending node, starts a
//! deployment with the page's form, watches it advance as simulated agents report through the node API, sees the
//! failure brake pause it, and aborts it. The screenshots go to `target/screenshots/`, and with
//! `UPDATE_SCREENSHOTS=1` into docs/images (docs/cloud.md, "The web view").

mod support;

use std::path::PathBuf;
use std::time::Duration;

use fleet_wire::admin::{NodeDetail, Role};
use fleet_wire::node::{DesiredState, NodeStatus, ReportKind};
use fleet_wire::rollout::{DeploymentInfo, DeploymentList, DeploymentState, PauseReason};
use support::{Backend, Env, Node};
use testkit::webdriver::Browser;

/// A simulated agent: told to install the bundle, it reports at its next turn as if it installed it, committing or
/// failing its health check.
struct Agent {
    node: Node,
    seq: u64,
    fails: bool,
    told: bool,
    done: bool,
}

impl Agent {
    fn new(node: Node) -> Agent {
        Agent { node, seq: 0, fails: false, told: false, done: false }
    }

    /// A poll; true when it newly tells the node to install the bundle of `version`.
    fn poll(&mut self, version: &str) -> bool {
        let reply = self.node.desired();
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let desired: DesiredState = reply.json();
        let newly = !self.told && desired.bundle.as_ref().is_some_and(|b| b.version == version);
        self.told |= newly;
        newly
    }

    /// Reports how the install it was told of ended.
    fn finish(&mut self, version: &str) {
        if !self.told || self.done {
            return;
        }
        let end = if self.fails { ReportKind::RolledBack } else { ReportKind::Committed };
        let reports = [ReportKind::Verified, ReportKind::Flipped, end]
            .into_iter()
            .map(|k| {
                self.seq += 1;
                let mut r = support::report(self.seq, k);
                r.version = Some(version.to_owned());
                r
            })
            .collect();
        let reply = self.node.reports(reports);
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        self.done = true;
    }
}

/// Every agent polls, then those told report: how many were told.
fn round(agents: &mut [Agent], version: &str) -> usize {
    let told = agents.iter_mut().filter_map(|a| a.poll(version).then_some(())).count();
    for a in agents.iter_mut() {
        a.finish(version);
    }
    told
}

fn screenshot(browser: &Browser, name: &str) {
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&target).expect("target/screenshots");
    browser.screenshot(target.join(name));
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        browser.screenshot(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/images").join(name));
    }
}

#[test]
fn an_operator_accepts_a_node_starts_a_deployment_and_sees_the_brake_pause_it() {
    assert!(
        testkit::webdriver::available(),
        "chromium and chromedriver are needed (scripts/deps.sh installs them: apt-get install chromium chromium-driver)"
    );
    let env = Env::new(Backend::Sqlite);
    let admin = env.admin(Role::Operator);
    let v2 = support::add_bundle(&env, "2.0.0", 'b');
    // Five tills accepted at once, each reporting from site depot-7; one more waits in the pending pool.
    let accept = admin.enrollment_token("accept");
    let mut agents: Vec<Agent> = (0..5u8)
        .map(|i| {
            let node = env.node(60 + i);
            assert_eq!(node.enroll(&accept).status, 201);
            Agent::new(node)
        })
        .collect();
    let pending = env.node(70);
    assert_eq!(pending.enroll(&admin.enrollment_token("pending")).status, 201);
    let pending_id = pending.id.to_string();

    let mut browser = Browser::start();
    // Generous: the suite runs beside other heavy tests on two cores.
    browser.set_find_timeout(Duration::from_secs(30));
    browser.goto(&format!("{}/ui/", env.url));
    assert!(browser.current_url().ends_with("/ui/login"), "{}", browser.current_url());
    browser.find("#token").send_keys("not-a-token");
    browser.find("form.stack button[type=submit]").click();
    let error = browser.text("#error");
    assert!(error.contains("not known"), "{error}");
    browser.find("#token").send_keys(&admin.secret);
    browser.find("form.stack button[type=submit]").click();
    browser.wait_for("the overview", Duration::from_secs(30), |b| b.title().starts_with("Fleet overview"));
    assert!(browser.text("#who").starts_with("operator-"));
    let cookie = browser.cookies().into_iter().find(|c| c["name"] == "edge_session").expect("the session cookie");
    assert_eq!((cookie["httpOnly"].as_bool(), cookie["sameSite"].as_str()), (Some(true), Some("Strict")), "{cookie}");
    assert_ne!(cookie["value"].as_str(), Some(admin.secret.as_str()));

    // Accept the pending node from the overview.
    assert!(browser.text("#pending").contains(&pending_id[..16]));
    browser.find("#pending button.primary").click();
    browser.wait_for("the node's page", Duration::from_secs(30), |b| b.current_url().contains(&pending_id));
    assert!(browser.text("#facts").contains("accepted"));
    let detail: NodeDetail = admin.ok("GET", &format!("/v1/admin/nodes/{pending_id}"), None);
    assert_eq!(detail.node.status, NodeStatus::Accepted);
    agents.push(Agent::new(pending));

    // Start a deployment with the form: canary 1, then everyone; the brake at one failure.
    browser.goto(&format!("{}/ui/deployments", env.url));
    browser.find("#name").send_keys("stack-2");
    browser.find("#bundle").select_option(&format!("stack 2.0.0 ({})", &v2[..12]));
    browser.find("#selector").send_keys("role = till");
    browser.find("#canary").clear();
    browser.find("#canary").send_keys("1");
    browser.find("#waves").clear();
    browser.find("#waves").send_keys("50%, 100%");
    browser.find("#brake").send_keys("1");
    browser.find("#new-deployment button[type=submit]").click();
    browser.wait_for("the deployment's page", Duration::from_secs(30), |b| b.title().starts_with("Deployment stack-2"));
    let list: DeploymentList = admin.ok("GET", "/v1/admin/deployments", None);
    let d = &list.deployments[0];
    assert_eq!((d.name.as_str(), d.bundle.manifest_hash.as_str(), d.n_nodes), ("stack-2", v2.as_str(), 6));
    assert!(browser.text("#waves").contains("0 begun of 1"), "{}", browser.text("#waves"));

    // The canary: one node is told, installs and commits; the page (reloaded) shows the wave done.
    assert_eq!(round(&mut agents, "2.0.0"), 1, "the canary alone");
    browser.goto(&browser.current_url());
    assert!(browser.text("#waves").contains("1 begun of 1, 1 committed"), "{}", browser.text("#waves"));
    // The next wave (half of the six) starts; its first node fails its health check and rolls back.
    for a in agents.iter_mut().filter(|a| !a.told).take(1) {
        a.fails = true;
    }
    assert_eq!(round(&mut agents, "2.0.0"), 2, "the wave to 3 of 6");
    browser.goto(&format!("{}/ui/", env.url));
    screenshot(&browser, "web-overview.png");
    browser.goto(&format!("{}/ui/deployments/{}", env.url, d.id));
    let info: DeploymentInfo = admin.ok("GET", &format!("/v1/admin/deployments/{}", d.id), None);
    assert_eq!(info.pause.as_ref().map(|p| p.reason), Some(PauseReason::Brake), "{info:?}");
    let notice = browser.text("#pause");
    assert!(notice.contains("failure brake") && notice.contains("threshold 1"), "{notice}");
    assert!(browser.text("#state").contains("paused by the brake"));
    screenshot(&browser, "web-deployment-brake.png");
    // Nothing more starts while it is paused.
    assert_eq!(round(&mut agents, "2.0.0"), 0);

    // Abort it from the page; the audit log shows the brake and the operator's abort.
    browser.find("#controls button.danger").click();
    browser.wait_for("the abort", Duration::from_secs(30), |b| b.text("#state").contains("aborted"));
    let info: DeploymentInfo = admin.ok("GET", &format!("/v1/admin/deployments/{}", d.id), None);
    assert_eq!(info.state, DeploymentState::Aborted);
    browser.goto(&format!("{}/ui/audit", env.url));
    let audit = browser.text("#audit");
    assert!(audit.contains("deployment-brake") && audit.contains("web-login"), "{audit}");
    assert!(browser.try_find("script").is_none());
}
