//! Kernel modules at boot (docs/edge-init.md, "Early boot"): those services.toml lists and those of
//! `edge.modules=`, each after the modules it depends on (`modules.dep`), loaded with finit_module(2).
//! Parameters go to finit_module with the module: the kernel applies `name.param=` from its command line only to
//! built-in modules, and there is no modprobe on the node to do it for loadable ones.
//! A module of its own so that the parsing and the order are pure and tested without loading anything.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{chain, Error};
use crate::services::Module;
use crate::sys;

/// Where the running kernel's modules are: `<modules>/<release>`, `modules` being `paths::MODULES` on a node.
pub fn default_dir(modules: &Path) -> PathBuf {
    modules.join(sys::mount::kernel_release())
}

/// The suffixes of compressed modules, which the kernel decompresses itself when asked.
const COMPRESSED: [&str; 3] = [".xz", ".zst", ".gz"];

/// A module's name as the kernel knows it: `-` and `_` are the same, so `_` is kept.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module a file holds: `kernel/drivers/block/virtio-blk.ko.zst` is `virtio_blk`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let file = COMPRESSED.iter().find_map(|s| file.strip_suffix(s)).unwrap_or(file);
    normalize(file.strip_suffix(".ko").unwrap_or(file))
}

/// One line of `modules.dep`: a module's file and the files of every module it needs, directly or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// The module's name.
    pub name: String,
    /// Its file, relative to the modules directory.
    pub path: String,
    /// The files of the modules it needs, as depmod lists them.
    pub deps: Vec<String>,
}

/// Parses `modules.dep` (`kernel/a.ko: kernel/b.ko kernel/c.ko.xz`), in its order. A few thousand lines are
/// searched in a blink, so no map is built (nor linked).
pub fn parse_dep(text: &str) -> Vec<Dep> {
    text.lines()
        .filter_map(|line| {
            let (path, deps) = line.split_once(':')?;
            let path = path.trim();
            (!path.is_empty() && !path.starts_with('#')).then(|| Dep {
                name: module_name(path),
                path: path.to_owned(),
                deps: deps.split_whitespace().map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Parses `modules.builtin`: the files, one a line, of the modules built into the kernel; returns their names.
pub fn parse_builtin(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(module_name).collect()
}

/// One step of loading the wanted modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Load this file (relative to the modules directory) with these parameters.
    Load {
        /// The module's name.
        name: String,
        /// Its file.
        path: String,
        /// Its parameters, empty unless it was asked for with some.
        params: String,
    },
    /// It is built into the kernel: nothing to load.
    Builtin {
        /// The module's name.
        name: String,
    },
    /// Neither in `modules.dep` nor built in.
    Unknown {
        /// The module's name.
        name: String,
    },
}

/// The steps that load `wanted` in order: each module after those it needs (the deepest first, in `modules.dep`'s
/// order, as modprobe does), each once. A module's parameters go with it, whether it is loaded because it was asked
/// for or because another needs it.
pub fn plan(wanted: &[Module], deps: &[Dep], builtin: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut seen = Vec::new();
    for m in wanted {
        let name = normalize(&m.name);
        match deps.iter().find(|d| d.name == name) {
            Some(dep) => add(&name, &dep.path, deps, wanted, &mut seen, &mut steps),
            None if !seen.contains(&name) => {
                seen.push(name.clone());
                steps.push(if builtin.contains(&name) { Step::Builtin { name } } else { Step::Unknown { name } });
            }
            None => {}
        }
    }
    steps
}

fn add(name: &str, path: &str, deps: &[Dep], wanted: &[Module], seen: &mut Vec<String>, steps: &mut Vec<Step>) {
    // Marked before its dependencies are visited, so that a cycle (which depmod never writes) ends.
    if seen.iter().any(|s| s == name) {
        return;
    }
    seen.push(name.to_owned());
    for dep_path in deps.iter().find(|d| d.name == name).map(|d| d.deps.as_slice()).unwrap_or_default() {
        add(&module_name(dep_path), dep_path, deps, wanted, seen, steps);
    }
    // The first time a module is asked for decides its parameters.
    let params = wanted.iter().find(|m| normalize(&m.name) == name).map(|m| m.params.clone()).unwrap_or_default();
    steps.push(Step::Load { name: name.to_owned(), path: path.to_owned(), params });
}

/// What became of one module.
#[derive(Debug)]
pub enum Outcome {
    /// Loaded now.
    Loaded,
    /// It was loaded already.
    AlreadyLoaded,
    /// It is built into the kernel.
    Builtin,
    /// Neither in `modules.dep` nor built in.
    Unknown,
    /// Not loaded: why.
    Failed(Error),
}

/// Loads `modules` (services.toml's list, with parameters) and `extra` (`edge.modules=`, without), each after the
/// modules it needs, from `modules_dir` (normally [`default_dir`]). Nothing here is fatal: a missing directory, an
/// unknown module or one the kernel refuses is a warning, and the rest are still loaded. Returns each module and
/// its outcome, in the order they were tried.
pub fn load(
    modules: &[Module],
    extra: &[String],
    cmdline_params: &[(String, String)],
    modules_dir: &Path,
) -> Vec<(String, Outcome)> {
    let mut wanted = modules.to_vec();
    for name in extra {
        if !wanted.iter().any(|m| normalize(&m.name) == normalize(name)) {
            wanted.push(Module { name: name.clone(), params: String::new() });
        }
    }
    // `module.param=value` words of the kernel command line go after the parameters the image gave.
    for m in &mut wanted {
        for (_, p) in cmdline_params.iter().filter(|(n, _)| normalize(n) == normalize(&m.name)) {
            if !m.params.is_empty() {
                m.params.push(' ');
            }
            m.params.push_str(p);
        }
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    let dep_file = modules_dir.join("modules.dep");
    let deps = match fs::read_to_string(&dep_file) {
        Ok(text) => parse_dep(&text),
        Err(e) => {
            let names: Vec<&str> = wanted.iter().map(|m| m.name.as_str()).collect();
            let source = Arc::new(e);
            let why = || Error::ReadModuleDeps { path: dep_file.clone(), source: source.clone() };
            log::warn!("kernel modules: {}; not loading {}", chain(&why()), names.join(", "));
            return wanted.into_iter().map(|m| (normalize(&m.name), Outcome::Failed(why()))).collect();
        }
    };
    let builtin =
        fs::read_to_string(modules_dir.join("modules.builtin")).map(|t| parse_builtin(&t)).unwrap_or_default();
    let mut out = Vec::new();
    for step in plan(&wanted, &deps, &builtin) {
        let (name, outcome) = match step {
            Step::Load { name, path, params } => {
                let outcome = insert(&modules_dir.join(&path), &params);
                match &outcome {
                    Outcome::Loaded if params.is_empty() => log::info!("module {name} loaded"),
                    Outcome::Loaded => log::info!("module {name} loaded with {params}"),
                    Outcome::Failed(e) => log::warn!("module {name} not loaded: {}", chain(e)),
                    _ => log::debug!("module {name} was already loaded"),
                }
                (name, outcome)
            }
            Step::Builtin { name } => {
                log::debug!("module {name} is built into the kernel");
                (name, Outcome::Builtin)
            }
            Step::Unknown { name } => {
                log::warn!("module {name} is neither in {} nor built into the kernel", dep_file.display());
                (name, Outcome::Unknown)
            }
        };
        out.push((name, outcome));
    }
    out
}

/// finit_module(2) of one file; compressed files are left to the kernel to decompress.
fn insert(path: &Path, params: &str) -> Outcome {
    let compressed = COMPRESSED.iter().any(|s| path.as_os_str().as_encoded_bytes().ends_with(s.as_bytes()));
    let path = path.to_owned();
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(source) => return Outcome::Failed(Error::OpenModule { path, source }),
    };
    match sys::mount::finit_module(file.as_fd(), params, compressed) {
        Ok(()) => Outcome::Loaded,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Outcome::AlreadyLoaded,
        Err(source)
            if compressed && matches!(source.kind(), io::ErrorKind::Unsupported | io::ErrorKind::InvalidInput) =>
        {
            Outcome::Failed(Error::LoadCompressedModule { path, source })
        }
        Err(source) => Outcome::Failed(Error::LoadModule { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        let check = |path: &str, expected: &str| assert_eq!(module_name(path), expected, "{path}");
        check("kernel/drivers/block/virtio_blk.ko", "virtio_blk");
        check("kernel/drivers/block/virtio-blk.ko.zst", "virtio_blk");
        check("kernel/fs/ext4/ext4.ko.xz", "ext4");
        check("kernel/net/ipv4/tcp_bbr.ko.gz", "tcp_bbr");
        check("/lib/modules/6.6.0/kernel/lib/crc16.ko", "crc16");
        check("i6300esb", "i6300esb");
    }

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko.zst: kernel/fs/jbd2/jbd2.ko.zst kernel/fs/mbcache.ko.zst kernel/lib/crc16.ko.zst
kernel/fs/jbd2/jbd2.ko.zst: kernel/lib/crc16.ko.zst
kernel/fs/mbcache.ko.zst:
kernel/lib/crc16.ko.zst:
# a comment: ignored
kernel/drivers/watchdog/i6300esb.ko:
kernel/drivers/net/virtio-net.ko: kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/a.ko: kernel/b.ko
kernel/b.ko: kernel/a.ko
";

    #[test]
    fn modules_dep_lines() {
        let deps = parse_dep(DEP);
        let names: Vec<&str> = deps.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["ext4", "jbd2", "mbcache", "crc16", "i6300esb", "virtio_net", "net_failover", "failover", "a", "b"]
        );
        let ext4 = &deps[0];
        assert_eq!(ext4.path, "kernel/fs/ext4/ext4.ko.zst");
        assert_eq!(ext4.deps, ["kernel/fs/jbd2/jbd2.ko.zst", "kernel/fs/mbcache.ko.zst", "kernel/lib/crc16.ko.zst"]);
        assert_eq!(deps[2].deps, Vec::<String>::new());
        assert_eq!(deps[5].path, "kernel/drivers/net/virtio-net.ko");
        let builtin = parse_builtin("kernel/drivers/block/virtio_blk.ko\n\nkernel/fs/ext4/ext4.ko\n");
        assert_eq!(builtin, ["virtio_blk", "ext4"]);
    }

    #[test]
    fn load_order() {
        let deps = parse_dep(DEP);
        let builtin = parse_builtin("kernel/drivers/block/virtio_blk.ko\n");
        let check = |wanted: &[&str], expected: &[&str]| {
            let wanted: Vec<Module> = wanted
                .iter()
                .map(|w| {
                    let (name, params) = w.split_once(' ').unwrap_or((w, ""));
                    Module { name: name.into(), params: params.into() }
                })
                .collect();
            let got: Vec<String> = plan(&wanted, &deps, &builtin)
                .into_iter()
                .map(|s| match s {
                    Step::Load { name, params, .. } if params.is_empty() => name,
                    Step::Load { name, params, .. } => format!("{name} {params}"),
                    Step::Builtin { name } => format!("builtin {name}"),
                    Step::Unknown { name } => format!("unknown {name}"),
                })
                .collect();
            assert_eq!(got, expected, "{wanted:?}");
        };
        check(&[], &[]);
        check(&["ext4"], &["crc16", "jbd2", "mbcache", "ext4"]);
        check(&["jbd2", "ext4"], &["crc16", "jbd2", "mbcache", "ext4"]);
        check(&["virtio-net"], &["failover", "net_failover", "virtio_net"]);
        check(&["i6300esb soft_noboot=1 heartbeat=10"], &["i6300esb soft_noboot=1 heartbeat=10"]);
        // Parameters belong to the module named, also when it is loaded first as another's dependency.
        check(&["ext4", "crc16 x=1"], &["crc16 x=1", "jbd2", "mbcache", "ext4"]);
        check(&["virtio_blk", "nosuch", "nosuch", "mbcache"], &["builtin virtio_blk", "unknown nosuch", "mbcache"]);
        check(&["a"], &["b", "a"]);
    }

    #[test]
    fn nothing_is_loaded_without_a_modules_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("6.6.0-none");
        let wanted = [Module { name: "i6300esb".into(), params: "heartbeat=10".into() }];
        let got = load(&wanted, &["virtio-net".into(), "i6300esb".into()], &[], &missing);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|(_, o)| matches!(o, Outcome::Failed(_))), "{got:?}");
        assert_eq!(got[1].0, "virtio_net");
        assert!(load(&[], &[], &[], &missing).is_empty());
        // Built-in and unknown modules are reported without calling the kernel.
        fs::write(dir.path().join("modules.dep"), DEP).expect("write");
        fs::write(dir.path().join("modules.builtin"), "kernel/drivers/block/virtio_blk.ko\n").expect("write");
        let got = load(&[], &["virtio-blk".into(), "nosuch".into()], &[], dir.path());
        assert!(
            matches!(got.as_slice(), [(a, Outcome::Builtin), (b, Outcome::Unknown)] if a == "virtio_blk" && b == "nosuch"),
            "{got:?}"
        );
    }
}
