//! `edge-cloud`'s command line: `serve` (the endpoint), `admin-token create` (offline, straight into the
//! database, for the first admin), and the admin client's verbs (`client`), each with human output and `--json`
//! (docs/cloud.md, "The CLI").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cliout::Output;
use fleet_wire::admin::Role;

use crate::api::{self, App, Config};
use crate::clock::SystemClock;
use crate::error::{Error, Result};
use crate::store::{hash_secret, new_secret, Actor, Store};

pub mod client;
pub mod logs;
pub mod rollouts;

/// The fleet endpoint and its admin client.
#[derive(Debug, Parser)]
#[command(name = "edge-cloud", version)]
pub struct Cli {
    /// Log threshold: error, warn, info or debug.
    #[arg(long, value_name = "LEVEL", global = true, default_value = "info")]
    pub log_level: log::LevelFilter,
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the endpoint.
    Serve(ServeArgs),
    /// Make an admin token straight in the database (for the first admin; prints its secret once).
    AdminToken {
        /// What to do.
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
    /// The admin client's verbs, against a running endpoint.
    #[command(flatten)]
    Client(client::ClientCommand),
}

/// `edge-cloud admin-token ...`.
#[derive(Debug, Subcommand)]
pub enum AdminTokenCommand {
    /// Make a token.
    Create {
        /// The database to write to.
        #[command(flatten)]
        db: DbArgs,
        /// Its name (the audit log's "who").
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the database is.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// The data directory: the SQLite database (`edge-cloud.db`) and the bundle store (`bundles/`).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// A PostgreSQL URL (`postgres://...`) instead of the SQLite file.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

/// `edge-cloud serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The database.
    #[command(flatten)]
    pub db: DbArgs,
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: String,
    /// A PEM certificate chain: serve TLS (rustls) with it and --tls-key; without them, plain HTTP (behind an
    /// operator's TLS proxy).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The endpoint's URL as nodes reach it, for the bundle store's URLs; without it, a desired state carries only
    /// the external URLs a bundle was registered with.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// The fleet keyring (a `.pub` file or a directory of them, as `edge-update` reads it) that bundle uploads are
    /// verified against; without it, uploads are refused.
    #[arg(long, value_name = "PATH")]
    pub keyring: Option<PathBuf>,
    /// The poll interval suggested to nodes, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub poll_interval: u32,
    /// Forward nodes' metrics to this Prometheus remote-write URL (VictoriaMetrics or Prometheus,
    /// `http://host:port/api/v1/write`); without it, metrics are not queued.
    #[arg(long, value_name = "URL")]
    pub remote_write_url: Option<String>,
    /// Metric records in one remote-write request.
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub remote_write_batch: u32,
    /// Days each node's log lines are kept.
    #[arg(long, value_name = "DAYS", default_value_t = 14)]
    pub log_retention_days: u32,
    /// Bytes of log lines kept per node; past it the oldest go.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub log_retention_bytes: u64,
}

/// The Markdown table of `edge-cloud serve`'s flags, read from the parser itself (docs/cloud.md).
pub fn serve_flags_table() -> String {
    let cli = <Cli as clap::CommandFactory>::command();
    let serve = cli.find_subcommand("serve").expect("the serve verb");
    flags_table(serve.get_arguments().chain(cli.get_arguments()))
}

/// The Markdown table of the flags every client verb takes, read from the parser itself (docs/cloud.md).
pub fn client_flags_table() -> String {
    let cli = <Cli as clap::CommandFactory>::command();
    let nodes = cli.find_subcommand("nodes").expect("the nodes verb");
    flags_table(nodes.get_arguments().filter(|a| a.is_global_set()))
}

fn flags_table<'a>(args: impl Iterator<Item = &'a clap::Arg>) -> String {
    let mut out = String::from("| flag | default | meaning |\n| --- | --- | --- |\n");
    for a in args {
        let Some(long) = a.get_long() else { continue };
        let mut flag = format!("--{long}");
        if a.get_action().takes_values() {
            for name in a.get_value_names().into_iter().flatten() {
                flag.push_str(&format!(" {name}"));
            }
        }
        let default = match a.get_default_values() {
            _ if a.is_required_set() => "(required)".to_owned(),
            [] => "none".to_owned(),
            values => values.iter().map(|v| format!("`{}`", v.to_string_lossy())).collect::<Vec<_>>().join(", "),
        };
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        out.push_str(&format!("| `{flag}` | {default} | {} |\n", help.trim_end_matches('.')));
    }
    out
}

fn parse_role(s: &str) -> std::result::Result<Role, String> {
    Role::from_word(s).ok_or_else(|| format!("{s:?} is not viewer, operator or admin"))
}

/// Runs a verb; `env` gives `EDGE_CLOUD_URL` and `EDGE_CLOUD_TOKEN` for the client's verbs.
pub fn run(cli: Cli, env: client::Env) -> Result<Output> {
    match cli.command {
        Command::Serve(args) => runtime()?.block_on(serve(args)).map(|()| Output::text("")),
        Command::AdminToken { command: AdminTokenCommand::Create { db, name, role, json } } => {
            fleet_wire::admin::check_name("name", &name)
                .map_err(|e| Error::Usage { flag: "--name", expected: e.to_string() })?;
            let created = runtime()?.block_on(async {
                let store = open_store(&db).await?;
                let (id, secret) = new_secret();
                let now = i64::try_from(crate::clock::Clock::now(&SystemClock)).unwrap_or(i64::MAX);
                let token =
                    store.create_admin_token(&Actor::bootstrap(), &id, &hash_secret(&secret), &name, role, now).await?;
                Ok::<_, Error>(fleet_wire::admin::CreatedToken { token, secret })
            })?;
            Ok(Output::report(&created, json, |c| {
                format!(
                    "admin token {} ({}, {}); its secret, shown once:\n{}\n",
                    c.token.id, c.token.name, c.token.role, c.secret
                )
            }))
        }
        Command::Client(command) => client::run(command, &env),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|source| Error::Io {
        what: "start the runtime for",
        path: PathBuf::from("edge-cloud"),
        source,
    })
}

/// Opens the store the flags name.
pub async fn open_store(db: &DbArgs) -> Result<Arc<dyn Store>> {
    Ok(match &db.database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Arc::new(crate::store::postgres::PgStore::open(url).await?)
        }
        Some(_) => {
            return Err(Error::Usage { flag: "--database-url", expected: "a postgres:// URL".into() });
        }
        None => Arc::new(crate::store::sqlite::SqliteStore::open(&db.data).await?),
    })
}

/// `edge-cloud serve`: opens the store, then serves until killed; prunes expired replay ids and old reports every
/// minute (the replay ids of a large fleet's polls add up fast: 100,000 nodes make 1,667 a second).
async fn serve(args: ServeArgs) -> Result<()> {
    let store = open_store(&args.db).await?;
    let mut config = Config::new(&args.db.data);
    config.poll_interval_secs = args.poll_interval;
    config.public_url = args.public_url.clone();
    config.log_retention = crate::store::telemetry_sql::LogRetention {
        max_age_secs: u64::from(args.log_retention_days) * 86_400,
        max_bytes_per_node: args.log_retention_bytes,
    };
    if let Some(url) = &args.remote_write_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Usage { flag: "--remote-write-url", expected: "an http:// or https:// URL".into() });
        }
        if !(1..=10_000).contains(&args.remote_write_batch) {
            return Err(Error::Usage { flag: "--remote-write-batch", expected: "1 to 10000".into() });
        }
        config.remote_write = Some(crate::forward::RemoteWrite {
            batch_rows: args.remote_write_batch,
            ..crate::forward::RemoteWrite::new(url)
        });
    }
    if let Some(path) = &args.keyring {
        let keyring =
            image_layout::keys::Keyring::load(path).map_err(|source| Error::Keyring { path: path.clone(), source })?;
        config.keyring = Some(Arc::new(keyring));
    }
    std::fs::create_dir_all(&config.bundle_dir).map_err(|source| Error::Io {
        what: "create the bundle store",
        path: config.bundle_dir.clone(),
        source,
    })?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::server::tls_acceptor(cert, key)?),
        _ => None,
    };
    let app = Arc::new(App::new(store.clone(), Arc::new(SystemClock), config));
    let listener = crate::server::bind(&args.listen).await?;
    log::info!(
        "serving on {} ({}), database {}",
        args.listen,
        if tls.is_some() { "TLS" } else { "plain HTTP" },
        if args.db.database_url.is_some() { "PostgreSQL" } else { "SQLite" }
    );
    let retention = app.config.retention;
    let log_retention = app.config.log_retention;
    let clock = app.clock.clone();
    if let Some(rw) = app.config.remote_write.clone() {
        log::info!("forwarding nodes' metrics to {}", rw.url);
        let holder = crate::forward::holder_name(&args.listen);
        tokio::spawn(crate::forward::run(store.clone(), clock.clone(), rw, holder, app.metrics.clone()));
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let now = i64::try_from(clock.now()).unwrap_or(i64::MAX);
            if let Err(e) = store.prune(retention, now).await {
                log::warn!("prune: {}", crate::error::chain(&e));
            }
            if let Err(e) = store.prune_telemetry(log_retention, now).await {
                log::warn!("prune telemetry: {}", crate::error::chain(&e));
            }
        }
    });
    crate::server::serve(listener, api::router(app), tls).await;
    Ok(())
}
