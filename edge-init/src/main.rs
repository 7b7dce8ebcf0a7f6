//! `edge-init`: the node's PID 1, or `edge-init -- CMD ARGS...` to run one command the way tini does. No clap: the
//! few forms are matched by hand (STYLE.md, "CLIs and output").

use std::ffi::OsString;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let pid1 = edge_init::sys::pid() == 1;
    let sink: &'static edge_init::log_sink::Sink = Box::leak(Box::new(edge_init::log_sink::Sink::new(pid1)));
    let _ = log::set_logger(sink);
    log::set_max_level(log::LevelFilter::Info);
    match args.first().and_then(|a| a.to_str()) {
        Some("--") => std::process::exit(edge_init::one::run(&args[1..])),
        _ => {
            eprintln!("usage: edge-init -- COMMAND [ARGS...]");
            eprintln!("  (the PID 1 service supervisor is not in this version yet)");
            std::process::exit(2);
        }
    }
}
