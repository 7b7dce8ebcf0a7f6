//! `edge-init`: the node's PID 1; `edge-init ctl ...` to talk to it; `edge-init check` to validate its services file;
//! `edge-init -- CMD ARGS...` to run one command the way tini does. The command line is read by `args::parse`; this
//! file runs what it returns.

use std::ffi::OsString;

use edge_init::args::{parse, Invocation, USAGE};

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
    // As PID 1 `parse` never fails: a usage error is kept and logged below, since exiting would panic the kernel.
    let invocation = match parse(&args, pid1) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("edge-init: {e}\n{USAGE}");
            std::process::exit(2)
        }
    };
    let code = match invocation {
        Invocation::One(command) => {
            logger(pid1);
            edge_init::one::run(&command)
        }
        Invocation::Ctl(rest) => edge_init::ctl::main(&rest),
        // NOTIFY_SOCKET is the protocol's own way of naming the socket (sd_notify), not a setting.
        Invocation::Notify(rest) => edge_init::ctl::notify(&rest, std::env::var_os("NOTIFY_SOCKET").as_deref()),
        Invocation::Check(rest) => edge_init::check::main(&rest),
        Invocation::Help => {
            println!("{USAGE}");
            0
        }
        Invocation::Version => {
            println!("edge-init {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Invocation::Supervise(s) => {
            let sink = logger(s.kmsg);
            s.log_usage_errors();
            edge_init::pid1::run(s.options(), sink)
        }
    };
    std::process::exit(code)
}

fn logger(kmsg: bool) -> &'static edge_init::log_sink::Sink {
    let sink: &'static edge_init::log_sink::Sink = Box::leak(Box::new(edge_init::log_sink::Sink::new(kmsg)));
    let _ = log::set_logger(sink);
    log::set_max_level(log::LevelFilter::Info);
    sink
}
