//! `edge-init`: the node's PID 1; `edge-init ctl ...` to talk to it; `edge-init check` to validate its services file;
//! `edge-init -- CMD ARGS...` to run one command the way tini does. No clap: the few forms are matched by hand
//! (STYLE.md, "CLIs and output").

use std::ffi::OsString;
use std::path::PathBuf;

const USAGE: &str = "usage: edge-init [--config FILE] [--run DIR] [--cmdline TEXT] [--log kmsg|stderr]
       edge-init ctl [--socket PATH] status [--json] | health | start SVC | stop SVC | restart SVC | reboot | poweroff | halt
       edge-init notify READY=1 [STATUS=...]
       edge-init check [--config FILE]
       edge-init -- COMMAND [ARGS...]
       edge-init --version";

/// The signal state `edge-init`'s parent gave it, recorded from `.init_array`: the C library runs that before
/// `main`, and so before Rust's runtime sets `SIGPIPE` to ignored, which no stable option turns off. One-command
/// mode gives the command exactly this state (`sys::signals::record_inherited`). In the binary, not the library: the
/// linker keeps every object of the binary, but may leave out a library's object that nothing names.
#[used]
#[link_section = ".init_array"]
static RECORD_INHERITED_SIGNALS: extern "C" fn() = edge_init::sys::signals::record_inherited;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let pid1 = edge_init::sys::pid() == 1;
    // As PID 1, only `--` is a verb. The kernel hands init the words of its command line it does not know, and a
    // stray `ctl`, `notify`, `check`, `--help` or `--version` there must not run that verb and end PID 1, which
    // panics the kernel: such words fall through to the boot below, which ignores them.
    match args.first().and_then(|a| a.to_str()) {
        Some("--") => {
            logger(pid1);
            std::process::exit(edge_init::one::run(&args[1..]))
        }
        Some("ctl") if !pid1 => {
            let rest: Vec<String> = args[1..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
            std::process::exit(edge_init::ctl::main(&rest))
        }
        Some("notify") if !pid1 => {
            let rest: Vec<String> = args[1..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
            // NOTIFY_SOCKET is the protocol's own way of naming the socket (sd_notify), not a setting.
            std::process::exit(edge_init::ctl::notify(&rest, std::env::var_os("NOTIFY_SOCKET").as_deref()))
        }
        Some("--help" | "-h") if !pid1 => {
            println!("{USAGE}");
            std::process::exit(0)
        }
        Some("check") if !pid1 => {
            let rest: Vec<String> = args[1..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
            std::process::exit(edge_init::check::main(&rest))
        }
        Some("--version" | "-V") if !pid1 => {
            println!("edge-init {}", env!("CARGO_PKG_VERSION"));
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
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
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
