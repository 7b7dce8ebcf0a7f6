//! `edge-agent`'s command line (docs/agent.md, "CLI"): `run` (the service), `id` and `status`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::paths::{Paths, CONFIG};

pub use cliout::Output;

/// The fleet agent: enrolls this node with the fleet endpoint, polls its desired state, installs through the
/// updater and reports every transition.
#[derive(Debug, Parser)]
#[command(name = "edge-agent", version)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, default_value = CONFIG)]
    pub config: PathBuf,
    /// The root the node's fixed paths hang off (the data partition's directory, /proc, /sys).
    #[arg(long, global = true, default_value = "/", hide = true)]
    pub root: PathBuf,
    /// Log threshold: error, warn, info, debug.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: log::LevelFilter,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: the service edge-init starts. Signals readiness on $NOTIFY_SOCKET once its config is read
    /// and its key is there, before any network.
    Run {
        /// One round of contacts (enroll, reports, inventory, desired state and what it asks), then exit.
        #[arg(long)]
        once: bool,
    },
    /// Print this node's id (making the node key on the first use).
    Id,
    /// Show the agent's state: enrollment, the desired state, reports waiting.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `schema` of `status --json`.
pub const STATUS_SCHEMA: &str = "edge-agent.status/1";

/// `edge-agent status --json`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// [`STATUS_SCHEMA`].
    pub schema: &'static str,
    /// The node id.
    pub node_id: String,
    /// The highest report number given.
    pub last_seq: u64,
    /// Reports waiting for the endpoint.
    pub pending_reports: usize,
    /// The state file.
    pub state: crate::state::State,
}

/// How long `run` waits before it reads a config, key or CA it could not use again.
pub const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs a parsed command line; `notify` is `$NOTIFY_SOCKET`.
pub fn run(cli: Cli, notify: Option<PathBuf>) -> Result<Output> {
    let paths = Paths::under(&cli.root);
    if !matches!(cli.command, Command::Run { once: false }) {
        // Every verb reads the config, so that a bad one is found by whichever an operator runs first.
        Config::load(&cli.config)?;
    }
    match cli.command {
        Command::Run { once: false } => serve(&cli.config, paths, notify),
        Command::Run { once: true } => {
            let config = Config::load(&cli.config)?;
            let mut agent = crate::agent::Agent::open(config, paths, crate::clock::SystemClock)?;
            let wait = agent.round();
            Ok(Output::text(format!(
                "node {}: {}, {} reports waiting, next contact in {} s",
                agent.node_id(),
                agent.state().status.map_or("not enrolled", |s| s.word()),
                agent.n_pending(),
                wait.as_secs()
            )))
        }
        Command::Id => {
            let (identity, _) = crate::identity::Identity::load_or_create(&paths.key)?;
            Ok(Output::text(identity.id.to_string()))
        }
        Command::Status { json } => {
            let identity = crate::identity::Identity::load(&paths.key)?;
            let spool = crate::spool::Spool::open(crate::spool::DiskFile::new(&paths.spool), &paths.spool)?;
            let status = Status {
                schema: STATUS_SCHEMA,
                node_id: identity.id.to_string(),
                last_seq: spool.last_seq(),
                pending_reports: spool.n_pending(),
                state: crate::state::State::load(&paths.state)?,
            };
            Ok(Output::report(&status, json, human))
        }
    }
}

/// The service: opens the agent and runs it. A config, key or CA it cannot use is logged once and read again
/// every [`REOPEN_WAIT`], the agent signalling readiness all the same: a service that exits would restart over and
/// over, and edge-init's health answer, which the updater's boot checks ask, would count it against every update.
fn serve(config_path: &std::path::Path, paths: Paths, notify: Option<PathBuf>) -> ! {
    let mut notify = notify;
    let mut last_error: Option<String> = None;
    loop {
        let opened = Config::load(config_path)
            .and_then(|config| crate::agent::Agent::open(config, paths.clone(), crate::clock::SystemClock));
        let agent = match opened {
            Ok(agent) => Some(agent),
            Err(e) => {
                let message = crate::error::chain(&e);
                if last_error.as_deref() != Some(message.as_str()) {
                    log::error!("{message}; the agent waits, and reads it again every {} s", REOPEN_WAIT.as_secs());
                    last_error = Some(message);
                }
                None
            }
        };
        if let Some(socket) = notify.take() {
            if let Err(e) = ready(&socket) {
                log::warn!("{}", crate::error::chain(&e));
            }
        }
        match agent {
            Some(mut agent) => {
                agent.start_telemetry();
                agent.run()
            }
            None => std::thread::sleep(REOPEN_WAIT),
        }
    }
}

fn human(s: &Status) -> String {
    let standing = s.state.status.map_or("not enrolled".to_owned(), |st| st.word().to_owned());
    let bundle = s
        .state
        .desired
        .as_ref()
        .and_then(|d| d.bundle.as_ref())
        .map_or("none".to_owned(), |b| format!("{} {}", b.name, b.version));
    format!(
        "node:      {}\nendpoint:  {standing}\ndesired:   {bundle}\nreports:   {} waiting, {} numbered",
        s.node_id, s.pending_reports, s.last_seq
    )
}

/// Tells edge-init the agent is ready: `READY=1` as one datagram on its notify socket (sd_notify's protocol).
fn ready(socket: &std::path::Path) -> Result<()> {
    let nerr = |source| Error::Notify { socket: socket.to_owned(), source };
    let s = std::os::unix::net::UnixDatagram::unbound().map_err(nerr)?;
    s.send_to(b"READY=1", socket).map_err(nerr)?;
    Ok(())
}
