//! Installing the desired bundle through the updater's library, the way `edge-update install` does (the same lock,
//! the same journal and event log, the same streaming install and checks), with one check of the agent's own in
//! front: the bundle must be the one the desired state named.
//!
//! That check pins the bundle's head: the agent reads the header, manifest and signatures once, compares the
//! manifest's blake3 with the desired state's `manifest_hash`, and hands the updater a source ([`Pinned`]) that
//! serves those same bytes from memory. The updater verifies the signatures over exactly the manifest that was
//! compared, and everything after it is pinned by that manifest's hashes, so a server that swaps the bundle between
//! the two reads gains nothing. A mismatch is refused before anything is written.

use std::io::{self, Read};

use bootctl::rules::Slot;
use fleet_wire::node::BundleRef;
use image_layout::format::{Header, HEADER_LEN};
use image_layout::keys::Keyring;
use time::OffsetDateTime;
use updater::config::{Config as UpdateConfig, RebootMethod};
use updater::device::{Access, SlotFile};
use updater::error::{exit, Error as UpdateError};
use updater::fetch::Fetch;
use updater::http::HttpFetch;
use updater::install::{install, Options};
use updater::wire::Progress;

/// How an install ended, with what the agent reports of it.
#[derive(Debug)]
pub enum Ended {
    /// Verified and held for its flip.
    Verified,
    /// Flipped; the updater asked edge-init for the reboot.
    Flipped,
    /// Refused by the node's checks: `exit_code` is `edge-update`'s exit class, `reason` the whole cause.
    Refused {
        /// The exit class.
        exit_code: i32,
        /// The cause.
        reason: String,
    },
    /// Failed on the way (the network, a disk); retried later.
    Failed {
        /// The cause.
        reason: String,
    },
    /// Another `edge-update` holds the lock, or an update waits for its reboot or commit; retried later.
    Busy {
        /// Why.
        reason: String,
    },
}

/// The stack the pinned manifest lists, once known (for the inventory).
pub type Stack = Option<serde_json::Value>;

/// A bundle source whose head (header, manifest, signatures) was read once and is served from memory.
pub struct Pinned {
    inner: Box<dyn Fetch>,
    head: Vec<u8>,
}

impl Pinned {
    /// Reads the head of `inner` and checks that its manifest's blake3 is `manifest_hash`; returns the pinned
    /// source and the manifest's stack.
    pub fn pin(mut inner: Box<dyn Fetch>, manifest_hash: &str) -> Result<(Pinned, Stack), UpdateError> {
        let name = inner.name().to_owned();
        let mut head = vec![0u8; HEADER_LEN];
        read_exact(&mut *inner, 0, &mut head)?;
        let hb: &[u8; HEADER_LEN] = head[..].try_into().expect("the header's length");
        let header = Header::decode(hb).map_err(|source| UpdateError::Bundle { source_name: name.clone(), source })?;
        head.resize(header.body_start() as usize, 0);
        read_exact(&mut *inner, HEADER_LEN as u64, &mut head[HEADER_LEN..])?;
        let parsed = image_layout::reader::Head::read(&mut &head[..])
            .map_err(|source| UpdateError::Bundle { source_name: name.clone(), source })?;
        let found = blake3::hash(&parsed.manifest_bytes).to_hex().to_string();
        if found != manifest_hash {
            return Err(UpdateError::Incompatible {
                expected: format!("the bundle with manifest {manifest_hash}"),
                found: format!("manifest {found} at {name}"),
            });
        }
        let stack = image_layout::manifest::Manifest::parse(&parsed.manifest_bytes).ok().map(|m| m.stack);
        Ok((Pinned { inner, head }, stack))
    }
}

fn read_exact(fetch: &mut dyn Fetch, start: u64, buf: &mut [u8]) -> Result<(), UpdateError> {
    let name = fetch.name().to_owned();
    let mut r = fetch.open(start, Some(start + buf.len() as u64)).map_err(|e| UpdateError::fetch(&name, start, e))?;
    r.read_exact(buf).map_err(|e| UpdateError::fetch(&name, start, e))
}

impl Fetch for Pinned {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn seekable(&self) -> bool {
        self.inner.seekable()
    }
    fn len(&mut self) -> io::Result<Option<u64>> {
        self.inner.len()
    }
    fn open(&mut self, start: u64, end: Option<u64>) -> io::Result<Box<dyn Read + Send + '_>> {
        let head_len = self.head.len() as u64;
        if start >= head_len {
            return self.inner.open(start, end);
        }
        let stop = end.map_or(head_len, |e| e.min(head_len));
        let from_head = &self.head[start as usize..stop.max(start) as usize];
        if end.is_some_and(|e| e <= head_len) {
            return Ok(Box::new(from_head));
        }
        let rest = self.inner.open(head_len, end)?;
        Ok(Box::new(from_head.chain(rest)))
    }
    fn bytes_received(&self) -> u64 {
        self.inner.bytes_received()
    }
}

/// The CA certificates (DER) an https URL may chain to, in place of the public roots; `None` for the public roots.
pub type Roots = Option<std::sync::Arc<Vec<Vec<u8>>>>;

/// Installs `bundle` as `edge-update install URL --no-flip` would, after pinning it to the desired manifest: the
/// target is verified and held, and [`flip`] makes it active when the desired state's rule allows.
/// The bundle's URLs are mirrors, tried in order: the first that serves the named manifest's head is the source of
/// the whole install (a URL that cannot be reached after the updater's retries, or that serves another bundle, is
/// passed over with a warning). `roots_for(url)` gives the only CA certificates that URL may chain to (the
/// endpoint's CA, for the endpoint's own bundle store); `progress` sees the updater's progress. Returns how it ended
/// and the manifest's stack when it was pinned.
pub fn run(
    config: &UpdateConfig,
    bundle: &BundleRef,
    roots_for: &dyn Fn(&str) -> Roots,
    progress: &mut dyn FnMut(&Progress),
) -> (Ended, Stack) {
    let Some(first_url) = bundle.urls.first() else {
        let reason = "the desired bundle names no URL".to_owned();
        return (Ended::Refused { exit_code: exit::REFUSED, reason }, None);
    };
    let keyring = match Keyring::load(&config.keyring) {
        Ok(k) => k,
        Err(source) => {
            let e = UpdateError::Keyring { path: config.keyring.clone(), source };
            return (Ended::Failed { reason: crate::error::chain(&e) }, None);
        }
    };
    let booted = match updater::slots::booted(config) {
        Ok(b) => b,
        Err(e) => return (Ended::Failed { reason: crate::error::chain(&e) }, None),
    };
    // The same lock `edge-update install` takes: a CLI install running now makes this one wait for a later poll.
    let mut node = match updater::run::Node::open(config, booted) {
        Ok(n) => n,
        Err(e) => return (classify(&e), None),
    };
    let stop = updater::run::record_stop_signals(config, first_url)
        .map_err(|e| log::warn!("stop signals will not be recorded: {e}"))
        .ok();
    let mut stack = None;
    let mut source = first_url.clone();
    let result = (|| {
        let target = updater::slots::resolve(config, booted.other())?;
        let mut dev = SlotFile::open(&target.path, Access::ReadWrite).map_err(|source| UpdateError::OpenSlot {
            slot: target.slot,
            device: target.path.clone(),
            source,
        })?;
        let (mut fetch, s) = pin_first(config, bundle, roots_for, &mut source)?;
        stack = s;
        let mut old = open_booted(config, booted);
        let mut opts = Options::at(OffsetDateTime::now_utc());
        opts.flip = false;
        // One decompression worker: the fewest chunks in flight, so the agent stays within its memory target
        // (bench/README.md, "edge-agent memory") whatever the node's cores; a background install over a WAN link
        // is not bound by one core's zstd.
        opts.threads = 1;
        let old_dev = old.as_mut().map(|f| f as &mut dyn updater::device::SlotDevice);
        install(&mut node, &keyring, &mut fetch, &target, &mut dev, old_dev, &opts, progress)
    })();
    if let Some(stop) = stop {
        stop.close();
    }
    match result {
        Ok(_) => (Ended::Verified, stack),
        Err(e) => {
            node.emit_install_failed(&source, &e);
            (classify(&e), stack)
        }
    }
}

/// Flips the held target as `edge-update flip --reboot` would: read back against its chunk hashes once more, made
/// the active slot on trial, and edge-init asked for the reboot.
pub fn flip(config: &UpdateConfig) -> Ended {
    let (mut node, target) = match open_held(config) {
        Ok(n) => n,
        Err(e) => return classify(&e),
    };
    node.reboot = RebootMethod::Init;
    let result = SlotFile::open(&target.path, Access::ReadWrite)
        .map_err(|source| UpdateError::OpenSlot { slot: target.slot, device: target.path.clone(), source })
        .and_then(|mut dev| updater::held::flip(&mut node, &target, &mut dev, true, &mut |_| {}));
    match result {
        Ok(outcome) => {
            if let Some(reason) = &outcome.reboot_error {
                log::warn!("slot {} is flipped, but the reboot could not be requested: {reason}", target.slot);
            }
            Ended::Flipped
        }
        // A slot that changed since it was verified: the journal went back to downloading without the chunks that
        // changed, and the next poll installs them again.
        Err(e @ UpdateError::ReadBack { .. }) => Ended::Failed { reason: crate::error::chain(&e) },
        Err(e) => classify(&e),
    }
}

/// Gives up the held target, as `edge-update cancel` would.
pub fn cancel(config: &UpdateConfig) -> Result<(), UpdateError> {
    let (mut node, _) = open_held(config)?;
    let state = node.boot_state()?;
    let booted = node.booted;
    node.handle(updater::phase::Event::Cancel { booted, state }).map(|_| ())
}

/// The node, under the updater's lock, and the slot that is not booted.
fn open_held(config: &UpdateConfig) -> Result<(updater::run::Node<'_>, updater::slots::SlotPath), UpdateError> {
    let booted = updater::slots::booted(config)?;
    let node = updater::run::Node::open(config, booted)?;
    let target = updater::slots::resolve(config, booted.other())?;
    Ok((node, target))
}

/// The first of the bundle's URLs whose head is the named manifest's, pinned; the last URL's error when none is.
/// `source` is left naming the URL pinned, or the last one tried.
fn pin_first(
    config: &UpdateConfig,
    bundle: &BundleRef,
    roots_for: &dyn Fn(&str) -> Roots,
    source: &mut String,
) -> Result<(Pinned, Stack), UpdateError> {
    let mut last = None;
    for (i, url) in bundle.urls.iter().enumerate() {
        source.clone_from(url);
        let options = updater::http::HttpOptions { roots: roots_for(url), ..config.http_options() };
        let pinned = HttpFetch::new(url, options)
            .map_err(|e| UpdateError::OpenSource { source_name: url.clone(), source: Box::new(e) })
            .and_then(|http| Pinned::pin(Box::new(http), &bundle.manifest_hash));
        match pinned {
            Ok(p) => return Ok(p),
            Err(e) => {
                if i + 1 < bundle.urls.len() {
                    log::warn!("{url}: {}; trying the bundle's next URL", crate::error::chain(&e));
                }
                last = Some(e);
            }
        }
    }
    Err(last.expect("the caller checked that there is a URL"))
}

/// The booted slot, read only, for delta reuse; without it the install is full.
fn open_booted(config: &UpdateConfig, booted: Slot) -> Option<SlotFile> {
    updater::slots::resolve(config, booted)
        .and_then(|b| {
            SlotFile::open(&b.path, Access::ReadOnly).map_err(|source| UpdateError::OpenSlot {
                slot: b.slot,
                device: b.path,
                source,
            })
        })
        .map_err(|e| log::warn!("no delta install: {e}"))
        .ok()
}

/// How an updater error ends an install of the desired bundle: the node's state not allowing one now is busy, a
/// transfer or disk failure is retried, every other class (not trusted, malformed, damaged, expired, not for this
/// board or below the floor, not the bundle named) is a refusal.
pub fn classify(e: &UpdateError) -> Ended {
    let reason = crate::error::chain(e);
    match e {
        UpdateError::Locked { .. }
        | UpdateError::Busy { .. }
        | UpdateError::BootedNotGood { .. }
        | UpdateError::WrongPhase { .. }
        | UpdateError::NotHeld { .. }
        | UpdateError::NoUpdate { .. } => Ended::Busy { reason },
        _ => match e.exit_code() {
            exit::FAILURE => Ended::Failed { reason },
            exit_code => Ended::Refused { exit_code, reason },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use updater::fetch::FileFetch;

    /// A small signed bundle made with the real writer.
    pub(crate) fn bundle(dir: &std::path::Path) -> (std::path::PathBuf, String) {
        use image_layout::keys::SecretKey;
        use image_layout::writer::{build, BuildOptions, PayloadInput};
        let key = SecretKey::from_seed([3; 32]);
        let out = dir.join("b.bundle");
        let mut opts = BuildOptions::new("2.0.0", 1, "test-board", OffsetDateTime::UNIX_EPOCH);
        opts.stack = serde_json::json!({"k3s": "1.31"});
        let payload = PayloadInput {
            name: "rootfs".into(),
            reader: Box::new(std::io::Cursor::new(vec![7u8; 100_000])),
            path: "rootfs.img".into(),
        };
        build(&opts, vec![payload], &[key], &out, &|_| {}).expect("build");
        let bytes = std::fs::read(&out).expect("read");
        let head = image_layout::reader::Head::read(&mut &bytes[..]).expect("head");
        (out, blake3::hash(&head.manifest_bytes).to_hex().to_string())
    }

    #[test]
    fn only_the_named_manifest_is_pinned_and_its_head_is_served_from_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, hash) = bundle(dir.path());
        let bytes = std::fs::read(&path).expect("read");
        let (mut pinned, stack) = Pinned::pin(Box::new(FileFetch::new(path.clone())), &hash).expect("pins");
        assert_eq!(stack, Some(serde_json::json!({"k3s": "1.31"})));
        // Reads across the head's end and after it are the file's bytes.
        for (start, end) in [(0u64, 10u64), (5, 4000.min(bytes.len() as u64)), (0, bytes.len() as u64)] {
            let mut got = Vec::new();
            pinned.open(start, Some(end)).expect("open").read_to_end(&mut got).expect("read");
            assert_eq!(got, bytes[start as usize..end as usize], "{start}..{end}");
        }
        let other = "0".repeat(64);
        let r = Pinned::pin(Box::new(FileFetch::new(path)), &other);
        assert!(matches!(r, Err(UpdateError::Incompatible { .. })), "{:?}", r.err());
    }

    #[test]
    fn updater_errors_are_classed_as_the_loop_needs() {
        let locked = UpdateError::Locked { path: "/data/edge-update/lock".into() };
        assert!(matches!(classify(&locked), Ended::Busy { .. }));
        let downgrade = UpdateError::Downgrade { found: 1, installed: 2 };
        assert!(matches!(classify(&downgrade), Ended::Refused { exit_code: exit::REFUSED, .. }));
        let io = UpdateError::fetch("http://x/b", 0, io::Error::other("reset"));
        assert!(matches!(classify(&io), Ended::Failed { .. }));
    }
}
