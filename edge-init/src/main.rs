//! `edge-init`: the node's PID 1; `edge-init ctl ...` to talk to it; `edge-init -- CMD ARGS...` to run one command
//! the way tini does. No clap: the few forms are matched by hand (STYLE.md, "CLIs and output").

use std::ffi::OsString;
use std::path::PathBuf;

const USAGE: &str = "usage: edge-init [--config FILE] [--run DIR] [--cmdline TEXT] [--log kmsg|stderr]
       edge-init ctl [--socket PATH] status [--json] | health | start SVC | stop SVC | restart SVC | reboot | poweroff | halt
       edge-init notify READY=1 [STATUS=...]
       edge-init -- COMMAND [ARGS...]";

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let pid1 = edge_init::sys::pid() == 1;
    match args.first().and_then(|a| a.to_str()) {
        Some("--") => {
            logger(pid1);
            std::process::exit(edge_init::one::run(&args[1..]))
        }
        Some("ctl") => {
            let rest: Vec<String> = args[1..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
            std::process::exit(edge_init::ctl::main(&rest))
        }
        Some("notify") => {
            let rest: Vec<String> = args[1..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
            // NOTIFY_SOCKET is the protocol's own way of naming the socket (sd_notify), not a setting.
            std::process::exit(edge_init::ctl::notify(&rest, std::env::var_os("NOTIFY_SOCKET").as_deref()))
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            std::process::exit(0)
        }
        _ => {}
    }
    if !pid1 && !args.iter().any(|a| a == "--config") {
        eprintln!("edge-init: not PID 1; give --config FILE to supervise services anyway\n{USAGE}");
        std::process::exit(2)
    }
    let mut opts = edge_init::pid1::Options::default();
    let mut kmsg = pid1;
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next().unwrap_or_else(|| {
                eprintln!("edge-init: {name} needs a value\n{USAGE}");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--config" => opts.config = PathBuf::from(value("--config")),
            "--run" => opts.run_dir = PathBuf::from(value("--run")),
            "--cmdline" => opts.cmdline = Some(value("--cmdline")),
            "--log" => match value("--log").as_str() {
                "kmsg" => kmsg = true,
                "stderr" => kmsg = false,
                other => {
                    eprintln!("edge-init: --log {other}: kmsg or stderr\n{USAGE}");
                    std::process::exit(2)
                }
            },
            // The kernel passes PID 1 the command-line words it does not know (`single`, `quiet`...): not ours.
            _ if pid1 => {}
            other => {
                eprintln!("edge-init: unknown argument {other}\n{USAGE}");
                std::process::exit(2)
            }
        }
    }
    let sink = logger(kmsg);
    std::process::exit(edge_init::pid1::run(opts, sink))
}

fn logger(kmsg: bool) -> &'static edge_init::log_sink::Sink {
    let sink: &'static edge_init::log_sink::Sink = Box::leak(Box::new(edge_init::log_sink::Sink::new(kmsg)));
    let _ = log::set_logger(sink);
    log::set_max_level(log::LevelFilter::Info);
    sink
}
