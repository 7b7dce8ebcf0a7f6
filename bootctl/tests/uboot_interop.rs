//! Interop with the Linux side of U-Boot's environment: `fw_printenv` and `fw_setenv` (libubootenv, package
//! libubootenv-tool) read what `bootctl::uboot` writes and write what it reads, single and redundant, one file or
//! two; `mkenvimage` (package u-boot-tools) makes images it reads, byte for byte the same as its own where the
//! padding agrees. The tools run on files in a temporary directory, each through a config file of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use bootctl::uboot::{
    decode_redundant, decode_single, encode, encode_redundant, encode_single, Access, Config, ConfigLine, CopyChoice,
    CopyId, Env, EnvStore, FlagScheme, Header, OtherCopy, Written, PAD_MKENVIMAGE,
};

const SIZE: usize = 0x2000;

/// Runs a tool and returns its stdout; panics with its stderr when it fails, and says which package it is in when
/// it cannot run.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} runs (packages libubootenv-tool and u-boot-tools; scripts/deps.sh installs them): {e}")
    });
    assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn env(vars: &[(&str, &str)]) -> Env {
    let mut e = Env::new();
    for (n, v) in vars {
        e.set(n, v).expect("valid variable");
    }
    e
}

/// What `fw_printenv` prints for `e`: every variable, sorted, one `name=value` line each.
fn listing(e: &Env) -> String {
    e.vars().map(|(n, v)| format!("{n}={v}\n")).collect()
}

/// The cases every direction runs: the empty environment, boot-state-like variables, and values with the
/// characters U-Boot scripts use.
const CASES: &[&[(&str, &str)]] = &[
    &[],
    &[("edge_active", "A"), ("edge_a_good", "1"), ("edge_a_tries", "0"), ("edge_b_good", "0"), ("edge_b_tries", "3")],
    &[("bootcmd", "run edge_boot; reset"), ("edge_boot", "load mmc 0:1 ${loadaddr} boot.scr && source ${loadaddr}")],
    &[("path", "C:\\boot\\x"), ("x", "=y="), ("empty", ""), ("utf8", "grüße"), ("two", "first\nsecond")],
    &[(".hidden", "dot"), ("Z", "upper sorts first"), ("a", "1")],
];

/// Where an environment lives in the temporary directory, with a config for the tools and for `EnvStore::open`.
struct Place {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    config: Config,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// One copy at a nonzero offset in a file.
    Single,
    /// Two copies in one file.
    RedundantOneFile,
    /// Two copies in two files, at different offsets.
    RedundantTwoFiles,
}

const KINDS: [Kind; 3] = [Kind::Single, Kind::RedundantOneFile, Kind::RedundantTwoFiles];

impl Place {
    /// Blank (zeroed) files and their config.
    fn new(kind: Kind) -> Place {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |name: &str, len: usize| {
            let p = dir.path().join(name);
            std::fs::write(&p, vec![0; len]).expect("write blank file");
            p
        };
        let line = |device: PathBuf, offset: i64| ConfigLine {
            device,
            offset,
            env_size: SIZE,
            sector_size: Some(0x200),
            n_sectors: None,
        };
        let config = match kind {
            Kind::Single => Config { primary: line(file("env.bin", 3 * SIZE), 0x4000), redundant: None },
            Kind::RedundantOneFile => {
                let f = file("env.bin", 2 * SIZE);
                Config { primary: line(f.clone(), 0), redundant: Some(line(f, SIZE as i64)) }
            }
            Kind::RedundantTwoFiles => Config {
                primary: line(file("a.bin", 0x1000 + SIZE), 0x1000),
                redundant: Some(line(file("b.bin", SIZE), 0)),
            },
        };
        let cfg = dir.path().join("fw_env.config");
        std::fs::write(&cfg, format!("# written by uboot_interop\n{config}")).expect("write config");
        assert_eq!(Config::load(&cfg).expect("our parser reads the config we give the tools"), config);
        Place { dir, cfg, config }
    }

    fn store(&self) -> EnvStore<bootctl::uboot::FileDevice> {
        EnvStore::open(&self.config, Access::ReadWrite).expect("open the environment")
    }

    /// `fw_printenv -c CONFIG`, with a default environment that does not exist, so that an environment it cannot
    /// read is an error rather than a silent fallback to `/etc/u-boot-initial-env`.
    fn fw_printenv(&self) -> String {
        let cfg = self.cfg.to_str().expect("utf-8 path");
        let no_default = self.dir.path().join("no-default-env");
        run("fw_printenv", &["-c", cfg, "-f", no_default.to_str().expect("utf-8 path")])
    }

    /// `fw_setenv -c CONFIG NAME [VALUE]`: no value deletes the variable.
    fn fw_setenv(&self, name: &str, value: Option<&str>) {
        let cfg = self.cfg.to_str().expect("utf-8 path");
        let no_default = self.dir.path().join("no-default-env");
        let mut args = vec!["-c", cfg, "-f", no_default.to_str().expect("utf-8 path"), name];
        args.extend(value);
        run("fw_setenv", &args);
    }

    /// The bytes of a copy, as they are on disk now.
    fn copy_bytes(&self, copy: CopyId) -> Vec<u8> {
        let line = match copy {
            CopyId::Primary => &self.config.primary,
            CopyId::Redundant => self.config.redundant.as_ref().expect("a redundant environment"),
        };
        let bytes = std::fs::read(&line.device).expect("read environment file");
        let start = usize::try_from(line.offset).expect("offset from the start");
        bytes[start..start + SIZE].to_vec()
    }

    /// Puts raw bytes into a copy.
    fn put(&self, copy: CopyId, block: &[u8]) {
        let line = match copy {
            CopyId::Primary => &self.config.primary,
            CopyId::Redundant => self.config.redundant.as_ref().expect("a redundant environment"),
        };
        let mut bytes = std::fs::read(&line.device).expect("read environment file");
        let start = usize::try_from(line.offset).expect("offset from the start");
        bytes[start..start + block.len()].copy_from_slice(block);
        std::fs::write(&line.device, bytes).expect("write environment file");
    }
}

#[test]
fn fw_printenv_lists_what_we_write() {
    for kind in KINDS {
        for (i, vars) in CASES.iter().enumerate() {
            let place = Place::new(kind);
            let mut store = place.store();
            let e = env(vars);
            // The first write of a redundant environment leaves the other copy blank (bad CRC); the second makes
            // both whole, the newer one in the redundant copy.
            store.write(&env(&[("first", "write")])).expect("write");
            if !matches!(kind, Kind::Single) {
                assert_eq!(place.fw_printenv(), "first=write\n", "{kind:?}, other copy blank");
            }
            store.write(&e).expect("write");
            assert_eq!(place.fw_printenv(), listing(&e), "{kind:?} case {i}");
        }
    }
}

#[test]
fn we_read_what_fw_setenv_writes() {
    for kind in KINDS {
        for (i, vars) in CASES.iter().enumerate() {
            let place = Place::new(kind);
            let mut store = place.store();
            let mut ours = env(vars);
            let first = store.write(&ours).expect("write");
            let steps: &[(&str, Option<&str>)] =
                &[("edge_b_tries", Some("2")), ("added", Some("new value")), ("edge_b_tries", None), ("a", Some("2"))];
            let mut last = first;
            for &(name, value) in steps {
                let before = store.read().expect("read").1;
                place.fw_setenv(name, value);
                match value {
                    Some(v) => ours.set(name, v).expect("valid"),
                    None => ours.unset(name),
                }
                let (theirs, choice) = store.read().expect("we read what fw_setenv wrote");
                assert_eq!(theirs, ours, "{kind:?} case {i}, after setting {name}");
                if let (Some(before), Some(choice)) = (before, choice) {
                    // fw_setenv wrote the copy that was not current, with the flags one higher, and left the
                    // current one alone, which is now the older valid copy.
                    assert_eq!(choice.current, before.current.other(), "{kind:?} case {i}");
                    assert_eq!(choice.flags, before.flags.wrapping_add(1), "{kind:?} case {i}");
                    assert_eq!(choice.other, OtherCopy::Valid { flags: before.flags }, "{kind:?} case {i}");
                    last = Written { copy: choice.current, flags: Some(choice.flags) };
                }
            }
            if !matches!(kind, Kind::Single) {
                assert_ne!(last, first, "fw_setenv moved the current copy");
            }
        }
    }
}

/// Our writer and `fw_setenv` take turns on one redundant environment, through the flags' wrap from 255 to 0: each
/// writes the copy the other did not, and each reads what the other wrote.
#[test]
fn our_writer_and_fw_setenv_take_turns_through_the_wrap() {
    for kind in [Kind::RedundantOneFile, Kind::RedundantTwoFiles] {
        let place = Place::new(kind);
        let start = env(&[("turn", "start")]);
        place.put(CopyId::Primary, &encode_redundant(&start, SIZE, 252).expect("fits"));
        let mut store = place.store();
        let mut expected = start;
        let mut flags = 252u8;
        let mut current = CopyId::Primary;
        for turn in 0..8 {
            let value = format!("turn {turn}");
            expected.set("turn", &value).expect("valid");
            let old = place.copy_bytes(current);
            if turn % 2 == 0 {
                let w = store.write(&expected).expect("write");
                assert_eq!(w, Written { copy: current.other(), flags: Some(flags.wrapping_add(1)) }, "{kind:?}");
            } else {
                place.fw_setenv("turn", Some(&value));
            }
            assert_eq!(place.copy_bytes(current), old, "{kind:?} turn {turn}: the current copy was not touched");
            flags = flags.wrapping_add(1);
            current = current.other();
            assert_eq!(place.fw_printenv(), listing(&expected), "{kind:?} turn {turn}");
            let (back, choice) = store.read().expect("read");
            assert_eq!(back, expected, "{kind:?} turn {turn}");
            let other = OtherCopy::Valid { flags: flags.wrapping_sub(1) };
            assert_eq!(choice, Some(CopyChoice { current, flags, other }), "{kind:?} turn {turn}");
        }
        assert_eq!(flags, 4, "the flags wrapped");
    }
}

/// A torn copy (bad CRC) is skipped by `fw_printenv` as by us, and `fw_setenv` then writes over the torn copy.
#[test]
fn a_torn_copy_is_skipped_by_both() {
    let place = Place::new(Kind::RedundantOneFile);
    let old = env(&[("v", "old")]);
    place.put(CopyId::Primary, &encode_redundant(&old, SIZE, 7).expect("fits"));
    let mut torn = encode_redundant(&env(&[("v", "new")]), SIZE, 8).expect("fits");
    torn[SIZE / 2..].copy_from_slice(&vec![0xaa; SIZE - SIZE / 2]);
    place.put(CopyId::Redundant, &torn);
    assert_eq!(place.fw_printenv(), "v=old\n");
    let mut store = place.store();
    let (back, choice) = store.read().expect("read");
    assert_eq!(back, old);
    assert_eq!(choice, Some(CopyChoice { current: CopyId::Primary, flags: 7, other: OtherCopy::BadCrc }));
    place.fw_setenv("v", Some("mended"));
    let (back, choice) = store.read().expect("read");
    assert_eq!(back, env(&[("v", "mended")]));
    assert_eq!(choice, Some(CopyChoice { current: CopyId::Redundant, flags: 8, other: OtherCopy::Valid { flags: 7 } }));
}

/// `mkenvimage`'s input: one `name=value` line each, a newline in a value escaped with a backslash.
fn mkenvimage_input(vars: &[(&str, &str)]) -> String {
    vars.iter().map(|(n, v)| format!("{n}={}\n", v.replace('\n', "\\\n"))).collect()
}

fn mkenvimage(dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> Vec<u8> {
    let txt = dir.join("env.txt");
    let img = dir.join("env.img");
    std::fs::write(&txt, mkenvimage_input(vars)).expect("write mkenvimage input");
    let size = format!("{SIZE:#x}");
    let mut all = vec!["-s", &size, "-o", img.to_str().expect("utf-8 path")];
    all.extend(args);
    all.push(txt.to_str().expect("utf-8 path"));
    run("mkenvimage", &all);
    std::fs::read(&img).expect("read mkenvimage output")
}

#[test]
fn we_read_what_mkenvimage_writes_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    // mkenvimage reads an empty input file out of bounds (`envptr[ep-1]` with ep = 0), so the empty case is left out.
    for (i, vars) in CASES.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
        let e = env(vars);
        let mut sorted: Vec<(&str, &str)> = vars.to_vec();
        sorted.sort();
        // Default padding 0xff; `-p 0` pads as U-Boot does; `-r` adds the flags byte, 1.
        let img = mkenvimage(dir.path(), &sorted, &[]);
        assert_eq!(decode_single(&img).expect("decodes"), e, "case {i}");
        assert!(img == encode(&e, SIZE, Header::Single, PAD_MKENVIMAGE).expect("fits"), "case {i}: 0xff padding");
        let img = mkenvimage(dir.path(), &sorted, &["-p", "0"]);
        assert!(img == encode_single(&e, SIZE).expect("fits"), "case {i}: zero padding");
        let img = mkenvimage(dir.path(), &sorted, &["-r"]);
        let (back, choice) = decode_redundant(&img, &img, FlagScheme::Incremental).expect("decodes");
        assert_eq!((back, choice.flags), (e.clone(), 1), "case {i}");
        let ours = encode(&e, SIZE, Header::Redundant { flags: 1 }, PAD_MKENVIMAGE).expect("fits");
        assert!(img == ours, "case {i}: redundant");
        // mkenvimage keeps its input's order; U-Boot sorts. Unsorted input reads back the same variables.
        let reversed: Vec<(&str, &str)> = sorted.iter().rev().copied().collect();
        let img = mkenvimage(dir.path(), &reversed, &["-p", "0"]);
        assert_eq!(decode_single(&img).expect("decodes"), e, "case {i}: reversed input");
    }
}

/// The committed vectors are what the tools read and make: `fw_printenv` lists `uboot-env.txt` from both binary
/// vectors, and `mkenvimage -p 0` of `uboot-env.txt` is `uboot-single.bin`.
#[test]
fn golden_vectors_agree_with_the_tools() {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let text = std::fs::read_to_string(vectors.join("uboot-env.txt")).expect("tests/vectors/uboot-env.txt");
    let dir = tempfile::tempdir().expect("tempdir");
    let no_default = dir.path().join("no-default-env");
    for (name, config) in
        [("uboot-single.bin", "{f} 0 0x2000\n"), ("uboot-redundant.bin", "{f} 0 0x2000\n{f} 0x2000 0x2000\n")]
    {
        let f = dir.path().join(name);
        std::fs::copy(vectors.join(name), &f).expect("copy vector");
        let cfg = dir.path().join(format!("{name}.config"));
        std::fs::write(&cfg, config.replace("{f}", f.to_str().expect("utf-8 path"))).expect("write config");
        let printed = run(
            "fw_printenv",
            &["-c", cfg.to_str().expect("utf-8 path"), "-f", no_default.to_str().expect("utf-8 path")],
        );
        assert_eq!(printed, text, "{name}");
    }
    let img = dir.path().join("mk.bin");
    let size = format!("{SIZE:#x}");
    let txt = vectors.join("uboot-env.txt");
    run("mkenvimage", &["-s", &size, "-p", "0", "-o", img.to_str().expect("utf-8"), txt.to_str().expect("utf-8")]);
    let single = std::fs::read(vectors.join("uboot-single.bin")).expect("tests/vectors/uboot-single.bin");
    assert!(std::fs::read(&img).expect("read") == single, "mkenvimage -p 0 of uboot-env.txt is uboot-single.bin");
}
