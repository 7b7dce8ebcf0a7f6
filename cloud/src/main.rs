//! `edge-cloud`: parses the command line, starts logging to stderr, runs the verb, prints the result, and maps an
//! error to its documented exit code (docs/cloud.md, "Exit codes").

use clap::Parser;

/// Log lines to stderr as `edge-cloud: level: message`.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level() && m.target().starts_with("edge_cloud")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("edge-cloud: {}: {}", r.level().as_str().to_lowercase(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

fn main() {
    let cli = edge_cloud::cli::Cli::parse();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(cli.log_level);
    // The environment is read here, once: the client's endpoint and token when no flag names them.
    let env = edge_cloud::cli::client::Env {
        url: std::env::var("EDGE_CLOUD_URL").ok(),
        token: std::env::var("EDGE_CLOUD_TOKEN").ok(),
    };
    cliout::finish("edge-cloud", edge_cloud::cli::run(cli, env), edge_cloud::Error::exit_code);
}
