//! The admin client: `edge-cloud nodes|tokens|admin-tokens|bundles|groups|events|logs|audit ...` against a running
//! endpoint, with blocking `ureq` (no runtime), the endpoint's URL and an admin token from `--url`/`--token` or
//! `EDGE_CLOUD_URL`/`EDGE_CLOUD_TOKEN`, and an https endpoint verified against `--ca-file`/`EDGE_CLOUD_CA` when given
//! (a private CA), else the public web roots built in (webpki-roots). Every verb prints the admin API's reply body as JSON with `--json`, or
//! formatted for a person.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use cliout::Output;
use fleet_wire::admin::{
    ActionInfo, AdminTokenInfo, AuditPage, BundleInfo, BundleList, CreatedToken, DiagnosticsInfo, EnrollmentTokenInfo,
    EventPage, GroupInfo, GroupList, NodeDetail, NodeList, NodeSummary, Role, TokenList,
};
use fleet_wire::node::ErrorReply;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::{Error, Result};

/// What the environment says, read once by `main`.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `EDGE_CLOUD_URL`.
    pub url: Option<String>,
    /// `EDGE_CLOUD_TOKEN`.
    pub token: Option<String>,
    /// `EDGE_CLOUD_CA`.
    pub ca_file: Option<PathBuf>,
}

/// Where the endpoint is and who is asking.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The endpoint's URL (default: $EDGE_CLOUD_URL).
    #[arg(long, value_name = "URL", global = true)]
    pub url: Option<String>,
    /// An admin token's secret (default: $EDGE_CLOUD_TOKEN).
    #[arg(long, value_name = "SECRET", global = true)]
    pub token: Option<String>,
    /// The CA certificate (PEM) an https endpoint's certificate must chain to, in place of the public web roots
    /// (default: $EDGE_CLOUD_CA).
    #[arg(long, value_name = "PEM", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The client's verbs.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Nodes: list, show, accept, reject, label, group, pin, decommission, merge, reboot, diagnostics.
    Nodes {
        /// The endpoint.
        #[command(flatten)]
        conn: Connection,
        /// What to do.
        #[command(subcommand)]
        command: NodesCommand,
    },
    /// Enrollment tokens: create, list, revoke.
    Tokens {
        /// The endpoint.
        #[command(flatten)]
        conn: Connection,
        /// What to do.
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Admin tokens: create, list, revoke.
    AdminTokens {
        /// The endpoint.
        #[command(flatten)]
        conn: Connection,
        /// What to do.
        #[command(subcommand)]
        command: AdminTokensCommand,
    },
    /// Groups: set a group's bundle, list.
    Groups {
        /// The endpoint.
        #[command(flatten)]
        conn: Connection,
        /// What to do.
        #[command(subcommand)]
        command: GroupsCommand,
    },
    /// Deployments: create, list, show, nodes, pause, resume, abort.
    Deployments {
        /// The endpoint.
        #[command(flatten)]
        conn: Connection,
        /// What to do.
        #[command(subcommand)]
        command: super::rollouts::DeploymentsCommand,
    },
    /// Sites: set a site's time zone and maintenance windows, list.
    Sites {
        /// The endpoint.
        #[command(flatten)]
        conn: Connection,
        /// What to do.
        #[command(subcommand)]
        command: super::rollouts::SitesCommand,
    },
    /// Bundles: list.
    Bundles {
        /// The endpoint.
        #[command(flatten)]
        conn: Connection,
        /// What to do.
        #[command(subcommand)]
        command: BundlesCommand,
    },
    /// A node's events, newest first.
    Events {
        /// The endpoint.
        #[command(flatten)]
        conn: Connection,
        /// The node.
        node: String,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// From which.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// A node's log lines, oldest first: the newest `--limit`, or with `--follow` as they arrive.
    Logs {
        /// The endpoint.
        #[command(flatten)]
        conn: Connection,
        /// What to read.
        #[command(flatten)]
        args: super::logs::LogsArgs,
    },
    /// The audit log, newest first.
    Audit {
        /// The endpoint.
        #[command(flatten)]
        conn: Connection,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// From which.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
}

/// `edge-cloud nodes ...`.
#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// List nodes.
    List {
        /// Only this status (pending, accepted, rejected, decommissioned).
        #[arg(long)]
        status: Option<String>,
        /// Only nodes with this label: KEY or KEY=VALUE.
        #[arg(long)]
        label: Option<String>,
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
    },
    /// One node: inventory, newest events, actions.
    Show {
        /// The node.
        id: String,
    },
    /// Accept a pending (or rejected) node.
    Accept {
        /// The node.
        id: String,
    },
    /// Reject a node: its requests are refused from then on.
    Reject {
        /// The node.
        id: String,
    },
    /// Set (KEY=VALUE) and remove (--remove KEY) admin labels.
    Label {
        /// The node.
        id: String,
        /// Labels to set.
        set: Vec<String>,
        /// Labels to remove.
        #[arg(long)]
        remove: Vec<String>,
    },
    /// Put a node into a group, or out of its group with --none.
    Group {
        /// The node.
        id: String,
        /// The group.
        group: Option<String>,
        /// Take it out of its group.
        #[arg(long, conflicts_with = "group")]
        none: bool,
    },
    /// Pin a node to a bundle (by manifest hash), or unpin it with --none.
    Pin {
        /// The node.
        id: String,
        /// The bundle's manifest hash.
        bundle: Option<String>,
        /// Unpin.
        #[arg(long, conflicts_with = "bundle")]
        none: bool,
    },
    /// Decommission a node: refused from then on, its history deleted.
    Decommission {
        /// The node.
        id: String,
    },
    /// Give a node the history and settings of its old identity.
    Merge {
        /// The new node.
        id: String,
        /// The old identity.
        #[arg(long)]
        from: String,
    },
    /// Ask a node to reboot on its next poll.
    Reboot {
        /// The node.
        id: String,
    },
    /// Ask a node for diagnostics, or (--get ACTION) show what it sent.
    Diagnostics {
        /// The node.
        id: String,
        /// Show the diagnostics of this action instead.
        #[arg(long)]
        get: Option<String>,
    },
}

/// `edge-cloud tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Make an enrollment token (its secret is shown once).
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// pending (nodes wait to be accepted) or accept.
        #[arg(long, default_value = "pending")]
        policy: String,
        /// Admin labels its nodes get: KEY=VALUE, repeated.
        #[arg(long)]
        label: Vec<String>,
        /// Seconds until it expires.
        #[arg(long)]
        expires_in: Option<u64>,
        /// How many nodes may enroll with it.
        #[arg(long)]
        max_uses: Option<u32>,
    },
    /// List enrollment tokens.
    List,
    /// Revoke an enrollment token.
    Revoke {
        /// Its id.
        id: String,
    },
}

/// `edge-cloud admin-tokens ...`.
#[derive(Debug, Subcommand)]
pub enum AdminTokensCommand {
    /// Make an admin token (its secret is shown once).
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
    },
    /// List admin tokens.
    List,
    /// Revoke an admin token.
    Revoke {
        /// Its id.
        id: String,
    },
}

/// `edge-cloud groups ...`.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Set a group's desired bundle (by manifest hash), or none with --none.
    Set {
        /// The group.
        name: String,
        /// The bundle's manifest hash.
        bundle: Option<String>,
        /// No bundle.
        #[arg(long, conflicts_with = "bundle")]
        none: bool,
    },
    /// List groups.
    List,
}

/// `edge-cloud bundles ...`.
#[derive(Debug, Subcommand)]
pub enum BundlesCommand {
    /// List bundles.
    List,
    /// Upload a bundle file; the endpoint verifies it against the fleet keyring before keeping it.
    Upload {
        /// The bundle.
        file: PathBuf,
    },
    /// Register a bundle served elsewhere, by its URL and a local copy (whose head the endpoint verifies).
    Register {
        /// Where nodes fetch it.
        url: String,
        /// A local copy of it.
        #[arg(long)]
        file: PathBuf,
    },
}

/// A blocking client of the admin API.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of `conn`, falling back on `env`.
    pub fn new(conn: &Connection, env: &Env) -> Result<Client> {
        let base = conn
            .url
            .clone()
            .or_else(|| env.url.clone())
            .ok_or(Error::Usage { flag: "--url", expected: "the endpoint's URL (or EDGE_CLOUD_URL)".into() })?;
        let token = conn
            .token
            .clone()
            .or_else(|| env.token.clone())
            .ok_or(Error::Usage { flag: "--token", expected: "an admin token (or EDGE_CLOUD_TOKEN)".into() })?;
        let mut config = ureq::Agent::config_builder().http_status_as_error(false);
        if let Some(ca) = conn.ca_file.as_ref().or(env.ca_file.as_ref()) {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::Rustls)
                    .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(load_ca(ca)?)))
                    .build(),
            );
        }
        let agent = ureq::Agent::new_with_config(config.build());
        Ok(Client { base: base.trim_end_matches('/').to_owned(), token, agent })
    }

    /// Calls `method path` with a JSON body and reads the reply as `T`.
    pub fn call<T: DeserializeOwned>(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<T> {
        match body {
            Some(b) => self.send(method, path, "application/json", b),
            None => self.send(method, path, "application/json", ()),
        }
    }

    /// Calls `method path` with `body` (bytes, or a file streamed as it is read) of `content_type` and reads the
    /// reply as `T`.
    fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: impl ureq::AsSendBody,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(body)
            .map_err(|e| http_error(&url, e.into()))?;
        let mut response =
            self.agent.run(request).map_err(|source| Error::Http { what: "call", url: url.clone(), source })?;
        let status = response.status().as_u16();
        let bytes = response.body_mut().with_config().limit(64 << 20).read_to_vec().map_err(|source| Error::Http {
            what: "read the reply of",
            url: url.clone(),
            source,
        })?;
        if status >= 300 {
            let reply: ErrorReply = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorReply {
                error: "http".into(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
            return Err(Error::Endpoint { url, status, error: reply.error, message: reply.message });
        }
        serde_json::from_slice(&bytes).map_err(|source| Error::Reply { url, source })
    }

    pub(crate) fn json<T: DeserializeOwned>(&self, method: &str, path: &str, body: serde_json::Value) -> Result<T> {
        self.call(method, path, Some(serde_json::to_vec(&body).expect("a JSON value serializes")))
    }
}

fn open_bundle(file: &std::path::Path) -> Result<std::fs::File> {
    std::fs::File::open(file).map_err(|source| Error::Io { what: "open the bundle", path: file.to_owned(), source })
}

/// The certificates of the PEM file `path`: at least one, or an error naming the file.
fn load_ca(path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let bad = |detail: String| Error::Usage { flag: "--ca-file", expected: format!("{}: {detail}", path.display()) };
    let pem =
        std::fs::read(path).map_err(|source| Error::Io { what: "read the CA file", path: path.to_owned(), source })?;
    updater::http::pem_certificates(&pem).map_err(bad)
}

fn http_error(url: &str, source: ureq::Error) -> Error {
    Error::Http { what: "build a request to", url: url.to_owned(), source }
}

fn labels(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Error::Usage { flag: "label", expected: format!("KEY=VALUE, not {p:?}") })
        })
        .collect()
}

fn node_line(n: &NodeSummary) -> String {
    format!(
        "{}  {:<14}  {:<20}  {:<10}  {:<10}  {}\n",
        n.id,
        n.status.word(),
        n.hostname,
        n.site.as_deref().unwrap_or("-"),
        n.booted_version.as_deref().unwrap_or("-"),
        n.group.as_deref().unwrap_or("-"),
    )
}

fn node_text(n: &NodeSummary) -> String {
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "node {}\n  status:   {}\n  hostname: {}\n  site:     {}\n  labels:   {}\n  group:    {}\n  pinned:   {}\n  running:  {} (slot {}, phase {})\n  last:     {} (seq {}, seen {})\n",
        n.id,
        n.status,
        n.hostname,
        n.site.as_deref().unwrap_or("-"),
        labels.join(" "),
        n.group.as_deref().unwrap_or("-"),
        n.pinned_bundle.as_deref().unwrap_or("-"),
        n.booted_version.as_deref().unwrap_or("-"),
        n.booted_slot.as_deref().unwrap_or("-"),
        n.phase.as_deref().unwrap_or("-"),
        n.last_report.as_deref().unwrap_or("-"),
        n.last_seq,
        n.last_seen.as_deref().unwrap_or("never"),
    )
}

fn events_text(events: &[fleet_wire::admin::Event]) -> String {
    events
        .iter()
        .map(|e| {
            let r = &e.report;
            let mut line = format!("{}  {}  #{:<5} {:<14} {}", r.time, e.node, r.seq, r.kind.word(), r.message);
            if let Some(reason) = &r.reason {
                line.push_str(&format!(" ({reason})"));
            }
            line + "\n"
        })
        .collect()
}

fn action_text(a: &ActionInfo) -> String {
    format!(
        "action {} {} on {}: {}{}\n",
        a.id,
        a.kind.word(),
        a.node,
        a.state.word(),
        a.result.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    )
}

fn bundle_line(b: &BundleInfo) -> String {
    format!(
        "{}  {} {}  sv {}  {} bytes  {}{}\n",
        b.manifest_hash,
        b.name,
        b.version,
        b.security_version,
        b.size_bytes,
        if b.stored { "stored" } else { "external" },
        if b.urls.is_empty() { String::new() } else { format!("  {}", b.urls.join(" ")) }
    )
}

fn enrollment_token_line(t: &EnrollmentTokenInfo) -> String {
    format!(
        "{}  {:<16}  {:<8}  uses {}{}  {}\n",
        t.id,
        t.name,
        t.policy.word(),
        t.uses,
        t.max_uses.map(|m| format!("/{m}")).unwrap_or_default(),
        if t.revoked_at.is_some() { "revoked" } else { "active" }
    )
}

fn admin_token_line(t: &AdminTokenInfo) -> String {
    format!(
        "{}  {:<16}  {:<8}  {}\n",
        t.id,
        t.name,
        t.role.word(),
        if t.revoked_at.is_some() { "revoked" } else { "active" }
    )
}

fn group_line(g: &GroupInfo) -> String {
    format!("{:<16}  {} nodes  {}\n", g.name, g.n_nodes, g.bundle.as_deref().unwrap_or("-"))
}

/// Runs a client verb.
pub fn run(command: ClientCommand, env: &Env) -> Result<Output> {
    match command {
        ClientCommand::Nodes { conn, command } => nodes(&Client::new(&conn, env)?, conn.json, command),
        ClientCommand::Tokens { conn, command } => {
            let c = Client::new(&conn, env)?;
            let json = conn.json;
            match command {
                TokensCommand::Create { name, policy, label, expires_in, max_uses } => {
                    let body = json!({
                        "name": name, "policy": policy, "labels": labels(&label)?,
                        "expires_in_secs": expires_in, "max_uses": max_uses,
                    });
                    let created: CreatedToken<EnrollmentTokenInfo> =
                        c.json("POST", "/v1/admin/enrollment-tokens", body)?;
                    Ok(Output::report(&created, json, |t| {
                        format!("{}its secret, shown once:\n{}\n", enrollment_token_line(&t.token), t.secret)
                    }))
                }
                TokensCommand::List => {
                    let list: TokenList<EnrollmentTokenInfo> = c.call("GET", "/v1/admin/enrollment-tokens", None)?;
                    Ok(Output::report(&list, json, |l| l.tokens.iter().map(enrollment_token_line).collect()))
                }
                TokensCommand::Revoke { id } => {
                    let t: EnrollmentTokenInfo =
                        c.call("POST", &format!("/v1/admin/enrollment-tokens/{id}/revoke"), Some(Vec::new()))?;
                    Ok(Output::report(&t, json, enrollment_token_line))
                }
            }
        }
        ClientCommand::AdminTokens { conn, command } => {
            let c = Client::new(&conn, env)?;
            let json = conn.json;
            match command {
                AdminTokensCommand::Create { name, role } => {
                    let role = Role::from_word(&role)
                        .ok_or_else(|| Error::Usage { flag: "--role", expected: "viewer, operator or admin".into() })?;
                    let created: CreatedToken<AdminTokenInfo> =
                        c.json("POST", "/v1/admin/admin-tokens", json!({ "name": name, "role": role }))?;
                    Ok(Output::report(&created, json, |t| {
                        format!("{}its secret, shown once:\n{}\n", admin_token_line(&t.token), t.secret)
                    }))
                }
                AdminTokensCommand::List => {
                    let list: TokenList<AdminTokenInfo> = c.call("GET", "/v1/admin/admin-tokens", None)?;
                    Ok(Output::report(&list, json, |l| l.tokens.iter().map(admin_token_line).collect()))
                }
                AdminTokensCommand::Revoke { id } => {
                    let t: AdminTokenInfo =
                        c.call("POST", &format!("/v1/admin/admin-tokens/{id}/revoke"), Some(Vec::new()))?;
                    Ok(Output::report(&t, json, admin_token_line))
                }
            }
        }
        ClientCommand::Deployments { conn, command } => {
            super::rollouts::deployments(&Client::new(&conn, env)?, conn.json, command)
        }
        ClientCommand::Sites { conn, command } => super::rollouts::sites(&Client::new(&conn, env)?, conn.json, command),
        ClientCommand::Groups { conn, command } => {
            let c = Client::new(&conn, env)?;
            match command {
                GroupsCommand::Set { name, bundle, none: _ } => {
                    let g: GroupInfo =
                        c.json("PUT", &format!("/v1/admin/groups/{name}"), json!({ "bundle": bundle }))?;
                    Ok(Output::report(&g, conn.json, group_line))
                }
                GroupsCommand::List => {
                    let list: GroupList = c.call("GET", "/v1/admin/groups", None)?;
                    Ok(Output::report(&list, conn.json, |l| l.groups.iter().map(group_line).collect()))
                }
            }
        }
        ClientCommand::Bundles { conn, command } => {
            let c = Client::new(&conn, env)?;
            match command {
                BundlesCommand::List => {
                    let list: BundleList = c.call("GET", "/v1/admin/bundles", None)?;
                    Ok(Output::report(&list, conn.json, |l| l.bundles.iter().map(bundle_line).collect()))
                }
                BundlesCommand::Upload { file } => {
                    // Streamed from the file as it is read: a bundle can be larger than the client's memory.
                    let f = open_bundle(&file)?;
                    let b: BundleInfo = c.send("POST", "/v1/admin/bundles", "application/octet-stream", f)?;
                    Ok(Output::report(&b, conn.json, bundle_line))
                }
                BundlesCommand::Register { url, file } => {
                    // Only the head is sent (and so read): the endpoint verifies it and keeps the size.
                    let f = open_bundle(&file)?;
                    let io = |source| Error::Io { what: "read the bundle", path: file.clone(), source };
                    let size = f.metadata().map_err(io)?.len();
                    let mut head = Vec::new();
                    std::io::Read::read_to_end(
                        &mut std::io::Read::take(&f, crate::api::bundles::MAX_HEAD_BYTES as u64),
                        &mut head,
                    )
                    .map_err(io)?;
                    use base64::Engine as _;
                    let head = base64::engine::general_purpose::STANDARD.encode(&head);
                    let body = json!({ "url": url, "size_bytes": size, "head": head });
                    let b: BundleInfo = c.json("POST", "/v1/admin/bundles/external", body)?;
                    Ok(Output::report(&b, conn.json, bundle_line))
                }
            }
        }
        ClientCommand::Events { conn, node, limit, offset } => {
            let c = Client::new(&conn, env)?;
            let page: EventPage =
                c.call("GET", &format!("/v1/admin/nodes/{node}/events?limit={limit}&offset={offset}"), None)?;
            Ok(Output::report(&page, conn.json, |p| events_text(&p.events)))
        }
        ClientCommand::Logs { conn, args } => {
            let c = Client::new(&conn, env)?;
            super::logs::run(&c, &args, conn.json)
        }
        ClientCommand::Audit { conn, limit, offset } => {
            let c = Client::new(&conn, env)?;
            let page: AuditPage = c.call("GET", &format!("/v1/admin/audit?limit={limit}&offset={offset}"), None)?;
            Ok(Output::report(&page, conn.json, |p| {
                p.entries
                    .iter()
                    .map(|e| format!("{}  #{}  {:<16}  {:<20}  {}\n", e.at, e.id, e.actor_name, e.action, e.target))
                    .collect()
            }))
        }
    }
}

fn nodes(c: &Client, json: bool, command: NodesCommand) -> Result<Output> {
    let post = |id: &str, verb: &str| -> Result<Output> {
        let n: NodeSummary = c.call("POST", &format!("/v1/admin/nodes/{id}/{verb}"), Some(Vec::new()))?;
        Ok(Output::report(&n, json, node_text))
    };
    match command {
        NodesCommand::List { status, label, group } => {
            let mut query = Vec::new();
            for (k, v) in [("status", status), ("label", label), ("group", group)] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", encode_query(&v)));
                }
            }
            let path = if query.is_empty() {
                "/v1/admin/nodes".to_owned()
            } else {
                format!("/v1/admin/nodes?{}", query.join("&"))
            };
            let list: NodeList = c.call("GET", &path, None)?;
            Ok(Output::report(&list, json, |l| l.nodes.iter().map(node_line).collect()))
        }
        NodesCommand::Show { id } => {
            let d: NodeDetail = c.call("GET", &format!("/v1/admin/nodes/{id}"), None)?;
            Ok(Output::report(&d, json, |d| {
                let mut text = node_text(&d.node);
                text.push_str("events:\n");
                text.push_str(&events_text(&d.events));
                if !d.actions.is_empty() {
                    text.push_str("actions:\n");
                    d.actions.iter().for_each(|a| text.push_str(&action_text(a)));
                }
                text
            }))
        }
        NodesCommand::Accept { id } => post(&id, "accept"),
        NodesCommand::Reject { id } => post(&id, "reject"),
        NodesCommand::Decommission { id } => post(&id, "decommission"),
        NodesCommand::Label { id, set, remove } => {
            let n: NodeSummary = c.json(
                "PUT",
                &format!("/v1/admin/nodes/{id}/labels"),
                json!({ "set": labels(&set)?, "remove": remove }),
            )?;
            Ok(Output::report(&n, json, node_text))
        }
        NodesCommand::Group { id, group, none: _ } => {
            let n: NodeSummary = c.json("PUT", &format!("/v1/admin/nodes/{id}/group"), json!({ "group": group }))?;
            Ok(Output::report(&n, json, node_text))
        }
        NodesCommand::Pin { id, bundle, none: _ } => {
            let n: NodeSummary = c.json("PUT", &format!("/v1/admin/nodes/{id}/pin"), json!({ "bundle": bundle }))?;
            Ok(Output::report(&n, json, node_text))
        }
        NodesCommand::Merge { id, from } => {
            let n: NodeSummary = c.json("POST", &format!("/v1/admin/nodes/{id}/merge"), json!({ "from": from }))?;
            Ok(Output::report(&n, json, node_text))
        }
        NodesCommand::Reboot { id } => {
            let a: ActionInfo =
                c.json("POST", &format!("/v1/admin/nodes/{id}/actions"), json!({ "kind": "reboot" }))?;
            Ok(Output::report(&a, json, action_text))
        }
        NodesCommand::Diagnostics { id, get: None } => {
            let a: ActionInfo =
                c.json("POST", &format!("/v1/admin/nodes/{id}/actions"), json!({ "kind": "diagnostics" }))?;
            Ok(Output::report(&a, json, action_text))
        }
        NodesCommand::Diagnostics { id: _, get: Some(action) } => {
            let d: DiagnosticsInfo = c.call("GET", &format!("/v1/admin/actions/{action}/diagnostics"), None)?;
            Ok(Output::report(&d, json, |d| {
                let mut text = format!("diagnostics of {} from {} at {}\n", d.action, d.node, d.received);
                text.push_str(&format!("status: {}\n", d.diagnostics.status));
                text.push_str("events:\n");
                d.diagnostics.events.iter().for_each(|e| text.push_str(&format!("  {e}\n")));
                text.push_str("log:\n");
                d.diagnostics.log_tail.iter().for_each(|l| text.push_str(&format!("  {l}\n")));
                text
            }))
        }
    }
}

/// Percent-encodes a query value's reserved bytes.
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'=' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
