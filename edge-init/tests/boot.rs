//! Early boot, the data partition and the unmounts of shutdown, for real, as root. A test that mounts anything
//! runs itself again inside a private mount namespace (`unshare --mount --propagation private`, the variable
//! `EDGE_INIT_BOOT_TEST_INSIDE` telling the inner run to act), so the host never sees its mounts, and it works in a
//! directory of its own under `CARGO_TARGET_TMPDIR`. Loop devices are detached when a test ends, even by a panic.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use edge_init::boot;
use edge_init::cmdline::PartSpec;
use edge_init::data::{self, DataState, How, Why};
use edge_init::paths::Paths;
use edge_init::services::DataConfig;
use edge_init::unmount::{self, Fate};
use platform::gpt::{self, Guid, Partition};
use platform::mountinfo::{self, Mount};
use platform::partition;

const INSIDE: &str = "EDGE_INIT_BOOT_TEST_INSIDE";

/// Outside the namespace: runs test `name` again in a private mount namespace (and those of `extra`, such as
/// `--uts`), checks that it passed, and returns true, so the caller returns. Inside: returns false.
fn outside(name: &str, extra: &[&str]) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return false;
    }
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .args(extra)
        .arg(std::env::current_exe().expect("the test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A misspelt name would run no test and pass: require exactly one.
    assert!(out.status.success() && stdout.contains("1 passed"), "{name} inside: {}\n{stdout}\n{stderr}", out.status);
    true
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("boot-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir")
}

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A loop device over an image file, detached on drop.
struct Loop(PathBuf);

impl Loop {
    fn attach(image: &Path, partitions: bool) -> Loop {
        let mut args = vec!["--find", "--show"];
        if partitions {
            args.push("--partscan");
        }
        args.push(path_str(image));
        let dev = Loop(PathBuf::from(sh("losetup", &args)));
        if partitions {
            // A kernel without a parser for the table scans nothing; partx reads the table itself and adds the
            // partitions with BLKPG (and fails, harmlessly, where the kernel already added them).
            let _ = Command::new("partx").arg("--add").arg(&dev.0).output();
        }
        dev
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("--detach").arg(&self.0).status();
    }
}

/// A process whose working directory keeps a mount busy, killed on drop.
struct Busy(Child);

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn image(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let path = dir.join(name);
    File::create(&path).and_then(|f| f.set_len(mib << 20)).expect("image file");
    path
}

fn config(device: PartSpec, mount: &Path) -> DataConfig {
    DataConfig {
        device,
        mount: mount.to_owned(),
        fstype: "ext4".into(),
        options: "noatime,nodev".into(),
        format: vec!["mkfs.ext4".into(), "-q".into()],
        fsck: vec!["e2fsck".into(), "-p".into()],
        wait: Duration::ZERO,
    }
}

/// This process's mount table.
fn mounts() -> Vec<Mount> {
    mountinfo::read(&Paths::default().mountinfo).expect("mountinfo")
}

/// The mount on `mount_point` (the topmost, if several).
fn mounted(mount_point: &Path) -> Option<Mount> {
    mounts().into_iter().rev().find(|m| m.mount_point == mount_point)
}

fn dev_spec(dev: &Loop) -> PartSpec {
    PartSpec::Path(path_str(&dev.0).to_owned())
}

#[test]
fn a_data_partition_mounts_read_write_and_keeps_what_is_written() {
    if outside("a_data_partition_mounts_read_write_and_keeps_what_is_written", &[]) {
        return;
    }
    let dir = scratch();
    let img = image(dir.path(), "data.img", 16);
    sh("mkfs.ext4", &["-q", "-F", path_str(&img)]);
    let dev = Loop::attach(&img, false);
    let mount = dir.path().join("data");
    let cfg = config(dev_spec(&dev), &mount);

    let state = data::mount_data(&cfg, None);
    assert_eq!(state, DataState::Mounted { device: dev.0.clone(), mount: mount.clone(), how: How::AsFound });
    assert_eq!(state.to_string(), format!("mounted {} on {}", dev.0.display(), mount.display()));
    let m = mounted(&mount).expect("mounted");
    assert_eq!((m.fstype.as_str(), m.source.as_str()), ("ext4", path_str(&dev.0)));
    assert!(m.options.split(',').any(|o| o == "rw") && m.options.contains("noatime") && m.options.contains("nodev"));
    let mut f = File::create(mount.join("kept")).expect("create on the data partition");
    f.write_all(b"survives").and_then(|()| f.sync_all()).expect("write");
    drop(f);

    // Mounted already: nothing is mounted twice.
    assert_eq!(data::mount_data(&cfg, None), state);
    assert_eq!(mounts().iter().filter(|m| m.mount_point == mount).count(), 1);

    let report = unmount::unmount_all(&Paths::default(), dir.path(), Duration::from_secs(5));
    assert_eq!(report.mounts, [(mount.clone(), Fate::Unmounted)]);
    assert!(mounted(&mount).is_none());
    assert_eq!(data::mount_data(&cfg, None), state);
    assert_eq!(fs::read(mount.join("kept")).expect("read it back"), b"survives");
    unmount::unmount_all(&Paths::default(), dir.path(), Duration::from_secs(5));
}

#[test]
fn a_blank_data_partition_is_formatted_once() {
    if outside("a_blank_data_partition_is_formatted_once", &[]) {
        return;
    }
    let dir = scratch();
    let img = image(dir.path(), "blank.img", 16);
    let dev = Loop::attach(&img, false);
    let mount = dir.path().join("data");
    let cfg = config(dev_spec(&dev), &mount);

    let state = data::mount_data(&cfg, None);
    assert_eq!(state, DataState::Mounted { device: dev.0.clone(), mount: mount.clone(), how: How::Formatted });
    assert_eq!(state.to_string(), format!("formatted and mounted {} on {}", dev.0.display(), mount.display()));
    assert_eq!(mounted(&mount).expect("mounted").fstype, "ext4");
    fs::write(mount.join("kept"), b"1").expect("write");

    unmount::unmount_all(&Paths::default(), dir.path(), Duration::from_secs(5));
    let again = data::mount_data(&cfg, None);
    assert!(matches!(again, DataState::Mounted { how: How::AsFound, .. }), "{again}");
    assert_eq!(fs::read(mount.join("kept")).expect("not formatted again"), b"1");
    unmount::unmount_all(&Paths::default(), dir.path(), Duration::from_secs(5));
}

#[test]
fn a_damaged_data_partition_is_left_untouched_and_a_tmpfs_takes_its_place() {
    if outside("a_damaged_data_partition_is_left_untouched_and_a_tmpfs_takes_its_place", &[]) {
        return;
    }
    let dir = scratch();
    let check = |name: &str, damage: &dyn Fn(&mut Vec<u8>), fsck: &[&str]| {
        let img = image(dir.path(), name, 16);
        sh("mkfs.ext4", &["-q", "-F", path_str(&img)]);
        let mut bytes = fs::read(&img).expect("read image");
        damage(&mut bytes);
        fs::write(&img, &bytes).expect("write image");
        let mount = dir.path().join(format!("{name}.mnt"));
        let dev = Loop::attach(&img, false);
        let cfg = DataConfig { fsck: fsck.iter().map(|s| s.to_string()).collect(), ..config(dev_spec(&dev), &mount) };

        let state = data::mount_data(&cfg, None);
        let DataState::Tmpfs { why: Why::Damaged { device, .. }, tmpfs_error: None, .. } = &state else {
            panic!("{name}: {state:?}");
        };
        assert_eq!(device, &dev.0);
        assert!(state.to_string().starts_with(&format!(
            "tmpfs on {} (damaged: {}: ",
            mount.display(),
            dev.0.display()
        )));
        assert!(state.to_string().ends_with("; left untouched)"), "{state}");
        assert_eq!(mounted(&mount).expect("a tmpfs").fstype, "tmpfs");
        fs::write(mount.join("scratch"), b"x").expect("the tmpfs is writable");
        assert_eq!(
            unmount::unmount_all(&Paths::default(), &mount, Duration::from_secs(5)).mounts,
            [(mount.clone(), Fate::Unmounted)]
        );
        drop(dev);
        assert!(fs::read(&img).expect("read image") == bytes, "{name}: the partition was written to");
    };
    let no_magic = |b: &mut Vec<u8>| b[1080..1082].copy_from_slice(&[0, 0]);
    // xorshift: garbage that is the same on every run.
    let garbage = |b: &mut Vec<u8>| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for byte in &mut b[..1 << 20] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
    };
    check("no-magic.img", &no_magic, &["e2fsck", "-p"]);
    check("garbage.img", &garbage, &["e2fsck", "-p"]);
    check("no-fsck.img", &no_magic, &[]);
}

#[test]
fn fsck_runs_once_when_the_data_partition_does_not_mount() {
    if outside("fsck_runs_once_when_the_data_partition_does_not_mount", &[]) {
        return;
    }
    let dir = scratch();
    let img = image(dir.path(), "data.img", 16);
    sh("mkfs.ext4", &["-q", "-F", path_str(&img)]);
    let mut bytes = fs::read(&img).expect("read image");
    bytes[1080..1082].copy_from_slice(&[0, 0]);
    fs::write(&img, &bytes).expect("write image");
    let dev = Loop::attach(&img, false);
    let mount = dir.path().join("data");
    // A stand-in for fsck that puts the ext4 magic back and counts its runs (the device comes last, as $0).
    let runs = dir.path().join("fsck-runs");
    let script = format!(
        "echo run >> {}; printf '\\123\\357' | dd of=\"$0\" bs=1 seek=1080 conv=notrunc status=none",
        runs.display()
    );
    let cfg = DataConfig { fsck: vec!["sh".into(), "-c".into(), script], ..config(dev_spec(&dev), &mount) };

    let state = data::mount_data(&cfg, None);
    assert_eq!(state, DataState::Mounted { device: dev.0.clone(), mount: mount.clone(), how: How::Repaired });
    assert_eq!(fs::read_to_string(&runs).expect("fsck ran"), "run\n");
    unmount::unmount_all(&Paths::default(), dir.path(), Duration::from_secs(5));
}

#[test]
fn a_missing_data_partition_gives_a_tmpfs() {
    if outside("a_missing_data_partition_gives_a_tmpfs", &[]) {
        return;
    }
    let dir = scratch();
    let mount = dir.path().join("data");
    let label = format!("edge-test-missing-{}", std::process::id());
    let cfg = config(PartSpec::Label(label.clone()), &mount);
    let state = data::mount_data(&cfg, None);
    let spec = format!("PARTLABEL={label}");
    assert_eq!(
        state,
        DataState::Tmpfs { mount: mount.clone(), why: Why::Missing { spec: spec.clone() }, tmpfs_error: None }
    );
    assert_eq!(state.to_string(), format!("tmpfs on {} (missing: {spec})", mount.display()));
    assert_eq!(mounted(&mount).expect("a tmpfs").fstype, "tmpfs");
    // edge.data= wins over the file (neither exists: a real device here could be another test's).
    let other = dir.path().join("other");
    let state = data::mount_data(
        &config(PartSpec::Path("/dev/edge-test-not-this".into()), &other),
        Some(&PartSpec::Path("/nonexistent".into())),
    );
    assert!(matches!(&state, DataState::Tmpfs { why: Why::Missing { spec }, .. } if spec == "/nonexistent"), "{state}");
    unmount::unmount_all(&Paths::default(), dir.path(), Duration::from_secs(5));
}

#[test]
fn a_data_partition_is_found_by_partlabel_and_partuuid() {
    if outside("a_data_partition_is_found_by_partlabel_and_partuuid", &[]) {
        return;
    }
    let dir = scratch();
    let label = format!("edge-test-{}", std::process::id());
    let mut seed = [0x5e; 16];
    seed[..4].copy_from_slice(&std::process::id().to_le_bytes());
    let unique = Guid::v4_from(seed);
    let img = dir.path().join("disk.img");
    let parts = [Partition {
        type_guid: gpt::LINUX_DATA_TYPE,
        unique_guid: unique,
        first_lba: 2048,
        last_lba: 2048 + 12 * 2048 - 1,
        name: label.clone(),
    }];
    let mut image = vec![0u8; 16 << 20];
    gpt::encode(Guid::v4_from([0xd1; 16]), (16 << 20) / gpt::SECTOR_BYTES, &parts).expect("a table").place(&mut image);
    fs::write(&img, image).expect("write disk image");
    let disk = Loop::attach(&img, true);
    let part = PathBuf::from(format!("{}p1", disk.0.display()));
    let (sys, dev) = (Path::new("/sys/class/block"), Path::new("/dev"));

    assert_eq!(partition::find(&PartSpec::Label(label.clone()), sys, dev), Some(part.clone()));
    let uuid = PartSpec::parse(&format!("PARTUUID={}", unique.to_string().to_uppercase())).expect("a spec");
    assert_eq!(partition::find(&uuid, sys, dev), Some(part.clone()));
    assert_eq!(partition::find(&PartSpec::Label(format!("{label}-no")), sys, dev), None);

    let mount = dir.path().join("data");
    let state = data::mount_data(&config(PartSpec::Label(label), &mount), None);
    assert_eq!(state, DataState::Mounted { device: part, mount, how: How::Formatted });
    unmount::unmount_all(&Paths::default(), dir.path(), Duration::from_secs(5));
}

#[test]
fn unmount_all_goes_in_reverse_order_and_makes_busy_mounts_read_only() {
    if outside("unmount_all_goes_in_reverse_order_and_makes_busy_mounts_read_only", &[]) {
        return;
    }
    let dir = scratch();
    let under = dir.path().join("root");
    let (a, b, c) = (under.join("a"), under.join("a/b"), under.join("c"));
    fs::create_dir_all(&a).expect("mkdir");
    sh("mount", &["-t", "tmpfs", "a", path_str(&a)]);
    fs::create_dir_all(&b).expect("mkdir");
    let img = image(dir.path(), "b.img", 16);
    sh("mkfs.ext4", &["-q", "-F", path_str(&img)]);
    let dev = Loop::attach(&img, false);
    sh("mount", &[path_str(&dev.0), path_str(&b)]);
    fs::create_dir_all(&c).expect("mkdir");
    sh("mount", &["-t", "tmpfs", "c", path_str(&c)]);
    // Outside `under`, the same ext4 mounted again: it must be neither unmounted nor made read-only.
    let outer = dir.path().join("outer");
    fs::create_dir_all(&outer).expect("mkdir");
    sh("mount", &[path_str(&dev.0), path_str(&outer)]);
    let busy = Busy(Command::new("sleep").arg("1000").current_dir(&b).spawn().expect("sleep"));

    let report = unmount::unmount_all(&Paths::default(), &under, Duration::from_secs(5));
    assert_eq!(report.mounts.len(), 3, "{report:?}");
    assert_eq!((&report.mounts[0], &report.mounts[1].0), (&(c.clone(), Fate::Unmounted), &b));
    // b's filesystem is also on `outer`: left read-write, and a with it (b still sits on it).
    assert!(matches!(&report.mounts[1].1, Fate::Left(why) if why.contains("outer")), "{report:?}");
    assert_eq!(report.mounts[2], (a.clone(), Fate::ReadOnly));
    assert!(!mounted(&outer).expect("outer").read_only());
    assert!(!mounted(&b).expect("b").read_only());
    assert!(mounted(&a).expect("a").read_only());

    // Without the outer mount, the busy ext4 becomes read-only.
    sh("umount", &[path_str(&outer)]);
    let report = unmount::unmount_all(&Paths::default(), &under, Duration::from_secs(5));
    assert_eq!(report.mounts, [(b.clone(), Fate::ReadOnly), (a.clone(), Fate::ReadOnly)]);
    assert!(mounted(&b).expect("b").read_only());

    drop(busy);
    let report = unmount::unmount_all(&Paths::default(), &under, Duration::from_secs(5));
    assert_eq!(report.mounts, [(b.clone(), Fate::Unmounted), (a.clone(), Fate::Unmounted)]);
    assert!(mounted(&a).is_none() && mounted(&b).is_none() && mounted(&c).is_none());
}

#[test]
fn switch_root_deletes_only_its_own_filesystem() {
    if outside("switch_root_deletes_only_its_own_filesystem", &[]) {
        return;
    }
    let dir = scratch();
    let root = dir.path().join("initramfs");
    for d in ["etc", "bin/sub", "newroot"] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    fs::write(root.join("init"), b"x").expect("write");
    fs::write(root.join("bin/sub/tool"), b"x").expect("write");
    sh("mount", &["-t", "tmpfs", "newroot", path_str(&root.join("newroot"))]);
    fs::write(root.join("newroot/init"), b"kept").expect("write");
    // Links out of the tree are deleted, not followed.
    let outside_dir = dir.path().join("outside");
    fs::create_dir_all(&outside_dir).expect("mkdir");
    fs::write(outside_dir.join("file"), b"kept").expect("write");
    symlink(&outside_dir, root.join("bin/link-to-dir")).expect("symlink");
    symlink(outside_dir.join("file"), root.join("etc/link-to-file")).expect("symlink");

    // init, bin/sub/tool, bin/sub, bin/link-to-dir, bin, etc/link-to-file, etc.
    assert_eq!(boot::clear_one_filesystem(&root), 7);
    let left: Vec<_> = fs::read_dir(&root).expect("read").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(left, ["newroot"]);
    assert_eq!(fs::read(root.join("newroot/init")).expect("the other filesystem is untouched"), b"kept");
    assert_eq!(fs::read(outside_dir.join("file")).expect("not followed"), b"kept");
    sh("umount", &[path_str(&root.join("newroot"))]);
}

#[test]
fn early_boot_mounts_what_is_missing_names_the_host_and_brings_up_lo() {
    if outside("early_boot_mounts_what_is_missing_names_the_host_and_brings_up_lo", &["--uts", "--net"]) {
        return;
    }
    let before = mounts();
    let count = |table: &[Mount], p: &str| table.iter().filter(|m| m.mount_point == Path::new(p)).count();
    let node = Paths::default();
    let mut failed = boot::mount_api_filesystems(&node);
    failed.extend(boot::name_and_loopback(&node, Some("edge-boot-test")));
    assert!(failed.is_empty(), "{failed:?}");
    let after = mounts();
    // What was there is not mounted again; what was not, is.
    for p in ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/run", "/tmp", "/sys/fs/cgroup"] {
        let was = count(&before, p);
        assert_eq!(count(&after, p), was.max(1), "{p}");
    }
    let cgroup2 = |t: &[Mount]| t.iter().filter(|m| m.fstype == "cgroup2").count();
    assert_eq!(cgroup2(&after), cgroup2(&before).max(1));
    assert_eq!(fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname"), "edge-boot-test\n");
    let lo = sh("ip", &["-o", "link", "show", "lo"]);
    assert!(lo.contains(",UP"), "{lo}");
    let root = boot::cgroup2_root(&node).expect("cgroup2 is mounted");
    assert!(root.is_dir(), "{}", root.display());
}

#[test]
fn sync_finishes_within_a_generous_deadline() {
    assert!(unmount::sync_with_deadline(Duration::from_secs(120)));
}
