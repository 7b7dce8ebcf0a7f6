//! The U-Boot script that applies the slot rules at boot: generated here from the same names and rules as `backend`
//! and `rules`, committed as `bootctl/uboot/boot.cmd` (compiled with `mkimage -A arm64 -T script -C none` into the
//! `boot.scr` that U-Boot's distro boot runs), and checked against `rules` in real U-Boot by `qemu-tests`; it mirrors
//! `grubcfg`, docs/boot-state.md, "GRUB script".
//!
//! The state lives in a raw area of the boot disk as a redundant U-Boot environment (`uboot`): two copies of
//! `env_size` bytes back to back, each a CRC-32, a flags byte (the incremental scheme, [`FlagScheme::Incremental`])
//! and the variables, exactly what `fw_printenv` and `fw_setenv` read and write with an `/etc/fw_env.config` of two
//! lines, the area's device at offset 0 and at offset `env_size`. The script does not use U-Boot's own environment
//! storage: it reads the area with `<interface> read`, checks each copy's CRC with `env import -c` (after moving the
//! CRC next to the data, since `env import -c` knows no flags byte), picks the copy as U-Boot and `decode_redundant`
//! do, imports only the state variables, and before a trial boot writes the next state into the other copy with
//! `env export -c` and `<interface> write`. The area holds the state variables only: a save writes those and no
//! others.
//!
//! This is a module of its own because the script is a second implementation of `BootState::boot` in another
//! language, and the one place that knows U-Boot's commands.
//!
//! [`FlagScheme::Incremental`]: crate::uboot::FlagScheme::Incremental

use crate::uboot::CRC_LEN;

/// Bytes of one block of the state area's device, as `<interface> read` counts them.
pub const BLOCK_BYTES: u64 = 512;

/// The state variables, in the order U-Boot and `uboot::Env` store them (sorted by name).
pub const VARS: [&str; 6] =
    ["edge_a_good", "edge_a_tries", "edge_active", "edge_b_good", "edge_b_tries", "edge_last_good"];

/// Where the generated script finds things; the defaults match the U-Boot disk `edge-image disk` builds with its
/// default sizes (docs/disk-image.md, "U-Boot boards": partition 1 `edge-boot`, FAT with `boot.scr`, from 1 MiB;
/// partition 2 `edge-state`, the state area, from 5 MiB; partitions 3 and 4 the slots, each an ext4 root holding its
/// own kernel and initramfs under `/boot`), and the disks `qemu-tests` builds for its rule checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbootConfig {
    /// U-Boot's block interface of the boot disk (`virtio`, `mmc`); its `read`, `write` and `dev` commands are used.
    pub interface: String,
    /// The device number on that interface.
    pub device: u32,
    /// First block (of [`BLOCK_BYTES`]) of the state area on the whole device: copy 0 starts here, copy 1 right
    /// after it.
    pub state_block: u64,
    /// Bytes of one copy (a multiple of [`BLOCK_BYTES`]; `fw_env.config`'s environment size).
    pub env_size: u64,
    /// Free RAM for three copies (the two read, the one written); the default is inside the first 512 MiB of a
    /// QEMU `virt` machine and clear of the load addresses U-Boot sets.
    pub scratch_addr: u64,
    /// Partition number of slot A's root filesystem on the same device.
    pub slot_a_part: u32,
    /// Partition number of slot B's root filesystem.
    pub slot_b_part: u32,
    /// Kernel `root=` of slot A; also given as `edge.root=`, the root an initramfs's `edge-init` switches to.
    pub slot_a_root: String,
    /// Kernel `root=` of slot B.
    pub slot_b_root: String,
    /// Kernel (arm64 `Image`, uncompressed, as Debian's arm64 `vmlinuz` is) path inside a slot.
    pub kernel: String,
    /// Device tree path inside a slot (empty: the firmware's own, `${fdtcontroladdr}`).
    pub fdt: String,
    /// Initramfs path inside a slot (empty: none).
    pub initrd: String,
    /// Extra kernel arguments.
    pub cmdline: String,
}

impl Default for UbootConfig {
    fn default() -> UbootConfig {
        UbootConfig {
            interface: "virtio".to_owned(),
            device: 0,
            state_block: 0x2800,
            env_size: 0x2000,
            scratch_addr: 0x5000_0000,
            slot_a_part: 3,
            slot_b_part: 4,
            slot_a_root: "PARTLABEL=edge-slot-a".to_owned(),
            slot_b_root: "PARTLABEL=edge-slot-b".to_owned(),
            kernel: "/boot/vmlinuz".to_owned(),
            fdt: String::new(),
            initrd: "/boot/initrd.img".to_owned(),
            cmdline: "ro console=ttyAMA0,115200 panic=10".to_owned(),
        }
    }
}

/// Generates the script (`boot.cmd`, the source `mkimage` compiles).
///
/// Refused when the environment size is not a whole number of blocks of at least 1 KiB (the script reads and writes
/// whole blocks, so any other size would read and write the wrong bytes).
pub fn generate(c: &UbootConfig) -> crate::error::Result<String> {
    if c.env_size < 1024 || !c.env_size.is_multiple_of(BLOCK_BYTES) {
        return Err(crate::error::Error::Config {
            path: "UbootConfig".into(),
            detail: format!("env_size {:#x} is not a multiple of {BLOCK_BYTES} bytes of at least 1 KiB", c.env_size),
        });
    }
    check_words(c)?;
    let vars = VARS.join(" ");
    let size = c.env_size;
    let n_blocks = size / BLOCK_BYTES;
    let crc = CRC_LEN as u64;
    // Copy N is read to `read[N]`; a copy to be written is built at `out`; `tmp` holds a CRC while it moves.
    let read = [c.scratch_addr, c.scratch_addr + size];
    let out = c.scratch_addr + 2 * size;
    let tmp = c.scratch_addr + 3 * size;
    let blk = [c.state_block, c.state_block + n_blocks];
    let iface = &c.interface;
    let dev = c.device;

    let clear: String = VARS.iter().map(|v| format!("setenv {v}\n")).collect();
    let mut check = String::new();
    for (n, at) in read.into_iter().enumerate() {
        check.push_str(&format!(
            "# Copy {n}: flags byte, then the CRC moved next to the data, where env import -c verifies it.\n\
             setexpr.b edge_f{n} *{flags:#x}\n\
             cp.b {at:#x} {tmp:#x} {crc}\n\
             cp.b {tmp:#x} {crc_at:#x} {crc}\n\
             {clear}\
             if env import -c {crc_at:#x} {len:#x} {vars}; then setenv edge_ok{n} 1; else setenv edge_ok{n} 0; fi\n",
            flags = at + crc,
            crc_at = at + 1,
            len = size - 1,
        ));
    }
    let mut import = String::new();
    for n in 0..2 {
        import.push_str(&format!(
            "    if test \"$edge_copy\" = {n}; then env import -c {at:#x} {len:#x} {vars}; setenv edge_flags $edge_f{n}; \
             setenv edge_target {other}; setenv edge_target_block {tb:#x}; fi\n",
            at = read[n] + 1,
            len = size - 1,
            other = 1 - n,
            tb = blk[1 - n],
        ));
    }
    let check_value = |name: &str, values: &[&str]| {
        let cond: Vec<String> = values.iter().map(|v| format!("test \"${name}\" != {v}")).collect();
        format!("    if {}; then setenv edge_valid 0; fi\n", cond.join(" && "))
    };
    let digits: Vec<String> = (0..=crate::rules::MAX_TRIES).map(|t| t.to_string()).collect();
    let digits: Vec<&str> = digits.iter().map(String::as_str).collect();
    let validate = [
        // Lower-case letters read as slots too (`rules::Slot::parse`); they are saved upper-case.
        "    if test \"$edge_active\" = a; then setenv edge_active A; fi\n".to_owned(),
        "    if test \"$edge_active\" = b; then setenv edge_active B; fi\n".to_owned(),
        "    if test \"$edge_last_good\" = a; then setenv edge_last_good A; fi\n".to_owned(),
        "    if test \"$edge_last_good\" = b; then setenv edge_last_good B; fi\n".to_owned(),
        check_value("edge_active", &["A", "B"]),
        check_value("edge_last_good", &["A", "B"]),
        check_value("edge_a_good", &["0", "1"]),
        check_value("edge_b_good", &["0", "1"]),
        check_value("edge_a_tries", &digits),
        check_value("edge_b_tries", &digits),
    ]
    .concat();

    let load = |part: u32| {
        let mut s = format!("    load {iface} {dev}:{part} ${{kernel_addr_r}} {}\n", c.kernel);
        if c.fdt.is_empty() {
            s.push_str("    setenv edge_fdt ${fdtcontroladdr}\n");
        } else {
            s.push_str(&format!("    load {iface} {dev}:{part} ${{fdt_addr_r}} {}\n", c.fdt));
            s.push_str("    setenv edge_fdt ${fdt_addr_r}\n");
        }
        if c.initrd.is_empty() {
            s.push_str("    setenv edge_initrd -\n");
        } else {
            s.push_str(&format!("    load {iface} {dev}:{part} ${{ramdisk_addr_r}} {}\n", c.initrd));
            s.push_str("    setenv edge_initrd ${ramdisk_addr_r}:${filesize}\n");
        }
        s
    };

    Ok(format!(
        r#"# Generated by bootctl::ubootscript: do not edit; regenerate with UPDATE_GOLDEN=1 cargo test -p bootctl --test ubootscript.
# Applies the slot rules of docs/boot-state.md: read the redundant environment in the state area, take the copy
# U-Boot would (a good CRC, then the higher flags, 255 wrapping to 0), boot the first slot in order that is good or
# has tries left, taking one try off (saved to the other copy with the next flags first) before booting a slot that
# is not good, and boot the last good slot when no slot qualifies.
# Set edge_test=1 before this script runs to print the decision and power off instead of booting.

setenv edge_copy none
setenv edge_kind nostate
setenv edge_slot A
setenv edge_saved
setenv edge_ok0 0
setenv edge_ok1 0

# Both copies, {n2} blocks from block {blk0:#x}.
{iface} dev {dev}
if {iface} read {read0:#x} {blk0:#x} {n2:#x}; then
{check}
    # The current copy, as U-Boot's env_check_redund picks it.
    if test $edge_ok0 = 1 && test $edge_ok1 = 1; then
        setenv edge_copy 0
        if test 0x$edge_f0 -eq 0xff && test 0x$edge_f1 -eq 0; then setenv edge_copy 1
        elif test 0x$edge_f0 -eq 0 && test 0x$edge_f1 -eq 0xff; then setenv edge_copy 0
        elif test 0x$edge_f1 -gt 0x$edge_f0; then setenv edge_copy 1
        fi
    elif test $edge_ok0 = 1; then setenv edge_copy 0
    elif test $edge_ok1 = 1; then setenv edge_copy 1
    fi
fi

if test "$edge_copy" != none; then
    # Reload the current copy: its variables are the state. Every value is checked as strictly as edge-bootctl does.
{clear_indented}{import}    setenv edge_valid 1
{validate}fi

if test "$edge_copy" != none && test "$edge_valid" = 1; then
    if test "$edge_active" = A; then setenv edge_order "A B"; else setenv edge_order "B A"; fi
    setenv edge_kind fallback
    setenv edge_slot "$edge_last_good"
    setenv edge_a_tries_read "$edge_a_tries"
    setenv edge_b_tries_read "$edge_b_tries"
    for s in $edge_order; do
        if test "$edge_kind" = fallback; then
            if test "$s" = A; then setenv edge_good "$edge_a_good"; setenv edge_tries "$edge_a_tries"; fi
            if test "$s" = B; then setenv edge_good "$edge_b_good"; setenv edge_tries "$edge_b_tries"; fi
            if test "$edge_good" = 1; then
                setenv edge_kind good
                setenv edge_slot "$s"
            elif test "$edge_tries" != 0; then
                if test "$s" = A; then setexpr edge_a_tries $edge_a_tries - 1; fi
                if test "$s" = B; then setexpr edge_b_tries $edge_b_tries - 1; fi
                # The other copy gets the state with the next flags (mw.b keeps the low byte: 0xff + 1 wraps to 0).
                # env export -c puts the CRC at the address given and the data right after it, so it is written one
                # byte in and the CRC moved to the front, leaving byte 4 for the flags: the layout fw_setenv writes.
                setexpr edge_next_flags $edge_flags + 1
                env export -c -s {len:#x} {out1:#x} {vars}
                cp.b {out1:#x} {tmp:#x} {crc}
                cp.b {tmp:#x} {out:#x} {crc}
                mw.b {out_flags:#x} $edge_next_flags
                # Durability: a power cut before this write leaves the current copy, so the try is not taken; one
                # during it leaves the other copy with a bad CRC, which the next boot skips, reading the current one.
                # A try that cannot be saved is not taken: the slot is passed over, never booted on an unrecorded try.
                if {iface} write {out:#x} $edge_target_block {n1:#x}; then
                    setenv edge_kind trial
                    setenv edge_slot "$s"
                    setenv edge_saved $edge_target
                else
                    echo "EDGE-WARNING cannot save the boot state to copy $edge_target; slot $s is not tried"
                    setenv edge_a_tries "$edge_a_tries_read"
                    setenv edge_b_tries "$edge_b_tries_read"
                fi
            fi
        fi
    done
fi

if test "$edge_test" = 1; then
    echo "EDGE-DECISION copy=$edge_copy kind=$edge_kind slot=$edge_slot saved=$edge_saved"
    poweroff
fi

if test "$edge_slot" = A; then
{load_a}    setenv bootargs "root={a_root} edge.root={a_root} edge.slot=A {cmdline}"
else
{load_b}    setenv bootargs "root={b_root} edge.root={b_root} edge.slot=B {cmdline}"
fi
echo "EDGE-BOOT slot=$edge_slot kind=$edge_kind bootargs=$bootargs"
booti ${{kernel_addr_r}} $edge_initrd $edge_fdt
"#,
        read0 = read[0],
        blk0 = blk[0],
        n1 = n_blocks,
        n2 = 2 * n_blocks,
        check = indent(&check),
        clear_indented = indent(&clear),
        len = size - 1,
        out1 = out + 1,
        out_flags = out + crc,
        load_a = load(c.slot_a_part),
        load_b = load(c.slot_b_part),
        a_root = c.slot_a_root,
        b_root = c.slot_b_root,
        cmdline = c.cmdline,
    ))
}

/// Refuses a config whose words would change the script's own syntax: the interface is a bare name, paths are
/// absolute (or empty where none is allowed), and no value holds a quote, `$`, `;`, a backslash or a control
/// character, which U-Boot's shell would read as its own.
fn check_words(c: &UbootConfig) -> crate::error::Result<()> {
    let bad = |key: &str, value: &str, why: &str| {
        Err(crate::error::Error::Config { path: "UbootConfig".into(), detail: format!("{key} {value:?} {why}") })
    };
    if c.interface.is_empty() || !c.interface.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
        return bad("interface", &c.interface, "is not a U-Boot interface name such as virtio or mmc");
    }
    let words = [
        ("slot_a_root", &c.slot_a_root, false),
        ("slot_b_root", &c.slot_b_root, false),
        ("kernel", &c.kernel, false),
        ("initrd", &c.initrd, true),
        ("fdt", &c.fdt, true),
        ("cmdline", &c.cmdline, true),
    ];
    for (key, value, may_be_empty) in words {
        if value.is_empty() && !may_be_empty {
            return bad(key, value, "must not be empty");
        }
        if value.chars().any(|ch| ch.is_control() || matches!(ch, '"' | '$' | ';' | '\\' | '\'')) {
            return bad(key, value, "holds a quote, $, ;, a backslash or a control character");
        }
        let is_path = matches!(key, "kernel" | "initrd" | "fdt");
        if is_path && !value.is_empty() && (!value.starts_with('/') || value.contains(char::is_whitespace)) {
            return bad(key, value, "is not an absolute path without spaces");
        }
        if key.starts_with("slot_") && value.contains(char::is_whitespace) {
            return bad(key, value, "is not one word");
        }
    }
    Ok(())
}

/// `text` with every line indented one level.
fn indent(text: &str) -> String {
    text.lines().map(|l| if l.is_empty() { "\n".to_owned() } else { format!("    {l}\n") }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_are_sorted_as_the_environment_stores_them() {
        let mut sorted = VARS;
        sorted.sort_unstable();
        assert_eq!(sorted, VARS);
    }

    #[test]
    fn script_reads_both_copies_and_writes_one() {
        let c = UbootConfig { state_block: 0x100, env_size: 0x4000, ..UbootConfig::default() };
        let s = generate(&c).expect("a valid config");
        assert!(s.contains("virtio read 0x50000000 0x100 0x40;"), "{s}");
        assert!(s.contains("env import -c 0x50004001 0x3fff edge_a_good"), "{s}");
        assert!(s.contains("setenv edge_target_block 0x120;"), "{s}");
        assert!(s.contains("virtio write 0x50008000 $edge_target_block 0x20;"), "{s}");
    }

    #[test]
    fn device_tree_and_initramfs_come_from_the_slot_when_configured() {
        let c = UbootConfig {
            fdt: "/boot/virt.dtb".to_owned(),
            initrd: "/boot/initrd".to_owned(),
            ..UbootConfig::default()
        };
        let s = generate(&c).expect("a valid config");
        assert!(s.contains("load virtio 0:4 ${fdt_addr_r} /boot/virt.dtb\n"), "{s}");
        assert!(s.contains("load virtio 0:3 ${ramdisk_addr_r} /boot/initrd\n    setenv edge_initrd ${ramdisk_addr_r}:${filesize}\n"), "{s}");
        assert!(!s.contains("fdtcontroladdr"), "{s}");
        let none = generate(&UbootConfig { initrd: String::new(), ..UbootConfig::default() }).expect("valid");
        assert!(none.contains("setenv edge_initrd -\n") && !none.contains("ramdisk_addr_r"), "{none}");
    }

    #[test]
    fn words_that_would_change_the_script_are_refused() {
        let refused = |c: UbootConfig| matches!(generate(&c), Err(crate::error::Error::Config { .. }));
        let d = UbootConfig::default;
        assert!(refused(UbootConfig { interface: "mmc 0; reset".into(), ..d() }));
        assert!(refused(UbootConfig { interface: String::new(), ..d() }));
        assert!(refused(UbootConfig { kernel: "boot/vmlinuz".into(), ..d() }));
        assert!(refused(UbootConfig { kernel: String::new(), ..d() }));
        assert!(refused(UbootConfig { initrd: "/boot/a b".into(), ..d() }));
        assert!(refused(UbootConfig { cmdline: "quiet\" root=/dev/sda".into(), ..d() }));
        assert!(refused(UbootConfig { cmdline: "a\nreset".into(), ..d() }));
        assert!(refused(UbootConfig { slot_a_root: "PARTLABEL=a $x".into(), ..d() }));
        assert!(!refused(UbootConfig {
            interface: "mmc".into(),
            initrd: String::new(),
            fdt: "/boot/a.dtb".into(),
            ..d()
        }));
    }

    #[test]
    fn sizes_that_are_not_whole_blocks_are_refused() {
        for env_size in [0, 512, 0x2000 + 100] {
            let c = UbootConfig { env_size, ..UbootConfig::default() };
            assert!(matches!(generate(&c), Err(crate::error::Error::Config { .. })), "{env_size:#x}");
        }
    }
}
