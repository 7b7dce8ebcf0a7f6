//! What the node is and runs, read from the real files under the root of `Paths` (DMI, `/proc`, `/sys`) and from the
//! updater's journal and boot state, as the protocol's `Inventory` (docs/agent.md, "Inventory").
//!
//! Every piece is read on its own and a missing or unreadable one is left empty, so a board without DMI or a node
//! whose boot state cannot be read still enrolls. Lists past the protocol's bound are cut (the first ones kept, the
//! cut logged), and every text is clipped to its bound, so the result always passes `Inventory::check`.

use std::collections::BTreeMap;
use std::path::Path;

use bootctl::rules::Slot;
use fleet_wire::node::{
    Disk, Hardware, Inventory, Nic, SlotBundle, SlotInventory, MAX_INVENTORY_ITEMS, MAX_NAME_CHARS,
};

use crate::config::Config;
use crate::paths::Paths;

/// The most bytes read of any one file here (`/proc/cpuinfo` of a large machine is the biggest).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The inventory of the node at `paths`, with the updater's view when its config could be read; `stacks` maps a
/// manifest hash to the stack its manifest lists (as the agent saw it when it pinned the bundle).
pub fn collect(
    paths: &Paths,
    config: &Config,
    update: Option<&updater::config::Config>,
    stacks: &BTreeMap<String, serde_json::Value>,
) -> Inventory {
    let (slots, update_phase) = match update {
        Some(u) => slots(u, stacks),
        None => (Vec::new(), None),
    };
    Inventory {
        hostname: name(&read_text(&paths.hostname)),
        site: config.site.clone(),
        labels: config.labels.clone(),
        hardware: hardware(paths),
        kernel: name(&read_text(&paths.osrelease)),
        arch: std::env::consts::ARCH.to_owned(),
        slots,
        update_phase,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// The hash the agent compares to tell a changed inventory: the blake3 of its JSON.
pub fn hash(inventory: &Inventory) -> String {
    let json = serde_json::to_vec(inventory).expect("an inventory serializes");
    blake3::hash(&json).to_hex().to_string()
}

/// The machine.
pub fn hardware(paths: &Paths) -> Hardware {
    let cpuinfo = read_text(&paths.cpuinfo);
    let cpu_count = cpuinfo.lines().filter(|l| key_of(l) == Some("processor")).count();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| matches!(key_of(l), Some("model name" | "Model" | "Hardware")))
        .and_then(|l| l.split_once(':'))
        .map_or(String::new(), |(_, v)| name(v));
    let memory_bytes = read_text(&paths.meminfo)
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb.saturating_mul(1024));
    let mut disks: Vec<Disk> = entries(&paths.sys_block)
        .into_iter()
        .filter(|n| !(n.starts_with("loop") || n.starts_with("ram") || n.starts_with("zram")))
        .map(|n| {
            let dir = paths.sys_block.join(&n);
            let sectors = read_text(&dir.join("size")).trim().parse::<u64>().unwrap_or(0);
            Disk {
                size_bytes: sectors.saturating_mul(512),
                model: name(&read_text(&dir.join("device/model"))),
                name: name(&n),
            }
        })
        .collect();
    let mut nics: Vec<Nic> = entries(&paths.sys_net)
        .into_iter()
        .filter(|n| n != "lo")
        .map(|n| Nic { mac: name(&read_text(&paths.sys_net.join(&n).join("address"))), name: name(&n) })
        .collect();
    cut("disks", &mut disks);
    cut("NICs", &mut nics);
    Hardware {
        vendor: name(&read_text(&paths.dmi.join("sys_vendor"))),
        product: name(&read_text(&paths.dmi.join("product_name"))),
        serial: name(&read_text(&paths.dmi.join("product_serial"))),
        cpu_model,
        cpu_count: u32::try_from(cpu_count).unwrap_or(u32::MAX),
        memory_bytes,
        disks,
        nics,
    }
}

/// Both slots as the journal and the boot state say, and the updater's phase.
pub(crate) fn slots(
    u: &updater::config::Config,
    stacks: &BTreeMap<String, serde_json::Value>,
) -> (Vec<SlotInventory>, Option<String>) {
    use updater::journal::JournalStore as _;
    let journal = updater::journal::FileJournal::new(u.journal_path())
        .load()
        .map_err(|e| log::warn!("inventory: journal: {}", crate::error::chain(&e)))
        .unwrap_or_default();
    let booted = updater::slots::booted(u).ok();
    let state = bootctl::backend::open(&u.bootctl, bootctl::blockdev::Access::ReadOnly)
        .and_then(|mut b| b.read())
        .map_err(|e| log::debug!("inventory: boot state: {}", crate::error::chain(&e)))
        .ok();
    let writing = journal.update.as_ref().filter(|up| up.phase.is_installing()).map(|up| up.target);
    let slots = [Slot::A, Slot::B]
        .into_iter()
        .map(|s| {
            // A slot being written holds no bundle yet, whatever it held before.
            let valid = |image: &&updater::journal::SlotImage| {
                fleet_wire::node::check_hex32("manifest_hash", &image.bundle.manifest_blake3).is_ok()
            };
            let bundle = journal.slot(s).filter(|_| writing != Some(s)).filter(valid).map(|image| SlotBundle {
                name: name(&image.bundle.name),
                version: name(&image.bundle.version),
                security_version: image.bundle.security_version,
                manifest_hash: image.bundle.manifest_blake3.clone(),
                // As the updater kept it at the install (whoever asked for it: this agent, an operator, a stick),
                // else as this agent saw it when it pinned the bundle.
                stack: updater::install::recorded_stack(&u.stack_path(s), &image.bundle.manifest_blake3)
                    .or_else(|| stacks.get(&image.bundle.manifest_blake3).cloned())
                    .unwrap_or(serde_json::Value::Null),
            });
            let st = state.map(|b| b.slot(s));
            let word = match st {
                Some(x) if x.good => "good",
                Some(x) if x.tries > 0 => "trial",
                _ if bundle.is_none() => "empty",
                Some(_) => "bad",
                None => "good",
            };
            SlotInventory { slot: s.to_string(), booted: booted == Some(s), state: word.to_owned(), bundle }
        })
        .collect();
    (slots, journal.phase().map(|p| p.name().to_owned()))
}

/// The key of a `key : value` line of `/proc/cpuinfo`.
fn key_of(line: &str) -> Option<&str> {
    line.split_once(':').map(|(k, _)| k.trim())
}

/// The names in a directory, sorted; none when it cannot be read.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Keeps the first [`MAX_INVENTORY_ITEMS`] of a list, logging the cut.
fn cut<T>(what: &str, list: &mut Vec<T>) {
    if list.len() > MAX_INVENTORY_ITEMS {
        log::warn!("inventory: {} {what}, keeping the first {MAX_INVENTORY_ITEMS}", list.len());
        list.truncate(MAX_INVENTORY_ITEMS);
    }
}

/// A small file's text, empty when it cannot be read.
fn read_text(path: &Path) -> String {
    image_layout::fsutil::read_bounded(path, MAX_FILE_BYTES)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A name-like field: trimmed, control characters dropped, clipped to the protocol's bound.
pub(crate) fn name(s: &str) -> String {
    s.trim().chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    }

    fn config() -> Config {
        let mut c = Config::parse(
            "endpoint = \"https://fleet.example\"\nsite = \"shop-3\"\n[labels]\nrole = \"till\"",
            Path::new("a.toml"),
        )
        .expect("config");
        c.site = Some("shop-3".into());
        c
    }

    #[test]
    fn the_inventory_is_read_from_the_node_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        write(r, "proc/sys/kernel/hostname", "edge-node\n");
        write(r, "proc/sys/kernel/osrelease", "6.1.0-28-amd64\n");
        write(r, "sys/class/dmi/id/sys_vendor", "QEMU\n");
        write(r, "sys/class/dmi/id/product_name", "Standard PC (Q35 + ICH9, 2009)\n");
        write(r, "proc/cpuinfo", "processor\t: 0\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n");
        write(r, "proc/meminfo", "MemTotal:        2030092 kB\nMemFree:  1 kB\n");
        write(r, "sys/block/vda/size", "2097152\n");
        write(r, "sys/block/vda/device/model", "QEMU HARDDISK\n");
        write(r, "sys/block/loop0/size", "8\n");
        write(r, "sys/block/ram0/size", "8\n");
        write(r, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
        write(r, "sys/class/net/eth0/address", "52:54:00:12:34:56\n");
        let inv = collect(&Paths::under(r), &config(), None, &BTreeMap::new());
        inv.check().expect("passes the protocol's check");
        assert_eq!((inv.hostname.as_str(), inv.kernel.as_str()), ("edge-node", "6.1.0-28-amd64"));
        assert_eq!(inv.site.as_deref(), Some("shop-3"));
        assert_eq!(inv.labels["role"], "till");
        let hw = &inv.hardware;
        assert_eq!((hw.vendor.as_str(), hw.serial.as_str()), ("QEMU", ""));
        assert_eq!((hw.cpu_model.as_str(), hw.cpu_count, hw.memory_bytes), ("AMD EPYC", 2, 2030092 * 1024));
        assert_eq!(
            hw.disks,
            vec![Disk { name: "vda".into(), size_bytes: 2097152 * 512, model: "QEMU HARDDISK".into() }]
        );
        assert_eq!(hw.nics, vec![Nic { name: "eth0".into(), mac: "52:54:00:12:34:56".into() }]);
        // An empty tree still makes an inventory the endpoint takes.
        let empty = tempfile::tempdir().expect("tempdir");
        collect(&Paths::under(empty.path()), &config(), None, &BTreeMap::new()).check().expect("empty");
    }

    #[test]
    fn a_node_with_200_nics_keeps_the_first_64_and_long_names_are_clipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        for i in 0..200 {
            write(r, &format!("sys/class/net/eth{i:03}/address"), "52:54:00:00:00:01\n");
        }
        write(r, "sys/class/dmi/id/product_name", &"P\u{1}".repeat(300));
        let inv = collect(&Paths::under(r), &config(), None, &BTreeMap::new());
        inv.check().expect("passes the protocol's check");
        assert_eq!(inv.hardware.nics.len(), MAX_INVENTORY_ITEMS);
        assert_eq!(inv.hardware.nics[0].name, "eth000");
        assert_eq!(inv.hardware.product.chars().count(), MAX_NAME_CHARS);
    }
}
