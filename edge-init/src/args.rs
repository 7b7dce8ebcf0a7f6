//! `edge-init`'s command line, read into what to do ([`Invocation`]) by a pure function, so that every form, and
//! what PID 1 does with the words the kernel hands it, is tested without starting a process. No clap: the few forms
//! are matched by hand (STYLE.md, "CLIs and output"); `main.rs` only runs what [`parse`] returns.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use crate::pid1;

/// The usage text, printed by `--help` and after every usage error.
pub const USAGE: &str = "usage: edge-init [--config FILE] [--run DIR] [--cmdline TEXT] [--log kmsg|stderr]
       edge-init ctl [--socket PATH] status [--json] | health | start SVC | stop SVC | restart SVC | reboot | poweroff | halt
       edge-init notify READY=1 [STATUS=...]
       edge-init check [--config FILE]
       edge-init -- COMMAND [ARGS...]
       edge-init --version";

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// `-- COMMAND [ARGS...]`: run one command the way tini does (`one::run`); the words after `--`.
    One(Vec<OsString>),
    /// `ctl ...`: talk to a running PID 1 (`ctl::main`); the words after `ctl`.
    Ctl(Vec<String>),
    /// `notify ...`: tell the supervisor a service is ready (`ctl::notify`); the words after `notify`.
    Notify(Vec<String>),
    /// `check ...`: validate a services file (`check::main`); the words after `check`.
    Check(Vec<String>),
    /// `--help`: print [`USAGE`] and exit 0.
    Help,
    /// `--version`: print the version and exit 0.
    Version,
    /// Supervise services: PID 1, or any process given `--config`.
    Supervise(Supervise),
}

/// The options of [`Invocation::Supervise`]; `None` keeps [`pid1::Options`]' default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Supervise {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--run DIR`.
    pub run_dir: Option<PathBuf>,
    /// `--cmdline TEXT`.
    pub cmdline: Option<String>,
    /// Log to the kernel log (`--log kmsg`, the default for PID 1) rather than stderr (`--log stderr`, the default
    /// otherwise).
    pub kmsg: bool,
    /// The usage errors PID 1 went on past, each keeping the default (or an earlier value) of what it could not
    /// read: PID 1 must not exit. Outside PID 1 a usage error ends `parse` instead, so this is empty.
    pub usage_errors: Vec<ArgsError>,
}

impl Supervise {
    /// The options PID 1's loop runs with.
    pub fn options(&self) -> pid1::Options {
        let mut opts = pid1::Options::default();
        if let Some(config) = &self.config {
            opts.config = config.clone();
        }
        if let Some(run_dir) = &self.run_dir {
            opts.run_dir = run_dir.clone();
        }
        opts.cmdline = self.cmdline.clone();
        opts
    }

    /// Sets `option` (one of the four) to `value`; a `--log` other than `kmsg` or `stderr` changes nothing.
    fn set(&mut self, option: &'static str, value: String) -> Result<(), ArgsError> {
        match (option, value.as_str()) {
            ("--config", _) => self.config = Some(PathBuf::from(value)),
            ("--run", _) => self.run_dir = Some(PathBuf::from(value)),
            ("--cmdline", _) => self.cmdline = Some(value),
            (_, "kmsg") => self.kmsg = true,
            (_, "stderr") => self.kmsg = false,
            _ => return Err(ArgsError::Log { value }),
        }
        Ok(())
    }

    /// Logs each usage error PID 1 went on past, naming the argument (to the kernel log, unless `--log stderr`
    /// came first): once the logger is set, before anything else.
    pub fn log_usage_errors(&self) {
        for e in &self.usage_errors {
            log::warn!("command line: {e}; going on with the default");
        }
    }
}

/// A command line that is not one of the forms; outside PID 1 `main` prints it with [`USAGE`] and exits 2, and PID 1
/// logs it and goes on ([`Supervise::usage_errors`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// Not PID 1 and no `--config`: supervising the host's services by accident is refused.
    NotPid1,
    /// An option that takes a value is the last word.
    NeedsValue {
        /// The option.
        option: &'static str,
    },
    /// `--log` with a value other than `kmsg` or `stderr`.
    Log {
        /// The value given.
        value: String,
    },
    /// A word that is no option (outside PID 1).
    Unknown {
        /// The word.
        word: String,
    },
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::NotPid1 => f.write_str("not PID 1; give --config FILE to supervise services anyway"),
            ArgsError::NeedsValue { option } => write!(f, "{option} needs a value"),
            ArgsError::Log { value } => write!(f, "--log {value}: kmsg or stderr"),
            ArgsError::Unknown { word } => write!(f, "unknown argument {word}"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Reads `args` (the words after the program name); `pid1` when the process is PID 1.
///
/// As PID 1, only `--` is a verb. The kernel hands init the words of its command line it does not know, and a stray
/// `ctl`, `notify`, `check`, `--help` or `--version` there must not run that verb and end PID 1, which panics the
/// kernel: such words, and any other word that is no option, are ignored and PID 1 supervises. For the same reason
/// PID 1 is never refused: an option without its value, or a `--log` other than `kmsg` or `stderr`, is kept in
/// [`Supervise::usage_errors`] and what it would have set keeps its default.
pub fn parse(args: &[OsString], pid1: bool) -> Result<Invocation, ArgsError> {
    let rest = || args[1..].iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>();
    match args.first().and_then(|a| a.to_str()) {
        Some("--") => return Ok(Invocation::One(args[1..].to_vec())),
        Some("ctl") if !pid1 => return Ok(Invocation::Ctl(rest())),
        Some("notify") if !pid1 => return Ok(Invocation::Notify(rest())),
        Some("--help" | "-h") if !pid1 => return Ok(Invocation::Help),
        Some("check") if !pid1 => return Ok(Invocation::Check(rest())),
        Some("--version" | "-V") if !pid1 => return Ok(Invocation::Version),
        _ => {}
    }
    if !pid1 && !args.iter().any(|a| a == "--config") {
        return Err(ArgsError::NotPid1);
    }
    let mut s = Supervise { kmsg: pid1, ..Supervise::default() };
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        let option = match a.as_str() {
            "--config" => "--config",
            "--run" => "--run",
            "--cmdline" => "--cmdline",
            "--log" => "--log",
            // The kernel passes PID 1 the command-line words it does not know (`single`, `quiet`...): not ours.
            _ if pid1 => continue,
            "--help" | "-h" => return Ok(Invocation::Help),
            other => return Err(ArgsError::Unknown { word: other.to_owned() }),
        };
        let error = match it.next() {
            None => Some(ArgsError::NeedsValue { option }),
            Some(value) => s.set(option, value).err(),
        };
        match error {
            Some(e) if pid1 => s.usage_errors.push(e),
            Some(e) => return Err(e),
            None => {}
        }
    }
    Ok(Invocation::Supervise(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn check(args: &[&str], pid1: bool, expected: Result<Invocation, ArgsError>) {
        assert_eq!(parse(&words(args), pid1), expected, "{args:?} as PID 1: {pid1}");
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_owned()).collect()
    }

    fn supervise(config: Option<&str>, run_dir: Option<&str>, cmdline: Option<&str>, kmsg: bool) -> Invocation {
        supervise_past(config, run_dir, cmdline, kmsg, &[])
    }

    /// [`supervise`] after PID 1 went on past `usage_errors`.
    fn supervise_past(
        config: Option<&str>,
        run_dir: Option<&str>,
        cmdline: Option<&str>,
        kmsg: bool,
        usage_errors: &[ArgsError],
    ) -> Invocation {
        Invocation::Supervise(Supervise {
            config: config.map(PathBuf::from),
            run_dir: run_dir.map(PathBuf::from),
            cmdline: cmdline.map(str::to_owned),
            kmsg,
            usage_errors: usage_errors.to_vec(),
        })
    }

    #[test]
    fn issue_15_verbs_outside_pid1() {
        check(&["--", "sh", "-c", "true"], false, Ok(Invocation::One(words(&["sh", "-c", "true"]))));
        check(&["--"], false, Ok(Invocation::One(vec![])));
        check(&["ctl", "status", "--json"], false, Ok(Invocation::Ctl(strings(&["status", "--json"]))));
        check(&["ctl"], false, Ok(Invocation::Ctl(vec![])));
        check(&["notify", "READY=1"], false, Ok(Invocation::Notify(strings(&["READY=1"]))));
        check(&["check", "--config", "x"], false, Ok(Invocation::Check(strings(&["--config", "x"]))));
        check(&["--help"], false, Ok(Invocation::Help));
        check(&["-h", "bogus"], false, Ok(Invocation::Help));
        check(&["--version"], false, Ok(Invocation::Version));
        check(&["-V"], false, Ok(Invocation::Version));
    }

    #[test]
    fn issue_15_supervising_outside_pid1() {
        check(&["--config", "s.toml"], false, Ok(supervise(Some("s.toml"), None, None, false)));
        check(
            &["--run", "r", "--config", "s.toml", "--cmdline", "edge.debug", "--log", "kmsg"],
            false,
            Ok(supervise(Some("s.toml"), Some("r"), Some("edge.debug"), true)),
        );
        check(
            &["--config", "a", "--config", "b", "--log", "stderr"],
            false,
            Ok(supervise(Some("b"), None, None, false)),
        );
        // The first word that settles it wins: help before a bad word, a bad word before help.
        check(&["--config", "x", "--help"], false, Ok(Invocation::Help));
        check(&["--config", "x", "bogus", "--help"], false, Err(ArgsError::Unknown { word: "bogus".to_owned() }));
        check(&[], false, Err(ArgsError::NotPid1));
        check(&["--run", "r"], false, Err(ArgsError::NotPid1));
        check(&["--run", "r", "--help"], false, Err(ArgsError::NotPid1));
        check(&["--config"], false, Err(ArgsError::NeedsValue { option: "--config" }));
        check(&["--config", "x", "--run"], false, Err(ArgsError::NeedsValue { option: "--run" }));
        check(&["--config", "x", "--cmdline"], false, Err(ArgsError::NeedsValue { option: "--cmdline" }));
        check(&["--config", "x", "--log"], false, Err(ArgsError::NeedsValue { option: "--log" }));
        check(&["--config", "x", "--log", "file"], false, Err(ArgsError::Log { value: "file".to_owned() }));
        check(&["--config", "x", "quiet"], false, Err(ArgsError::Unknown { word: "quiet".to_owned() }));
    }

    /// As PID 1 only `--` is a verb; every other word the kernel hands init is ignored, and it logs to the kernel
    /// log unless told otherwise.
    #[test]
    fn issue_15_pid1_ignores_the_kernels_words() {
        check(&[], true, Ok(supervise(None, None, None, true)));
        check(&["--", "sh"], true, Ok(Invocation::One(words(&["sh"]))));
        for word in ["ctl", "notify", "check", "--help", "-h", "--version", "-V", "single", "quiet"] {
            check(&[word, "status"], true, Ok(supervise(None, None, None, true)));
        }
        check(
            &["quiet", "--config", "s.toml", "--help", "--log", "stderr"],
            true,
            Ok(supervise(Some("s.toml"), None, None, false)),
        );
    }

    /// As PID 1 a usage error does not end it (which would panic the kernel): it is kept to be logged, and what it
    /// would have set keeps its default, or the value an earlier word gave it.
    #[test]
    fn issue_15_pid1_goes_on_past_usage_errors() {
        let needs = |option| ArgsError::NeedsValue { option };
        let log = |value: &str| ArgsError::Log { value: value.to_owned() };
        check(&["--config"], true, Ok(supervise_past(None, None, None, true, &[needs("--config")])));
        check(&["quiet", "--run"], true, Ok(supervise_past(None, None, None, true, &[needs("--run")])));
        check(&["--cmdline"], true, Ok(supervise_past(None, None, None, true, &[needs("--cmdline")])));
        check(&["--log"], true, Ok(supervise_past(None, None, None, true, &[needs("--log")])));
        check(&["--log", "serial"], true, Ok(supervise_past(None, None, None, true, &[log("serial")])));
        check(
            &["--config", "s.toml", "--log", "stderr", "--log", "serial", "--config"],
            true,
            Ok(supervise_past(Some("s.toml"), None, None, false, &[log("serial"), needs("--config")])),
        );
        // A value that is itself an option is taken as the value, as outside PID 1.
        check(&["--run", "--log", "stderr"], true, Ok(supervise_past(None, Some("--log"), None, true, &[])));
        // Outside PID 1 the same words are still refused.
        check(&["--config", "x", "--log", "serial", "--run"], false, Err(log("serial")));
    }

    #[test]
    fn issue_15_usage_errors_name_the_argument() {
        let lines: Vec<String> =
            [ArgsError::NeedsValue { option: "--cmdline" }, ArgsError::Log { value: "serial".to_owned() }]
                .iter()
                .map(ToString::to_string)
                .collect();
        assert_eq!(lines, ["--cmdline needs a value", "--log serial: kmsg or stderr"]);
    }

    #[test]
    fn supervise_options_keep_the_defaults_not_given() {
        let d = pid1::Options::default();
        let o = Supervise::default().options();
        assert_eq!((o.config, o.run_dir, o.cmdline), (d.config.clone(), d.run_dir.clone(), None));
        let s = Supervise {
            config: Some("c".into()),
            run_dir: Some("r".into()),
            cmdline: Some("x".into()),
            kmsg: false,
            usage_errors: vec![],
        };
        let o = s.options();
        assert_eq!((o.config, o.run_dir, o.cmdline), ("c".into(), "r".into(), Some("x".to_owned())));
    }
}
