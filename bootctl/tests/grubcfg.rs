//! The committed `bootctl/grub/grub.cfg` is what `bootctl::grubcfg::generate` makes with the default config;
//! this fails when it is stale. `UPDATE_GOLDEN=1` rewrites it.

use std::path::Path;

#[test]
fn committed_grub_cfg_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grub/grub.cfg");
    let generated = bootctl::grubcfg::generate(&bootctl::grubcfg::GrubConfig::default());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).expect("write grub.cfg");
        return;
    }
    let committed = std::fs::read_to_string(&path).expect("bootctl/grub/grub.cfg is committed");
    assert!(
        committed == generated,
        "bootctl/grub/grub.cfg is stale: UPDATE_GOLDEN=1 cargo test -p bootctl --test grubcfg"
    );
}
