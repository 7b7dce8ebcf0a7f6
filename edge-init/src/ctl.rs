//! `edge-init ctl` and `edge-init notify`: the command-line clients of the control socket (docs/edge-init.md,
//! "Control socket") and of `NOTIFY_SOCKET`. The protocol and the client that speaks it are `platform::ctl`'s, which
//! `edge-update` uses too for `health` and `reboot`; the server is the `control` module.

use std::path::{Path, PathBuf};
use std::time::Duration;

use platform::ctl::{ask, Reply, Request};

use crate::error::{chain, Error};
use crate::paths;

/// `edge-init ctl`'s usage.
pub const USAGE: &str = "usage: edge-init ctl [--socket PATH] status [--json] | health | start SVC | stop SVC | \
                         restart SVC | reboot | poweroff | halt";

/// `edge-init notify`'s usage.
pub const NOTIFY_USAGE: &str = "usage: edge-init notify READY=1 [STATUS=text]...";

/// Whether `args` ask for help (`--help` or `-h` anywhere: no service name or notify word starts with `-`).
fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "--help" || a == "-h")
}

/// `edge-init ctl ARGS...`: exit 0 when the answer is `ok` (or on `--help`), 1 when refused or unreachable, 2 for
/// bad usage.
pub fn main(args: &[String]) -> i32 {
    if wants_help(args) {
        println!("{USAGE}");
        return 0;
    }
    let mut socket = PathBuf::from(paths::CONTROL_SOCKET);
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" => match it.next() {
                Some(p) => socket = PathBuf::from(p),
                None => return usage(),
            },
            _ => rest.push(a.as_str()),
        }
    }
    let line = rest.join(" ");
    let Ok(request) = Request::parse(&line) else { return usage() };
    match ask(&socket, &request) {
        Ok(Reply::Ok { body }) => {
            print!("{body}");
            0
        }
        Ok(Reply::Refused(refusal)) => {
            eprintln!("edge-init ctl {line}: {refusal}");
            1
        }
        Err(platform::Error::AskInit { source, .. }) => {
            eprintln!("edge-init ctl: cannot reach {}: {source}", socket.display());
            1
        }
        Err(e) => {
            eprintln!("edge-init ctl {line}: {}", chain(&e));
            1
        }
    }
}

/// `edge-init notify READY=1 [STATUS=...]`: sd_notify for services written as shell scripts; sends the words as
/// one datagram to `$NOTIFY_SOCKET` and waits (up to 5 s) until `edge-init` has read it, so that it still finds
/// this process, and through its session its service, when it reads the sender's credentials.
pub fn notify(args: &[String], socket: Option<&std::ffi::OsStr>) -> i32 {
    if wants_help(args) {
        println!("{NOTIFY_USAGE}");
        return 0;
    }
    // The words first: bad usage is exit 2 wherever it is run, with or without a socket to send to.
    if args.is_empty() || args.iter().any(|a| !a.contains('=')) {
        eprintln!("{NOTIFY_USAGE}");
        return 2;
    }
    let Some(socket) = socket else {
        eprintln!("edge-init notify: NOTIFY_SOCKET is not set (not started by edge-init?)");
        return 1;
    };
    let sent = std::os::unix::net::UnixDatagram::unbound().and_then(|s| {
        s.send_to(args.join("\n").as_bytes(), socket)?;
        Ok(s)
    });
    match sent {
        Ok(s) => {
            for _ in 0..500 {
                if crate::sys::unread(&s).map_or(true, |n| n == 0) {
                    return 0;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            0
        }
        Err(source) => {
            eprintln!("edge-init notify: {}", chain(&Error::Notify { socket: Path::new(socket).to_owned(), source }));
            1
        }
    }
}

fn usage() -> i32 {
    eprintln!("{USAGE}");
    2
}
