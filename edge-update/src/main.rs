//! `edge-update`: parses the command line, starts logging to stderr, runs the verb, prints the result, and maps an
//! error to its documented exit code (docs/updater.md, "Exit codes").

use clap::Parser;

/// Log lines to stderr as `edge-update: level: message`.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("edge-update: {}: {}", r.level().as_str().to_lowercase(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLog = StderrLog;

fn main() {
    let cli = edge_update::cli::Cli::parse();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(cli.log_level);
    cliout::finish("edge-update", edge_update::cli::run(cli), updater::error::Error::exit_code);
}
