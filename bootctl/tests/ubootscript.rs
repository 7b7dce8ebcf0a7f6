//! The committed `bootctl/uboot/boot.cmd` is what `bootctl::ubootscript::generate` makes with the default config;
//! this fails when it is stale (`UPDATE_GOLDEN=1` rewrites it), and checks that `mkimage` compiles it into the
//! `boot.scr` U-Boot runs.

use std::path::Path;
use std::process::Command;

use bootctl::ubootscript::{generate, UbootConfig};

fn committed_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("uboot/boot.cmd")
}

#[test]
fn committed_boot_cmd_is_current() {
    let path = committed_path();
    let generated = generate(&UbootConfig::default()).expect("the default config is valid");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).expect("write boot.cmd");
        return;
    }
    let committed = std::fs::read_to_string(&path).expect("bootctl/uboot/boot.cmd is committed");
    assert!(
        committed == generated,
        "bootctl/uboot/boot.cmd is stale: UPDATE_GOLDEN=1 cargo test -p bootctl --test ubootscript"
    );
}

#[test]
fn mkimage_compiles_boot_cmd() {
    let dir = tempfile::tempdir().expect("scratch dir");
    let cmd = dir.path().join("boot.cmd");
    let scr = dir.path().join("boot.scr");
    std::fs::write(&cmd, generate(&UbootConfig::default()).expect("the default config is valid"))
        .expect("write boot.cmd");
    let output = Command::new("mkimage")
        .args(["-A", "arm64", "-T", "script", "-C", "none", "-n", "edge boot", "-d"])
        .arg(&cmd)
        .arg(&scr)
        .output()
        .expect("run mkimage (Debian package u-boot-tools)");
    assert!(output.status.success(), "mkimage failed: {}", String::from_utf8_lossy(&output.stderr));
    let image = std::fs::read(&scr).expect("read boot.scr");
    // A legacy image: the magic, then a 64-byte header and the script's length table before the script itself.
    assert_eq!(image[..4], [0x27, 0x05, 0x19, 0x56]);
    assert!(image.len() > 64 + std::fs::metadata(&cmd).expect("stat boot.cmd").len() as usize);
}
