//! What the operator CLIs (`edge-image`, `edge-bootctl`, `edge-update`) share at their edge: a verb's result printed
//! for a person or as JSON (the same `Serialize` value either way), and an error printed with each `caused by:`
//! line of its source chain and turned into the tool's exit code.
//!
//! Their log lines go to stderr the same way too ([`log_to_stderr`]).
//!
//! It is a crate of its own so that each tool's `main.rs` stays a few lines and the three print alike, without any
//! of them linking another's library. It depends on serde, serde_json and log only. `edge-init` does not use it: PID 1
//! has its own logger and no `serde_json`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::error::Error;
use std::io::Write;

use serde::Serialize;

/// What a verb prints on stdout: text for a person, or a report as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    text: String,
}

impl Output {
    /// Text printed as it is; an empty text prints nothing.
    pub fn text(text: impl Into<String>) -> Output {
        Output { text: text.into() }
    }

    /// `report` as pretty JSON (its fields in the order it declares them) when `as_json`, else `human(report)`.
    pub fn report<T: Serialize + ?Sized>(report: &T, as_json: bool, human: impl FnOnce(&T) -> String) -> Output {
        Output { text: if as_json { to_json(report) } else { human(report) } }
    }

    /// `report` as one line of JSON Lines.
    pub fn json_line<T: Serialize + ?Sized>(report: &T) -> Output {
        Output { text: to_json_line(report) }
    }

    /// The text to print, without its final newline.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `value` as pretty JSON.
///
/// Serialized straight from the value rather than through `serde_json::Value`, whose map sorts its keys, so the
/// fields come in the order the type declares them (`schema` first, docs/json.md).
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("wire types hold only serializable fields")
}

/// `value` as one line of JSON, for JSON Lines streams (progress, results).
pub fn to_json_line<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("wire types hold only serializable fields")
}

/// The lines that report `err` on stderr: `PROG: error: MESSAGE`, then `  caused by: CAUSE` for each error of its
/// source chain, each line ending in a newline.
pub fn error_report(prog: &str, err: &(dyn Error + 'static)) -> String {
    let mut out = format!("{prog}: error: {err}\n");
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(&format!("  caused by: {s}\n"));
        source = s.source();
    }
    out
}

/// Ends a tool's `main`: prints the output on stdout (nothing for an empty one) and exits 0, or prints the error
/// report on stderr and exits with `exit_code(&err)`.
pub fn finish<E: Error + 'static>(prog: &str, result: Result<Output, E>, exit_code: impl FnOnce(&E) -> i32) -> ! {
    match result {
        Ok(out) => {
            if !out.text.is_empty() {
                println!("{}", out.text);
            }
            // `exit` runs no destructors; stdout is flushed here so that nothing printed is lost.
            let _ = std::io::stdout().flush();
            std::process::exit(0);
        }
        Err(e) => {
            eprint!("{}", error_report(prog, &e));
            std::process::exit(exit_code(&e));
        }
    }
}

/// A logger that writes each record as one line on stderr, `PROG: level: message`.
struct StderrLog {
    prog: &'static str,
    /// The module path prefixes whose records are written; empty: every record.
    targets: &'static [&'static str],
}

impl StderrLog {
    fn line(&self, r: &log::Record<'_>) -> Option<String> {
        log::Log::enabled(self, r.metadata())
            .then(|| format!("{}: {}: {}", self.prog, r.level().as_str().to_lowercase(), r.args()))
    }
}

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
            && (self.targets.is_empty() || self.targets.iter().any(|t| m.target().starts_with(t)))
    }
    fn log(&self, r: &log::Record<'_>) {
        if let Some(line) = self.line(r) {
            eprintln!("{line}");
        }
    }
    fn flush(&self) {}
}

/// Starts a tool's logging: records at `level` or above, from modules whose path starts with one of `targets` (all
/// of them when empty, so a tool can keep its libraries' chatter out), one line each on stderr as
/// `PROG: level: message`. A second call keeps the first logger and only sets the level.
pub fn log_to_stderr(prog: &'static str, level: log::LevelFilter, targets: &'static [&'static str]) {
    let _ = log::set_boxed_logger(Box::new(StderrLog { prog, targets }));
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);

    impl fmt::Display for Chain {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Chain {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|c| c as &(dyn Error + 'static))
        }
    }

    #[test]
    fn an_error_is_printed_with_each_cause() {
        let check = |err: Chain, expected: &str| assert_eq!(error_report("edge-x", &err), expected);
        check(Chain("cannot open slot", None), "edge-x: error: cannot open slot\n");
        check(
            Chain("cannot open slot", Some(Box::new(Chain("no such file", None)))),
            "edge-x: error: cannot open slot\n  caused by: no such file\n",
        );
        check(
            Chain("a", Some(Box::new(Chain("b", Some(Box::new(Chain("c", None))))))),
            "edge-x: error: a\n  caused by: b\n  caused by: c\n",
        );
    }

    #[derive(Serialize)]
    struct Report {
        schema: &'static str,
        zeta: u32,
        alpha: Vec<u8>,
    }

    #[test]
    fn a_report_is_json_or_text() {
        let r = Report { schema: "x/1", zeta: 2, alpha: vec![1] };
        let human = |r: &Report| format!("zeta {}", r.zeta);
        let check = |out: Output, expected: &str| assert_eq!(out.as_str(), expected);
        // Fields in declaration order, not sorted.
        check(
            Output::report(&r, true, human),
            "{\n  \"schema\": \"x/1\",\n  \"zeta\": 2,\n  \"alpha\": [\n    1\n  ]\n}",
        );
        check(Output::report(&r, false, human), "zeta 2");
        check(Output::json_line(&r), r#"{"schema":"x/1","zeta":2,"alpha":[1]}"#);
        check(Output::text("slot B: good"), "slot B: good");
    }

    #[test]
    fn log_lines_name_the_tool_and_keep_to_their_targets() {
        log::set_max_level(log::LevelFilter::Info);
        let line = |l: &StderrLog, target: &str, level| {
            l.line(&log::Record::builder().target(target).level(level).args(format_args!("hello {}", 1)).build())
        };
        let all = StderrLog { prog: "edge-x", targets: &[] };
        let own = StderrLog { prog: "edge-x", targets: &["edge_x"] };
        assert_eq!(line(&all, "sqlx::query", log::Level::Warn).as_deref(), Some("edge-x: warn: hello 1"));
        assert_eq!(line(&own, "sqlx::query", log::Level::Warn), None, "another crate's record");
        assert_eq!(line(&own, "edge_x::api", log::Level::Info).as_deref(), Some("edge-x: info: hello 1"));
        assert_eq!(line(&own, "edge_x::api", log::Level::Debug), None, "below the level");
    }
}
