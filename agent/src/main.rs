//! `edge-agent`: parses the command line, starts logging to stderr (edge-init forwards a service's stderr to the
//! kernel log), runs the verb and maps an error to its exit code (docs/agent.md, "Exit codes").

use clap::Parser;

/// Log lines to stderr as `edge-agent: level: message`.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("edge-agent: {}: {}", r.level().as_str().to_lowercase(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

fn main() {
    let cli = edge_agent::cli::Cli::parse();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(cli.log_level);
    let notify = std::env::var_os("NOTIFY_SOCKET").map(std::path::PathBuf::from);
    cliout::finish("edge-agent", edge_agent::cli::run(cli, notify), edge_agent::Error::exit_code);
}
