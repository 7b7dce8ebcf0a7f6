//! Where log lines go: the kernel log (`/dev/kmsg`, with the syslog level prefix) when `edge-init` is PID 1, since
//! no other log exists that early; stderr otherwise. A small logger of our own, so no logging crate is linked.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

/// The logger.
pub struct Sink {
    kmsg: Option<Mutex<File>>,
}

impl Sink {
    /// One line of a service's output: to the kernel log as `<6>name: line`, or to stderr as `name: line`.
    pub fn service_line(&self, name: &str, line: &str) {
        match &self.kmsg {
            Some(f) => {
                let rec = format!("<6>{name}: {line}\n");
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(rec.as_bytes());
                }
            }
            None => eprintln!("{name}: {line}"),
        }
    }

    /// Writes to `/dev/kmsg` when `kmsg` and it can be opened, to stderr otherwise.
    pub fn new(kmsg: bool) -> Sink {
        let kmsg = kmsg.then(|| std::fs::OpenOptions::new().write(true).open(crate::paths::KMSG).ok()).flatten();
        Sink { kmsg: kmsg.map(Mutex::new) }
    }
}

/// The syslog priority of a level, as `/dev/kmsg` wants it before the message.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

impl log::Log for Sink {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        match &self.kmsg {
            Some(f) => {
                // One write per line: the kernel takes each write as one record.
                let line = format!("<{}>edge-init: {}\n", priority(r.level()), r.args());
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            None => eprintln!("edge-init: {}: {}", r.level().as_str().to_lowercase(), r.args()),
        }
    }
    fn flush(&self) {}
}
