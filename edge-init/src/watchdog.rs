//! The hardware watchdog (docs/edge-init.md, "Hardware watchdog"): which device to use, setting its timeout and
//! reading back the one the hardware really uses, logging a watchdog reset at boot, and the rule for petting it.
//! A module of its own because it is the one part of PID 1 whose failure is meant to reboot the node: the petting
//! rule is a pure type (`Petting`) that the event loop asks when to wake and whether to pet, and the device
//! (`Watchdog`) only carries out the pets.
//!
//! Never the magic close: nothing here ever writes `V` to the device, and a `Watchdog` never closes its descriptor,
//! not even when dropped. On the way to `reboot(2)` the watchdog stays armed, so a shutdown that hangs still ends
//! in a reset. The descriptor is close-on-exec, so services never inherit it; an exec of PID 1 itself does close
//! it, after which a driver with `WDIOF_MAGICCLOSE` keeps running (the new init must open and pet it in time) and
//! one without stops. So the watchdog is opened in the final root, after any switch to it.

use std::fmt;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::services::WatchdogConfig;
use crate::sys::watchdog as sys;

/// Why no watchdog is used although one may exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Off {
    /// `enabled = false` in `[watchdog]`.
    Config,
    /// `edge.watchdog=0` on the kernel command line.
    Cmdline,
}

/// How the device was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// `device` in `[watchdog]`.
    Configured,
    /// The first `watchdogN` whose sysfs `identity` is `[watchdog] identity`.
    Identity,
    /// `watchdog0`, the first the kernel registered: no `identity` configured, or none matched.
    First,
}

/// Which watchdog to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// None, on purpose.
    Off(Off),
    /// This device node.
    Device(PathBuf, Found),
    /// No device: none configured, no `identity` matched and no `watchdog0`.
    Absent,
}

/// Chooses the device: `enabled = false` or `edge.watchdog=0` (`cmdline_allows` false) turn it off; else
/// `device` from the config; else `dev_root/watchdogN` for the lowest N whose
/// `sysfs_root/class/watchdog/watchdogN/identity` is the configured `identity`; else `dev_root/watchdog0` if it
/// exists. It only reads the two trees.
pub fn choose(cfg: &WatchdogConfig, cmdline_allows: bool, sysfs_root: &Path, dev_root: &Path) -> Choice {
    if !cfg.enabled {
        return Choice::Off(Off::Config);
    }
    if !cmdline_allows {
        return Choice::Off(Off::Cmdline);
    }
    if let Some(device) = &cfg.device {
        return Choice::Device(device.clone(), Found::Configured);
    }
    if let Some(wanted) = &cfg.identity {
        let class = sysfs_root.join("class/watchdog");
        let mut matching: Vec<u32> = std::fs::read_dir(&class)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let n: u32 = entry.file_name().to_str()?.strip_prefix("watchdog")?.parse().ok()?;
                let identity = std::fs::read_to_string(entry.path().join("identity")).ok()?;
                (identity.trim() == wanted.trim()).then_some(n)
            })
            .collect();
        // Numeric order: watchdog2 comes before watchdog10.
        matching.sort_unstable();
        if let Some(n) = matching.first() {
            return Choice::Device(dev_root.join(format!("watchdog{n}")), Found::Identity);
        }
    }
    let first = dev_root.join("watchdog0");
    if first.exists() {
        Choice::Device(first, Found::First)
    } else {
        Choice::Absent
    }
}

/// How often to pet a watchdog whose timeout is `timeout`: a third of it, so that a late wakeup or a pet that fails
/// once still leaves time for the next. Timeouts are whole seconds, so the shortest interval is a third of 1 s; no floor of 1 s, which
/// would let a 1 s watchdog fire between two pets. An unknown timeout (the driver would not say) gets 1 s, within a
/// third of any timeout of 3 s or more; hardware timeouts shorter than that are rare.
pub fn interval_for(timeout: Option<Duration>) -> Duration {
    match timeout {
        Some(t) if !t.is_zero() => t / 3,
        _ => Duration::from_secs(1),
    }
}

/// When to pet the watchdog, as a pure decision over a monotonic clock (`now` is the time since any fixed point,
/// the same for every call). The event loop asks [`Petting::next_deadline`] when to wake, [`Petting::due`]
/// whether to pet, and reports each pet with [`Petting::petted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Petting {
    interval: Duration,
    last: Option<Duration>,
}

impl Petting {
    /// Pets every `interval` (see [`Watchdog::interval`]), the first one at once.
    pub fn new(interval: Duration) -> Petting {
        Petting { interval, last: None }
    }

    /// Whether to pet at `now`: every critical service is alive (`critical_alive`) and `interval` has passed
    /// since the last pet, or there was none. While shutting down, services stopped on purpose do not count as
    /// dead: pass true, so only a PID 1 that itself hangs lets the watchdog fire.
    pub fn due(&self, now: Duration, critical_alive: bool) -> bool {
        critical_alive && self.last.is_none_or(|last| now >= last + self.interval)
    }

    /// When the loop must wake next to pet, or `None` while a critical service is down: no pet is due then, and
    /// the service coming back is an event of its own that wakes the loop.
    pub fn next_deadline(&self, critical_alive: bool) -> Option<Duration> {
        critical_alive.then(|| self.last.map_or(Duration::ZERO, |last| last + self.interval))
    }

    /// Records a pet at `now`. Call it after every attempt, failed ones too, so a failing device is retried at
    /// the next interval instead of in a busy loop.
    pub fn petted(&mut self, now: Duration) {
        self.last = Some(now);
    }
}

/// An open hardware watchdog. It is running from the moment it is opened and is never stopped: see the module
/// documentation, "never the magic close".
pub struct Watchdog {
    /// Never closed, so never dropped: a driver without `WDIOF_MAGICCLOSE` would stop on close.
    fd: ManuallyDrop<OwnedFd>,
    path: PathBuf,
    identity: String,
    timeout: Option<Duration>,
    keepalive_ioctl: bool,
    /// The driver's boot status says the last reset was the watchdog's.
    reset_by_watchdog: bool,
}

impl fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchdog")
            .field("path", &self.path)
            .field("identity", &self.identity)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Watchdog {
    /// Opens the watchdog [`choose`] picks, asks it for `cfg.timeout`, reads back the timeout it really uses and
    /// logs both, and logs at warn when its boot status says the last reset was the watchdog's. `Ok(None)` when
    /// there is none or it is off (logged at info). The only error is failing to open the chosen device; once it is
    /// open (and so running) every later failure is logged and worked around, since returning would leave a
    /// running watchdog that nobody pets.
    pub fn open(
        cfg: &WatchdogConfig,
        cmdline_allows: bool,
        sysfs_root: &Path,
        dev_root: &Path,
    ) -> Result<Option<Watchdog>> {
        let (path, found) = match choose(cfg, cmdline_allows, sysfs_root, dev_root) {
            Choice::Off(Off::Config) => {
                log::info!("watchdog: off (enabled = false in [watchdog])");
                return Ok(None);
            }
            Choice::Off(Off::Cmdline) => {
                log::info!("watchdog: off (edge.watchdog=0)");
                return Ok(None);
            }
            Choice::Absent => {
                match &cfg.identity {
                    Some(id) => log::warn!("watchdog: none has identity {id:?} and there is no watchdog0"),
                    None => log::info!("watchdog: no device"),
                }
                return Ok(None);
            }
            Choice::Device(path, found) => (path, found),
        };
        match (found, &cfg.identity) {
            (Found::First, Some(id)) => {
                log::warn!("watchdog: none has identity {id:?}, using {}", path.display())
            }
            (Found::Identity, Some(id)) => log::info!("watchdog: {} has identity {id:?}", path.display()),
            _ => log::info!("watchdog: {}", path.display()),
        }
        let fd = sys::open(&path).map_err(|source| Error::OpenWatchdog { path: path.clone(), source })?;
        // From here on the watchdog runs: nothing below returns an error.
        let fd = ManuallyDrop::new(fd);
        let info = sys::support(fd.as_fd()).unwrap_or_else(|e| {
            log::warn!("watchdog {}: WDIOC_GETSUPPORT failed, petting by write: {e}", path.display());
            sys::Info { options: 0, firmware_version: 0, identity: String::new() }
        });
        let identity = if info.identity.is_empty() { path.display().to_string() } else { info.identity };
        // Config validation keeps the timeout within 1..=3600 s.
        let asked = u32::try_from(cfg.timeout.as_secs()).unwrap_or(u32::MAX).max(1);
        if let Err(e) = sys::set_timeout(fd.as_fd(), asked) {
            log::warn!("watchdog {identity}: cannot set the timeout to {asked} s: {e}");
        }
        let timeout = match sys::timeout(fd.as_fd()) {
            Ok(secs) if secs > 0 => {
                log::info!("watchdog {identity}: timeout asked {asked} s, hardware uses {secs} s");
                Some(Duration::from_secs(secs.into()))
            }
            Ok(_) => {
                log::warn!("watchdog {identity}: timeout asked {asked} s, the driver reports 0 s; petting every 1 s");
                None
            }
            Err(e) => {
                log::warn!("watchdog {identity}: timeout asked {asked} s, the driver does not say what it uses ({e}); petting every 1 s");
                None
            }
        };
        let reset_by_watchdog = match sys::boot_status(fd.as_fd()) {
            Ok(bits) if bits & sys::CARDRESET != 0 => {
                log::warn!("watchdog {identity}: the last reset was a watchdog reset (bootstatus {bits:#x})");
                true
            }
            Ok(bits) => {
                log::debug!("watchdog {identity}: bootstatus {bits:#x}");
                false
            }
            Err(e) => {
                log::debug!("watchdog {identity}: no bootstatus: {e}");
                false
            }
        };
        let keepalive_ioctl = info.options & sys::KEEPALIVEPING != 0;
        Ok(Some(Watchdog { fd, path, identity, timeout, keepalive_ioctl, reset_by_watchdog }))
    }

    /// Whether the last reset was the watchdog's (its driver's boot status).
    pub fn reset_by_watchdog(&self) -> bool {
        self.reset_by_watchdog
    }

    /// The device node.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the driver calls itself (`i6300ESB timer`), or the device node when it would not say.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The timeout the hardware uses, read back after setting it; `None` when the driver would not say.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// How often to pet it: a third of its real timeout ([`interval_for`]).
    pub fn interval(&self) -> Duration {
        interval_for(self.timeout)
    }

    /// Pets it: `WDIOC_KEEPALIVE` where the driver takes it, else a write of one NUL byte (never `V`).
    pub fn pet(&mut self) -> Result<()> {
        let pet = if self.keepalive_ioctl {
            sys::keepalive(self.fd.as_fd())
        } else {
            sys::keepalive_by_write(self.fd.as_fd())
        };
        pet.map_err(|source| Error::PetWatchdog { path: self.path.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(device: Option<&str>, identity: Option<&str>) -> WatchdogConfig {
        WatchdogConfig {
            enabled: true,
            device: device.map(PathBuf::from),
            identity: identity.map(str::to_owned),
            timeout: Duration::from_secs(30),
        }
    }

    /// Builds a fake `/sys` and `/dev` in a tempdir, each of `tree` being `"N"` (only `/dev/watchdogN`), or
    /// `"N:identity"` (both, and the sysfs `identity` file with a newline, as the kernel writes it) or `"N:identity:"`
    /// (sysfs only), then chooses; `expected` names the device relative to the fake `/dev`, unless it is absolute.
    fn check(tree: &[&str], cfg: WatchdogConfig, cmdline_allows: bool, expected: Choice) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sysfs, dev) = (dir.path().join("sys"), dir.path().join("dev"));
        std::fs::create_dir_all(sysfs.join("class/watchdog")).expect("mkdir sys");
        std::fs::create_dir_all(&dev).expect("mkdir dev");
        for entry in tree {
            let mut parts = entry.splitn(3, ':');
            let n = parts.next().expect("a number");
            if let Some(identity) = parts.next() {
                let class = sysfs.join(format!("class/watchdog/watchdog{n}"));
                std::fs::create_dir_all(&class).expect("mkdir class");
                std::fs::write(class.join("identity"), format!("{identity}\n")).expect("identity");
            }
            if parts.next().is_none() {
                std::fs::write(dev.join(format!("watchdog{n}")), b"").expect("device node");
            }
        }
        let expected = match expected {
            Choice::Device(p, found) => Choice::Device(dev.join(p), found),
            other => other,
        };
        assert_eq!(choose(&cfg, cmdline_allows, &sysfs, &dev), expected, "{tree:?} {cfg:?} {cmdline_allows}");
    }

    fn device(name: &str, found: Found) -> Choice {
        Choice::Device(PathBuf::from(name), found)
    }

    #[test]
    fn device_choice() {
        let off = WatchdogConfig { enabled: false, ..cfg(None, None) };
        check(&[], cfg(None, None), true, Choice::Absent);
        check(&["0:iTCO_wdt"], cfg(None, None), true, device("watchdog0", Found::First));
        check(&["0:iTCO_wdt"], off.clone(), true, Choice::Off(Off::Config));
        check(&["0:iTCO_wdt"], off, false, Choice::Off(Off::Config));
        check(&["0:iTCO_wdt"], cfg(None, None), false, Choice::Off(Off::Cmdline));
        check(&["0:iTCO_wdt"], cfg(Some("/dev/wd"), Some("iTCO_wdt")), true, device("/dev/wd", Found::Configured));
        check(&[], cfg(Some("/dev/wd"), None), true, device("/dev/wd", Found::Configured));
        check(&["0:iTCO_wdt", "1:i6300ESB timer"], cfg(None, None), true, device("watchdog0", Found::First));
        let esb = cfg(None, Some("i6300ESB timer"));
        check(&["0:iTCO_wdt", "1:i6300ESB timer"], esb.clone(), true, device("watchdog1", Found::Identity));
        check(
            &["0:iTCO_wdt", "10:i6300ESB timer", "2:i6300ESB timer"],
            esb.clone(),
            true,
            device("watchdog2", Found::Identity),
        );
        check(&["0:iTCO_wdt", "1:i6300ESB timer:"], esb.clone(), true, device("watchdog1", Found::Identity));
        check(&["0:iTCO_wdt"], esb.clone(), true, device("watchdog0", Found::First));
        check(&["1:iTCO_wdt"], esb.clone(), true, Choice::Absent);
        check(&["0"], esb.clone(), true, device("watchdog0", Found::First));
        check(&["0:i6300ESB"], esb, true, device("watchdog0", Found::First));
    }

    #[test]
    fn interval_is_a_third_of_the_real_timeout() {
        let check = |timeout: Option<u64>, expected_ms: u64| {
            let got = interval_for(timeout.map(Duration::from_secs));
            assert_eq!(got.as_millis(), u128::from(expected_ms), "{timeout:?}");
        };
        check(Some(1), 333);
        check(Some(2), 666);
        check(Some(3), 1000);
        check(Some(30), 10_000);
        check(Some(31), 10_333);
        check(Some(0), 1000);
        check(None, 1000);
    }

    #[test]
    fn petting() {
        let s = Duration::from_secs;
        // (last pet, now, critical alive) -> (due, next deadline); the interval is 10 s.
        let check = |last: Option<u64>, now: u64, alive: bool, expected: (bool, Option<u64>)| {
            let mut p = Petting::new(s(10));
            if let Some(t) = last {
                p.petted(s(t));
            }
            let got = (p.due(s(now), alive), p.next_deadline(alive));
            assert_eq!(got, (expected.0, expected.1.map(s)), "last {last:?} now {now} alive {alive}");
        };
        check(None, 0, true, (true, Some(0)));
        check(None, 5, true, (true, Some(0)));
        check(None, 0, false, (false, None));
        check(Some(100), 100, true, (false, Some(110)));
        check(Some(100), 109, true, (false, Some(110)));
        check(Some(100), 110, true, (true, Some(110)));
        check(Some(100), 500, true, (true, Some(110)));
        check(Some(100), 110, false, (false, None));
        check(Some(100), 500, false, (false, None));
    }

    #[test]
    fn a_critical_service_down_withholds_every_pet_until_it_is_back() {
        let s = Duration::from_secs;
        let mut p = Petting::new(s(10));
        let mut pets = Vec::new();
        for now in 0..60 {
            let alive = !(15..42).contains(&now);
            if p.due(s(now), alive) {
                p.petted(s(now));
                pets.push(now);
            }
        }
        assert_eq!(pets, [0, 10, 42, 52]);
    }

    /// A device that takes none of the ioctls (here a plain file, through the real code): it is still opened and
    /// petted, by write, with the 1 s interval of an unknown timeout, and nothing written is ever `V`.
    #[test]
    fn a_driver_that_answers_no_ioctl_is_still_petted_by_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = dir.path().join("watchdog-file");
        std::fs::write(&node, b"").expect("create");
        let config = cfg(Some(node.to_str().expect("utf-8 tempdir")), None);
        let mut wd = Watchdog::open(&config, true, dir.path(), dir.path()).expect("open").expect("a watchdog");
        assert_eq!((wd.path(), wd.timeout(), wd.interval()), (node.as_path(), None, Duration::from_secs(1)));
        assert_eq!(wd.identity(), node.display().to_string());
        wd.pet().expect("pet");
        wd.pet().expect("pet");
        drop(wd);
        assert_eq!(std::fs::read(&node).expect("read back"), [0, 0]);
    }

    #[test]
    fn a_missing_configured_device_is_an_error_and_no_device_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-watchdog");
        let config = cfg(Some(missing.to_str().expect("utf-8 tempdir")), None);
        let err = Watchdog::open(&config, true, dir.path(), dir.path()).expect_err("missing device");
        assert!(
            matches!(&err, Error::OpenWatchdog { path, source }
                if path == &missing && source.kind() == std::io::ErrorKind::NotFound),
            "{err:?}"
        );
        assert!(Watchdog::open(&cfg(None, None), true, dir.path(), dir.path()).expect("no device").is_none());
        assert!(Watchdog::open(&config, false, dir.path(), dir.path()).expect("off").is_none());
    }
}
