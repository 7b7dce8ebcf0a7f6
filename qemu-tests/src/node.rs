//! The test node's assets, built once per test process and architecture: the kernel, initramfs and slot root images
//! of `qemu-tests/node/build.sh`, signed bundles of those images, and whole node disks made by `edge-image disk`
//! (a GRUB disk for x86_64, a U-Boot disk for aarch64).
//!
//! Everything lives in `target/qemu-node/` (x86_64) or `target/qemu-node-aarch64/` and is reused by later runs where
//! it can be: the downloaded kernel is cached, build.sh rebuilds the root images (they are reproducible), bundles and
//! disks are rebuilt per process.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::tools::{run, Tools};
use crate::vm::{Arch, Vm, VmOptions};

/// Bytes of one copy of the aarch64 node's boot state (the `env_size` of bootctl/uboot/boot.cmd and of the node's
/// `/etc/fw_env.config`).
pub const UBOOT_ENV_BYTES: usize = 0x2000;

/// The board string of the test node of `arch`, `edge-qemu-x86_64` or `edge-qemu-aarch64`: build.sh writes it into
/// the node's `update.toml`, and every good test bundle carries it.
pub fn compatible(arch: Arch) -> String {
    format!("edge-qemu-{arch}")
}

/// Waits for the next boot's kernel command line on `vm`'s console and returns the slot it boots (from `edge.slot=`;
/// `?` when the line names none).
pub fn next_boot(vm: &mut Vm, timeout: Duration) -> Result<char> {
    // Every architecture's kernel prints this line (x86_64's also prints an earlier `Command line:`).
    let line = vm.expect("Kernel command line:", timeout)?;
    let slot = line.split_whitespace().find_map(|w| w.strip_prefix("edge.slot=")).unwrap_or("?");
    Ok(slot.chars().next().unwrap_or('?'))
}

/// Waits until `edge-update boot`, the last of the test node's services, has run to its end in this boot and
/// succeeded: the update was reconciled, and a trial committed.
pub fn services_up(vm: &mut Vm, timeout: Duration) -> Result<()> {
    vm.expect("edge-init: update-boot: exited 0", timeout).map(drop)
}

/// Where the x86_64 assets are built: `target/qemu-node`.
pub fn assets_dir() -> PathBuf {
    assets_dir_of(Arch::X86_64)
}

/// Where the assets of `arch` are built: `target/qemu-node`, `target/qemu-node-aarch64`.
pub fn assets_dir_of(arch: Arch) -> PathBuf {
    let name = match arch {
        Arch::X86_64 => "qemu-node".to_owned(),
        other => format!("qemu-node-{other}"),
    };
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target").join(name)
}

/// A slot root image of build.sh: one of its variants at one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Starts its services and passes its health check.
    Good,
    /// Starts its services, fails its health check.
    Unhealthy,
    /// A critical service down for good: edge-init stops petting the watchdog.
    Hang,
    /// Crashes the kernel once its services run.
    Panic,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Good => "good",
            Variant::Unhealthy => "unhealthy",
            Variant::Hang => "hang",
            Variant::Panic => "panic",
        }
    }
}

/// A bundle to build from a root image.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BundleSpec {
    /// The root image's variant.
    pub variant: Variant,
    /// Its version (one build.sh made: 1.0.0, 2.0.0 or 3.0.0 for good, 2.0.0 or 3.0.0 for unhealthy, 2.0.0 for
    /// the others).
    pub version: String,
    /// The bundle's anti-rollback counter.
    pub security_version: u64,
    /// The bundle's board string: `None` for the node's own.
    pub compatible: Option<String>,
    /// The secret key it is signed with: `None` for the node's key, else a key of [`Assets::other_key`].
    pub key: Option<String>,
}

impl BundleSpec {
    /// A good image at `version`, signed with the node's key for the node's board.
    pub fn good(version: &str, security_version: u64) -> BundleSpec {
        BundleSpec {
            variant: Variant::Good,
            version: version.to_owned(),
            security_version,
            compatible: None,
            key: None,
        }
    }

    /// The same bundle, of another variant.
    pub fn variant(mut self, variant: Variant) -> BundleSpec {
        self.variant = variant;
        self
    }

    /// The same bundle, for another board.
    pub fn compatible(mut self, compatible: &str) -> BundleSpec {
        self.compatible = Some(compatible.to_owned());
        self
    }

    /// The same bundle, signed with a key the node does not trust (see [`Assets::other_key`]).
    pub fn signed_by(mut self, key: &str) -> BundleSpec {
        self.key = Some(key.to_owned());
        self
    }

    fn file_name(&self) -> String {
        let mut name = format!("{}-{}-sv{}", self.variant.name(), self.version, self.security_version);
        if let Some(compatible) = &self.compatible {
            name.push_str(&format!("-for-{compatible}"));
        }
        if let Some(key) = &self.key {
            name.push_str(&format!("-by-{key}"));
        }
        name + ".edgeb"
    }
}

/// A value made once per process on first use, or the report of why it could not be.
type Once<T> = OnceLock<std::result::Result<T, String>>;

/// The built assets of one test process, for one architecture.
pub struct Assets {
    arch: Arch,
    dir: PathBuf,
    tools: Arc<Tools>,
    fleet_tls: testkit::tls::TestCa,
    /// Bundles built so far by this process (built again by the next one, so they follow the code).
    built: Mutex<HashSet<String>>,
    boot_state: Once<PathBuf>,
    uboot_env: Once<PathBuf>,
}

impl Assets {
    /// The x86_64 node's assets: [`Assets::of`] `Arch::X86_64`.
    pub fn get() -> Result<&'static Assets> {
        Assets::of(Arch::X86_64)
    }

    /// The assets of the node the fleet scenarios run (`tests/fleet.rs`, `tests/fleet_rollout.rs`): arm64, or the
    /// architecture `EDGE_FLEET_ARCH` names. The agent and the endpoint do the same on either, and under TCG an arm64
    /// boot takes about a third of an x86_64 one (no OVMF, no kernel to decompress), which the suite's time needs.
    pub fn fleet() -> Result<&'static Assets> {
        let arch = match std::env::var("EDGE_FLEET_ARCH") {
            Ok(name) => Arch::from_name(&name).ok_or_else(|| Error::Assets {
                what: "the fleet scenarios' node".to_owned(),
                why: format!("EDGE_FLEET_ARCH={name:?} is neither x86_64 nor aarch64"),
            })?,
            Err(_) => Arch::Aarch64,
        };
        Assets::of(arch)
    }

    /// Runs build.sh for `arch` once per process and returns the assets; every later call returns the same (or the
    /// same error).
    pub fn of(arch: Arch) -> Result<&'static Assets> {
        static X86_64: Once<Assets> = OnceLock::new();
        static AARCH64: Once<Assets> = OnceLock::new();
        let once = match arch {
            Arch::X86_64 => &X86_64,
            Arch::Aarch64 => &AARCH64,
        };
        let built = once.get_or_init(|| Assets::build(arch).map_err(|err| crate::report(&err)));
        built.as_ref().map_err(|why| Error::Assets { what: format!("the {arch} test node"), why: why.clone() })
    }

    fn build(arch: Arch) -> Result<Assets> {
        let tools = Arc::new(Tools::find()?);
        let dir = assets_dir_of(arch);
        // The fleet's CA, made once and kept like the node's signing key: build.sh bakes its certificate into every
        // root image (/etc/edge/fleet-ca.pem); the endpoint the node is managed by serves the certificate it signed.
        let fleet_tls = testkit::tls::TestCa::open_or_create(&dir.join("fleet-ca"), "edge-node fleet");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/build.sh");
        run(Command::new("bash").arg(&script).arg(&dir).env("EDGE_NODE_ARCH", arch.name()))?;
        for sub in ["bundles", "disks", "keys"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|source| Error::WriteFile { path, source })?;
        }
        Ok(Assets {
            arch,
            dir,
            tools,
            fleet_tls,
            built: Mutex::new(HashSet::new()),
            boot_state: OnceLock::new(),
            uboot_env: OnceLock::new(),
        })
    }

    /// The node's architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The node's board string.
    pub fn compatible(&self) -> String {
        compatible(self.arch)
    }

    /// The host tools.
    pub fn tools(&self) -> Arc<Tools> {
        Arc::clone(&self.tools)
    }

    /// The assets folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One of the host's tools as build.sh installed it: `edge-image`, `edge-bootctl` or `busybox`.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.dir.join("host").join(name)
    }

    /// One of the node's binaries as build.sh installed it (`edge-init`, `edge-update`, ...), for the node's
    /// architecture.
    pub fn node_bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// The root image of `variant` at `version`.
    pub fn root_image(&self, variant: Variant, version: &str) -> PathBuf {
        self.dir.join(format!("root-{}-{version}.ext4", variant.name()))
    }

    /// The directory of trusted public keys the node ships (`/etc/edge/keys`).
    pub fn keyring(&self) -> PathBuf {
        self.dir.join("keys")
    }

    /// The fleet's CA, whose certificate every root image carries as `/etc/edge/fleet-ca.pem` (the one root
    /// `edge-agent` trusts), and a server certificate it signed for the address the guest reaches the host by.
    pub fn fleet_tls(&self) -> &testkit::tls::TestCa {
        &self.fleet_tls
    }

    /// The secret key of a key pair the node does not trust, made on first use.
    pub fn other_key(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir.join("untrusted");
        std::fs::create_dir_all(&dir).map_err(|source| Error::WriteFile { path: dir.clone(), source })?;
        let key = dir.join(format!("{name}.key"));
        if !key.exists() {
            run(Command::new(self.tool("edge-image")).arg("keygen").arg("-o").arg(dir.join(name)))?;
        }
        Ok(key)
    }

    /// The bundle of `spec`, built on first use in this process.
    pub fn bundle(&self, spec: &BundleSpec) -> Result<PathBuf> {
        let name = spec.file_name();
        let path = self.dir.join("bundles").join(&name);
        // One builder at a time: two tests asking for the same bundle get one build.
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if built.contains(&name) {
            return Ok(path);
        }
        let key = match &spec.key {
            None => self.dir.join("keys/node.key"),
            Some(other) => self.other_key(other)?,
        };
        let image = self.root_image(spec.variant, &spec.version);
        run(Command::new(self.tool("edge-image"))
            .arg("build")
            .arg("--payload")
            .arg(format!("rootfs={}", image.display()))
            .args(["--version", &spec.version, "--compatible", &spec.compatible.clone().unwrap_or(self.compatible())])
            .args(["--security-version", &spec.security_version.to_string()])
            .args(["--name", &format!("edge-node-{}", spec.variant.name())])
            .arg("--key")
            .arg(&key)
            .arg("-o")
            .arg(&path)
            .env("SOURCE_DATE_EPOCH", "1700000000"))?;
        built.insert(name);
        Ok(path)
    }

    /// The boot state of a node provisioned with slot A good and active, as `edge-bootctl provision --good A` writes
    /// it, made once per process: x86_64, a directory of `state0.env` and `state1.env` (GRUB's blocks for the ESP);
    /// aarch64, a file of the two copies of U-Boot's redundant environment (for the `edge-state` partition).
    pub fn boot_state(&self) -> Result<PathBuf> {
        // Made once however many tests ask at the same time: the first makes it, the others wait for it.
        let made = self.boot_state.get_or_init(|| self.provision().map_err(|err| crate::report(&err)));
        made.clone().map_err(|why| Error::Assets { what: "the provisioned boot state".to_owned(), why })
    }

    fn provision(&self) -> Result<PathBuf> {
        let werr = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::WriteFile { path, source }
        };
        let config = self.dir.join("boot-state.toml");
        let (state, text) = match self.arch {
            Arch::X86_64 => {
                let dir = self.dir.join("boot-state");
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).map_err(werr(&dir))?;
                (dir.clone(), format!("backend = \"grub\"\ngrub_state_dir = \"{}\"\n", dir.display()))
            }
            Arch::Aarch64 => {
                // Two copies of 8 KiB back to back, as the node's /etc/fw_env.config describes its edge-state
                // partition (build.sh); edge-bootctl writes into the file, so it is made first, of zeros.
                let file = self.dir.join("boot-state.env");
                let fw_env = self.dir.join("boot-state.fw_env.config");
                std::fs::write(&file, vec![0u8; 2 * UBOOT_ENV_BYTES]).map_err(werr(&file))?;
                let lines = format!("{f} 0x0 {n:#x}\n{f} {n:#x} {n:#x}\n", f = file.display(), n = UBOOT_ENV_BYTES);
                std::fs::write(&fw_env, lines).map_err(werr(&fw_env))?;
                (file, format!("backend = \"uboot\"\nuboot_fw_env_config = \"{}\"\n", fw_env.display()))
            }
        };
        std::fs::write(&config, text).map_err(werr(&config))?;
        run(Command::new(self.tool("edge-bootctl")).arg("--config").arg(&config).args(["provision", "--good", "A"]))?;
        Ok(state)
    }

    /// aarch64: U-Boot's environment flash with `bootdelay=0`, saved by U-Boot itself once per process
    /// ([`crate::uboot::save_env`]); every node boots a copy of it, so no boot waits for the autoboot countdown.
    pub fn uboot_env(&self) -> Result<PathBuf> {
        let made = self.uboot_env.get_or_init(|| {
            let path = self.dir.join("uboot-env.img");
            crate::uboot::UbootTools::find()
                .and_then(|tools| crate::uboot::save_env(&tools, &path, "setenv bootdelay 0"))
                .map(|()| path)
                .map_err(|err| crate::report(&err))
        });
        made.clone().map_err(|why| Error::Assets { what: "U-Boot's environment".to_owned(), why })
    }

    /// A node disk named `name` with `slot_a` written into slot A (good and active) and an empty slot B, built by
    /// `edge-image disk` from a layout file beside it: x86_64, with the committed GRUB script (bootctl/grub/grub.cfg)
    /// on the ESP; aarch64, with the committed U-Boot script (bootctl/uboot/boot.cmd) as `boot.scr`.
    pub fn disk(&self, name: &str, slot_a: &Path) -> Result<PathBuf> {
        self.disk_with(name, slot_a, None, false)
    }

    /// A data partition's seed holding a fleet enrollment token where the test image's agent reads it
    /// (`/data/edge-agent/fleet-token`), as a provisioning disk carries a site's token; made anew under `disks/`.
    pub fn token_seed(&self, name: &str, token: &str) -> Result<PathBuf> {
        let seed = self.dir.join("disks").join(name);
        let _ = std::fs::remove_dir_all(&seed);
        let file = seed.join("edge-agent/fleet-token");
        std::fs::create_dir_all(seed.join("edge-agent"))
            .and_then(|()| std::fs::write(&file, format!("{token}\n")))
            .map_err(|source| Error::WriteFile { path: file, source })?;
        Ok(seed)
    }

    /// As [`Assets::disk`], provisioned as a site's disk is: the data partition's files taken from `data_seed`
    /// (`edge-image disk`'s `data.seed`: a site's enrollment token), and the updater's journal recording slot A's
    /// bundle (`data.updater_dir`), so the node's first inventory names it.
    pub fn disk_seeded(&self, name: &str, slot_a: &Path, data_seed: Option<&Path>) -> Result<PathBuf> {
        self.disk_with(name, slot_a, data_seed, true)
    }

    fn disk_with(&self, name: &str, slot_a: &Path, data_seed: Option<&Path>, journal: bool) -> Result<PathBuf> {
        let dir = self.dir.join("disks");
        let layout = dir.join(format!("{name}.toml"));
        let disk = dir.join(format!("{name}.img"));
        let boot = match self.arch {
            Arch::X86_64 => format!(
                "[esp]\nsize = \"16MiB\"\ngrub_efi = \"{}\"\ngrub_cfg = \"{}\"\nboot_state = \"{}\"\n",
                self.dir.join("BOOTX64.EFI").display(),
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../bootctl/grub/grub.cfg").display(),
                self.boot_state()?.display(),
            ),
            Arch::Aarch64 => format!(
                "[uboot]\nboot_script = \"{}\"\nboot_state = \"{}\"\n",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../bootctl/uboot/boot.cmd").display(),
                self.boot_state()?.display(),
            ),
        };
        let text = format!(
            r#"compatible = "{compatible}"
keyring = "{keyring}"

{boot}
[slots]
size = "64MiB"
a = "{a}"

[data]
size = "32MiB"
{seed}{journal}"#,
            compatible = self.compatible(),
            keyring = self.keyring().display(),
            a = slot_a.display(),
            seed = data_seed.map(|s| format!("seed = \"{}\"\n", s.display())).unwrap_or_default(),
            // The node's update.toml has `data_dir = "/data/edge-update"`.
            journal = if journal { "updater_dir = \"edge-update\"\n" } else { "" },
        );
        std::fs::write(&layout, text).map_err(|source| Error::WriteFile { path: layout.clone(), source })?;
        run(Command::new(self.tool("edge-image")).arg("disk").arg(&layout).arg("-o").arg(&disk))?;
        Ok(disk)
    }

    /// The options of a node booting `disk`, with the host's `http_port` (on 127.0.0.1) forwarded to
    /// `http://10.0.2.100/` through the node's busybox `nc`.
    pub fn vm_options(&self, name: &str, disk: &Path, http_port: Option<u16>) -> Result<VmOptions> {
        // The console log's name is the test's, with the architecture when it is not x86_64 (the same scenario runs
        // on both).
        let name = match self.arch {
            Arch::X86_64 => name.to_owned(),
            other => format!("{name}-{other}"),
        };
        let mut options = VmOptions::new(name, disk);
        options.arch = self.arch;
        if self.arch == Arch::Aarch64 {
            options.uboot_env = Some(self.uboot_env()?);
        }
        options.http_port = http_port;
        options.relay = Some(self.tool("busybox"));
        Ok(options)
    }

    /// Starts a node booting `disk`, with the host's `http_port` (on 127.0.0.1) forwarded to `http://10.0.2.100/`.
    pub fn start(&self, name: &str, disk: &Path, http_port: Option<u16>) -> Result<Vm> {
        Vm::start(self.tools(), self.vm_options(name, disk, http_port)?)
    }
}
