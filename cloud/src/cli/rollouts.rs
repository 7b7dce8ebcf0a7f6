//! The admin client's rollout verbs: `edge-cloud deployments create|list|show|nodes|pause|resume|abort` and
//! `edge-cloud sites set|list` (docs/rollouts.md), each with human output and `--json`.

use cliout::Output;
use fleet_wire::rollout::{DeploymentInfo, DeploymentList, MemberInfo, MemberList, SiteInfo, SiteList};
use serde_json::json;

use super::client::Client;
use crate::error::{Error, Result};

/// `edge-cloud deployments ...`.
#[derive(Debug, clap::Subcommand)]
pub enum DeploymentsCommand {
    /// Roll a bundle out to the nodes a selector matches, in waves.
    Create {
        /// A name for people.
        name: String,
        /// The bundle's manifest hash.
        #[arg(long)]
        bundle: String,
        /// Which nodes (`role = till, memory >= 8GiB`); all accepted nodes when empty.
        #[arg(long, default_value = "")]
        selector: String,
        /// Nodes in the canary wave (0: none).
        #[arg(long, default_value_t = 0)]
        canary: u32,
        /// The waves after the canary, comma-separated shares or counts; the last is 100%.
        #[arg(long, default_value = "100%", value_delimiter = ',')]
        waves: Vec<String>,
        /// At most this many nodes updating at once.
        #[arg(long)]
        max_concurrent: Option<u32>,
        /// At most this many nodes of one site updating at once.
        #[arg(long)]
        max_per_site: Option<u32>,
        /// Wait for `resume` before each wave after the first.
        #[arg(long)]
        approve_waves: bool,
        /// Failures in a wave that pause the rollout: a count (`3`) or a share of the wave (`10%`).
        #[arg(long)]
        brake: Option<String>,
        /// Flip at any time, ignoring the sites' windows.
        #[arg(long)]
        ignore_windows: bool,
        /// The longest an application's update lock may hold a flip back, in seconds.
        #[arg(long, default_value_t = 3600)]
        lock_max_secs: u64,
    },
    /// List deployments, newest first.
    List,
    /// One deployment, its waves and its brake.
    Show {
        /// Its id.
        id: String,
    },
    /// A deployment's nodes and where each stands.
    Nodes {
        /// Its id.
        id: String,
    },
    /// Stop telling nodes to start; nodes updating hold before their flip.
    Pause {
        /// Its id.
        id: String,
    },
    /// Go on after a pause, a brake or a wave waiting for approval.
    Resume {
        /// Its id.
        id: String,
    },
    /// Stop for good; committed nodes stay, the others go back to what they ran.
    Abort {
        /// Its id.
        id: String,
    },
}

/// `edge-cloud sites ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SitesCommand {
    /// Set a site's time zone and maintenance windows (none: flips at any time).
    Set {
        /// The site, as nodes report it.
        name: String,
        /// Its IANA time zone (`Europe/Berlin`).
        #[arg(long)]
        time_zone: String,
        /// A window (`mon-fri 02:00-04:00`); repeat for more.
        #[arg(long = "window")]
        windows: Vec<String>,
    },
    /// List sites.
    List,
}

fn deployment_text(d: &DeploymentInfo) -> String {
    let mut t = format!(
        "deployment {} ({})\n  bundle:   {} {} ({})\n  selector: {}\n  state:    {}{}\n",
        d.id,
        d.name,
        d.bundle.name,
        d.bundle.version,
        d.bundle.manifest_hash,
        if d.selector.is_empty() { "(every node)" } else { &d.selector },
        d.state.word(),
        if d.complete { ", complete" } else { "" },
    );
    if let Some(p) = &d.pause {
        t.push_str(&format!("  paused:   {} since {}: {}\n", p.reason.word(), p.since, p.detail));
    }
    t.push_str(&format!(
        "  nodes:    {} ({} waiting, {} updating, {} committed, {} failed)\n",
        d.n_nodes, d.n_waiting, d.n_updating, d.n_committed, d.n_failed
    ));
    for w in &d.waves {
        let mark = if w.index == d.wave { ">" } else { " " };
        t.push_str(&format!(
            "  {mark} wave {} {:<10} {:>6} of {:<6} begun  {} committed  {} failed\n",
            w.index, w.size, w.begun, w.target, w.committed, w.failed
        ));
    }
    t
}

fn deployment_line(d: &DeploymentInfo) -> String {
    format!(
        "{}  {:<16} {:<10} {:<8} wave {}  {}/{} committed  {} failed\n",
        d.id,
        d.name,
        d.bundle.version,
        d.state.word(),
        d.wave,
        d.n_committed,
        d.n_nodes,
        d.n_failed
    )
}

fn member_line(m: &MemberInfo) -> String {
    format!(
        "{}  {:<10} {:<10} wave {}  {}\n",
        m.node,
        m.state.word(),
        m.site.as_deref().unwrap_or("-"),
        m.wave.map_or("-".to_owned(), |w| w.to_string()),
        m.result.as_deref().unwrap_or("")
    )
}

fn site_line(s: &SiteInfo) -> String {
    let windows = if s.windows.is_empty() { "any time".to_owned() } else { s.windows.join("; ") };
    let open = if s.open_now { "open now" } else { "closed now" };
    format!("{:<16} {:<20} {} nodes  {windows} ({open})\n", s.name, s.time_zone, s.n_nodes)
}

/// Runs `deployments ...`.
pub fn deployments(c: &Client, json: bool, command: DeploymentsCommand) -> Result<Output> {
    match command {
        DeploymentsCommand::Create {
            name,
            bundle,
            selector,
            canary,
            waves,
            max_concurrent,
            max_per_site,
            approve_waves,
            brake,
            ignore_windows,
            lock_max_secs,
        } => {
            if waves.is_empty() {
                return Err(Error::Usage { flag: "--waves", expected: "at least one wave, the last 100%".into() });
            }
            let body = json!({
                "name": name, "bundle": bundle, "selector": selector,
                "policy": {
                    "canary": canary, "waves": waves, "max_concurrent": max_concurrent,
                    "max_per_site": max_per_site, "approve_waves": approve_waves, "brake": brake,
                    "windows": !ignore_windows, "lock_max_secs": lock_max_secs,
                },
            });
            let d: DeploymentInfo = c.json("POST", "/v1/admin/deployments", body)?;
            Ok(Output::report(&d, json, deployment_text))
        }
        DeploymentsCommand::List => {
            let list: DeploymentList = c.call("GET", "/v1/admin/deployments", None)?;
            Ok(Output::report(&list, json, |l| l.deployments.iter().map(deployment_line).collect()))
        }
        DeploymentsCommand::Show { id } => {
            let d: DeploymentInfo = c.call("GET", &format!("/v1/admin/deployments/{id}"), None)?;
            Ok(Output::report(&d, json, deployment_text))
        }
        DeploymentsCommand::Nodes { id } => {
            let list: MemberList = c.call("GET", &format!("/v1/admin/deployments/{id}/nodes"), None)?;
            Ok(Output::report(&list, json, |l| l.nodes.iter().map(member_line).collect()))
        }
        DeploymentsCommand::Pause { id } => change(c, json, &id, "pause"),
        DeploymentsCommand::Resume { id } => change(c, json, &id, "resume"),
        DeploymentsCommand::Abort { id } => change(c, json, &id, "abort"),
    }
}

fn change(c: &Client, json: bool, id: &str, verb: &str) -> Result<Output> {
    let d: DeploymentInfo = c.call("POST", &format!("/v1/admin/deployments/{id}/{verb}"), Some(Vec::new()))?;
    Ok(Output::report(&d, json, deployment_text))
}

/// Runs `sites ...`.
pub fn sites(c: &Client, json: bool, command: SitesCommand) -> Result<Output> {
    match command {
        SitesCommand::Set { name, time_zone, windows } => {
            let s: SiteInfo =
                c.json("PUT", &format!("/v1/admin/sites/{name}"), json!({"time_zone": time_zone, "windows": windows}))?;
            Ok(Output::report(&s, json, site_line))
        }
        SitesCommand::List => {
            let list: SiteList = c.call("GET", "/v1/admin/sites", None)?;
            Ok(Output::report(&list, json, |l| l.sites.iter().map(site_line).collect()))
        }
    }
}
