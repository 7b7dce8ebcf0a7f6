//! `edge-image disk`: a flashable GPT disk image built from a layout file, as a plain file, without root, loop
//! devices or mounts; docs/disk-image.md.
//!
//! The disk holds, in this order, the boot partitions, slot A (a verified bundle payload), slot B (another payload
//! or zeros) and the data partition (ext4). The boot partitions are those of the layout's kind ([`Kind`]): for a
//! UEFI disk, the ESP (GRUB, its script and the boot state, all three copied from files the layout names); for a
//! U-Boot board, a FAT boot partition holding `boot.scr` (compiled from the script the layout names) and a raw state
//! partition holding the boot state (copied). It is a module of its own because it is the one place that puts the
//! bundle format, the boot files and the partition table together. It knows no slot rules: the boot state is made by
//! `edge-bootctl provision` and the script by `bootctl` (docs/disk-image.md, "Boot files"), and this module only
//! checks that the state is what the bootloader reads (GRUB environment blocks, or U-Boot environment copies with a
//! good CRC). It writes nothing a bundle has not verified, and the output appears whole or not at all.

pub mod esp;
pub mod ext4;
pub mod layout;
pub mod uboot;
pub mod ubootscr;

use std::fs::File;
use std::io::{BufReader, Read, Take};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::wire::{DiskReport, PartitionReport, SlotBundleReport, DISK_SCHEMA};
use image_layout::format::to_hex;
use image_layout::fsutil::AtomicFile;
use image_layout::keys::Keyring;
use image_layout::reader::{decode_parallel, Policy, StreamReader};
use layout::{Boot, Layout, MIB};
use platform::gpt::{self, Guid, Partition, SECTOR_BYTES};

/// What a partition of the disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The EFI system partition (UEFI disks).
    Esp,
    /// The FAT partition holding `boot.scr` (U-Boot boards).
    Boot,
    /// The raw partition holding the boot state, a redundant U-Boot environment (U-Boot boards).
    State,
    /// Slot A.
    SlotA,
    /// Slot B.
    SlotB,
    /// The data partition.
    Data,
}

/// `Microsoft basic data`, `EBD0A0A2-B9E5-4433-87C0-68B6B72699C7`: the type of a U-Boot board's FAT boot partition,
/// the usual one for a FAT that is not an ESP (`platform::gpt` has only the ESP and Linux types).
pub const BASIC_DATA_TYPE: Guid =
    Guid::from_fields(0xEBD0_A0A2, 0xB9E5, 0x4433, [0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99, 0xC7]);

impl Part {
    /// The partition's name (`PARTLABEL=`), which the updater, `edge-init` and the boot scripts find it by.
    pub fn label(self) -> &'static str {
        match self {
            Part::Esp => "edge-esp",
            Part::Boot => "edge-boot",
            Part::State => "edge-state",
            Part::SlotA => "edge-slot-a",
            Part::SlotB => "edge-slot-b",
            Part::Data => "edge-data",
        }
    }

    /// The partition's type GUID.
    pub fn type_guid(self) -> Guid {
        match self {
            Part::Esp => gpt::ESP_TYPE,
            Part::Boot => BASIC_DATA_TYPE,
            Part::State | Part::SlotA | Part::SlotB | Part::Data => gpt::LINUX_DATA_TYPE,
        }
    }
}

/// How the board boots, which decides the partitions before the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UEFI firmware and GRUB: `[esp]`.
    Uefi,
    /// U-Boot's distro boot: `[uboot]`.
    Uboot,
}

impl Kind {
    /// The kind of a layout.
    pub fn of(l: &Layout) -> Kind {
        match l.boot {
            Boot::Esp(_) => Kind::Uefi,
            Boot::Uboot(_) => Kind::Uboot,
        }
    }

    /// The partitions in table order. GRUB's script boots slot A from `(hd0,gpt2)` and B from `(hd0,gpt3)`; U-Boot's
    /// distro boot runs `/boot.scr` from partition 1, and `bootctl`'s U-Boot script loads the slots from partitions 3
    /// and 4 and reads the state from the first block of partition 2.
    pub fn parts(self) -> &'static [Part] {
        match self {
            Kind::Uefi => &UEFI_PARTS,
            Kind::Uboot => &UBOOT_PARTS,
        }
    }

    /// The partition names (`PARTLABEL=`), in table order.
    pub fn labels(self) -> Vec<&'static str> {
        self.parts().iter().map(|p| p.label()).collect()
    }
}

/// The partitions of a UEFI disk, in table order.
const UEFI_PARTS: [Part; 4] = [Part::Esp, Part::SlotA, Part::SlotB, Part::Data];
/// The partitions of a U-Boot board's disk, in table order.
const UBOOT_PARTS: [Part; 5] = [Part::Boot, Part::State, Part::SlotA, Part::SlotB, Part::Data];

/// The context of the hash the disk's identities are derived from (blake3 `derive_key`).
const IDENTITY_CONTEXT: &str = "edge-image 2026-11 disk identities v1";

/// Where each partition goes: pure arithmetic over the layout's sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The disk's size.
    pub total_bytes: u64,
    /// The partitions, in table order ([`Kind::parts`]).
    pub parts: &'static [Part],
    /// First and last sector of each partition, in the order of `parts`.
    pub lbas: Vec<(u64, u64)>,
}

impl Plan {
    /// The first byte of `part` on the disk. Panics if the disk has no such partition: the caller asks only for the
    /// partitions of the layout's kind.
    pub fn start(&self, part: Part) -> u64 {
        let i = self.parts.iter().position(|&p| p == part).expect("a partition of this kind of disk");
        self.lbas[i].0 * SECTOR_BYTES
    }
}

/// The size of `part` in a layout of its kind.
fn part_bytes(l: &Layout, part: Part) -> u64 {
    match (part, &l.boot) {
        (Part::Esp, Boot::Esp(esp)) => esp.size_bytes,
        (Part::Boot, Boot::Uboot(u)) => u.boot_size_bytes,
        (Part::State, Boot::Uboot(u)) => u.state_size_bytes,
        (Part::SlotA | Part::SlotB, _) => l.slots.size_bytes,
        (Part::Data, _) => l.data.size_bytes,
        (Part::Esp | Part::Boot | Part::State, _) => unreachable!("Kind::parts gives only the layout's partitions"),
    }
}

/// Places the partitions back to back from 1 MiB; the disk is the layout's size, or the partitions plus 1 MiB
/// before them and 1 MiB after (room for the backup table, keeping the size whole MiB). Refuses a size too small.
pub fn plan(l: &Layout) -> Result<Plan> {
    let parts = Kind::of(l).parts();
    let sizes: Vec<u64> = parts.iter().map(|&p| part_bytes(l, p)).collect();
    let needed_bytes = 2 * MIB + sizes.iter().sum::<u64>();
    let total_bytes = l.size_bytes.unwrap_or(needed_bytes);
    if total_bytes < needed_bytes {
        return Err(Error::LayoutTooSmall { path: l.path.clone(), size_bytes: total_bytes, needed_bytes });
    }
    let mut lbas = Vec::with_capacity(sizes.len());
    let mut next = MIB / SECTOR_BYTES;
    for size in sizes {
        lbas.push((next, next + size / SECTOR_BYTES - 1));
        next += size / SECTOR_BYTES;
    }
    Ok(Plan { total_bytes, parts, lbas })
}

/// The identities of a disk, derived from its inputs so that the same inputs give the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identities {
    /// The disk GUID.
    pub disk: Guid,
    /// Each partition's unique GUID (`PARTUUID=`), in table order: a UEFI disk takes the first four.
    pub partitions: [Guid; 5],
    /// The FAT volume id of the ESP.
    pub fat_volume_id: u32,
    /// The ext4 filesystem UUID.
    pub ext4_uuid: Guid,
    /// The ext4 directory hash seed.
    pub ext4_hash_seed: Guid,
}

/// blake3 (`derive_key`) over the layout file's bytes and the manifest hash of each slot's bundle (zeros for none).
pub fn identities(layout_text: &[u8], manifest_hashes: [Option<[u8; 32]>; 2]) -> Identities {
    let mut h = blake3::Hasher::new_derive_key(IDENTITY_CONTEXT);
    h.update(&(layout_text.len() as u64).to_le_bytes());
    h.update(layout_text);
    for m in manifest_hashes {
        h.update(&[u8::from(m.is_some())]);
        h.update(&m.unwrap_or([0; 32]));
    }
    let mut xof = h.finalize_xof();
    let mut next = || {
        let mut b = [0u8; 16];
        xof.fill(&mut b);
        Guid::v4_from(b)
    };
    let disk = next();
    let first_four = [next(), next(), next(), next()];
    let ext4_uuid = next();
    let ext4_hash_seed = next();
    let v = next().0;
    // The fifth partition's GUID comes after everything a UEFI disk takes, so that its identities stay those of the
    // disks built before U-Boot boards had a layout.
    let [p0, p1, p2, p3] = first_four;
    let partitions = [p0, p1, p2, p3, next()];
    Identities {
        disk,
        partitions,
        fat_volume_id: u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
        ext4_uuid,
        ext4_hash_seed,
    }
}

/// A root slot, as named in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    A,
    B,
}

impl Slot {
    fn letter(self) -> char {
        match self {
            Slot::A => 'A',
            Slot::B => 'B',
        }
    }
}

/// A slot's bundle, opened: head verified, compatible and payload checked, the body not yet read.
struct SlotBundle {
    slot: Slot,
    path: PathBuf,
    reader: StreamReader<BufReader<Take<File>>>,
    payload_idx: usize,
    report: SlotBundleReport,
}

fn open_bundle(l: &Layout, slot: Slot, path: &Path, keyring: &Keyring, policy: &Policy) -> Result<SlotBundle> {
    let wrap = |source: image_layout::Error| Error::SlotBundle {
        slot: slot.letter(),
        path: path.to_owned(),
        source: Box::new(source),
    };
    // A regular file or a block device, read up to the size it had when opened: a FIFO is refused before it is
    // opened, and a device such as /dev/zero has no size to stop at.
    let (file, size_bytes) = image_layout::fsutil::open_image(path)?;
    let reader =
        StreamReader::open(BufReader::with_capacity(1 << 20, file.take(size_bytes)), keyring, policy).map_err(wrap)?;
    let v = reader.verified();
    let m = &v.manifest;
    if m.compatible != l.compatible {
        return Err(Error::BundleCompatible {
            slot: slot.letter(),
            path: path.to_owned(),
            found: m.compatible.as_str().into(),
            expected: l.compatible.as_str().into(),
        });
    }
    let (payload_idx, p) = m.payload(&l.payload).map_err(wrap)?;
    if p.size_bytes > l.slots.size_bytes {
        return Err(Error::PayloadTooLarge {
            slot: slot.letter(),
            path: path.to_owned(),
            payload: p.name.as_str().into(),
            size_bytes: p.size_bytes,
            slot_bytes: l.slots.size_bytes,
        });
    }
    let report = SlotBundleReport {
        file: path.display().to_string(),
        name: m.name.clone(),
        version: m.version.clone(),
        security_version: m.security_version,
        manifest_blake3: to_hex(&v.manifest_hash()),
        payload: p.name.clone(),
        payload_bytes: p.size_bytes,
    };
    Ok(SlotBundle { slot, path: path.to_owned(), reader, payload_idx, report })
}

/// Writes `bytes` at `offset`, skipping every 64 KiB block of zeros: the file was extended with `set_len`, so what
/// is skipped reads as zeros and stays a hole.
/// Its error is the library's `WriteFile`, since it also runs inside the library's decoder.
fn write_sparse(out: &File, out_path: &Path, offset: u64, bytes: &[u8]) -> image_layout::Result<()> {
    const BLOCK: usize = 64 << 10;
    for (i, block) in bytes.chunks(BLOCK).enumerate() {
        if block.iter().all(|&b| b == 0) {
            continue;
        }
        out.write_all_at(block, offset + (i * BLOCK) as u64)
            .map_err(|source| image_layout::Error::WriteFile { path: out_path.to_owned(), source })?;
    }
    Ok(())
}

/// Streams the slot's payload into the disk at `offset`, every chunk verified before it is written.
fn write_slot(b: &mut SlotBundle, out: &File, out_path: &Path, offset: u64) -> Result<()> {
    let wrap = |slot: Slot, path: &Path| {
        let path = path.to_owned();
        move |source: image_layout::Error| Error::SlotBundle { slot: slot.letter(), path, source: Box::new(source) }
    };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (slot, path) = (b.slot, b.path.clone());
    while let Some(pi) = b.reader.next_payload().map_err(wrap(slot, &path))? {
        if pi != b.payload_idx {
            continue;
        }
        let p = b.reader.payload(pi).clone();
        let mut written = 0u64;
        let reader = &mut b.reader;
        decode_parallel(
            &p,
            threads,
            || reader.next_stored(),
            |_, raw| {
                let at = offset + written;
                written += raw.len() as u64;
                write_sparse(out, out_path, at, &raw)
            },
        )
        .map_err(|e| match e {
            image_layout::Error::WriteFile { .. } => Error::from(e),
            other => wrap(slot, &path)(other),
        })?;
        return Ok(());
    }
    // The payload was found in the manifest when the bundle was opened, so the loop returns before this.
    Err(wrap(slot, &path)(image_layout::Error::NoSuchPayload { name: b.report.payload.clone() }))
}

/// Copies the ext4 made at `src` into the disk at `offset`, leaving its zero blocks as holes.
fn copy_sparse(src: &Path, out: &File, out_path: &Path, offset: u64) -> Result<()> {
    let f = File::open(src).map_err(|source| Error::ReadFile { path: src.to_owned(), source })?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = f.read_at(&mut buf, at).map_err(|source| Error::ReadFile { path: src.to_owned(), source })?;
        if n == 0 {
            return Ok(());
        }
        write_sparse(out, out_path, offset + at, &buf[..n])?;
        at += n as u64;
    }
}

/// The journal the updater keeps, as `edge-update` writes it after installing a slot, in the shape every updater
/// reads (the first updaters' field names, no `schema`: docs/updater.md, "Journal"); tests/disk.rs checks that
/// the updater reads it and writes it back the same.
const JOURNAL_FILE: &str = "journal.json";
const JOURNAL_FORMAT: u32 = 1;

/// The files [`updater_seed`] writes: the journal, and the stack file of slot A and, when it is written, of B.
fn updater_files(slot_b: bool) -> Vec<String> {
    let mut files = vec![JOURNAL_FILE.to_owned(), stack_file(Slot::A)];
    if slot_b {
        files.push(stack_file(Slot::B));
    }
    files
}

/// The file where the updater keeps the stack of the bundle in `slot`.
fn stack_file(slot: Slot) -> String {
    format!("slot-{}.stack.json", slot.letter())
}

/// A data seed in a temporary directory beside the output: the layout's seed copied (`cp -a`, which keeps modes
/// and links), then the updater's journal and each slot's stack file in `rel`. [`build`] has refused a seed that
/// holds one of those files already, so none is overwritten.
fn updater_seed(l: &Layout, dir: &Path, name: &str, rel: &str, slots: [Option<&SlotBundle>; 2]) -> Result<TempDir> {
    let tmp = TempDir(dir.join(format!(".{name}.seed.tmp.{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&tmp.0);
    let werr = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::WriteFile { path, source }
    };
    std::fs::create_dir(&tmp.0).map_err(werr(&tmp.0))?;
    if let Some(seed) = &l.data.seed {
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg("--")
            .arg(seed.join("."))
            .arg(&tmp.0)
            .output()
            .map_err(|source| Error::RunTool { tool: "cp", path: seed.clone(), source })?;
        if !out.status.success() {
            let detail = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
            return Err(Error::ToolFailed { tool: "cp", path: seed.clone(), detail });
        }
    }
    let target = tmp.0.join(rel);
    let mut files = vec![(JOURNAL_FILE.to_owned(), journal_json(slots))];
    for b in slots.into_iter().flatten() {
        let v = b.reader.verified();
        let record = serde_json::json!({ "manifest_blake3": b.report.manifest_blake3, "stack": v.manifest.stack });
        files.push((stack_file(b.slot), record.to_string().into_bytes()));
    }
    std::fs::create_dir_all(&target).map_err(werr(&target))?;
    for (file, bytes) in files {
        let path = target.join(file);
        std::fs::write(&path, bytes).map_err(werr(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).map_err(werr(&path))?;
    }
    Ok(tmp)
}

/// The journal of a node whose slots hold `slots` (A, B) and whose floor is slot A's security version: A is the
/// slot the disk makes good, B is only written.
fn journal_json(slots: [Option<&SlotBundle>; 2]) -> Vec<u8> {
    let image = |b: &SlotBundle| {
        let r = &b.report;
        serde_json::json!({
            "bundle": {
                "manifest_hash": r.manifest_blake3,
                "name": r.name,
                "version": r.version,
                "security_version": r.security_version,
            },
            "size_bytes": r.payload_bytes,
        })
    };
    let mut j = serde_json::json!({
        "format": JOURNAL_FORMAT,
        "security_version": slots[0].map_or(0, |a| a.report.security_version),
    });
    for (key, b) in ["slot_a", "slot_b"].into_iter().zip(slots) {
        if let Some(b) = b {
            j[key] = image(b);
        }
    }
    j.to_string().into_bytes()
}

/// A temporary directory removed, with what is in it, when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A temporary file removed when dropped.
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The boot files of a layout, read, opened and checked before anything is written.
struct BootFiles {
    /// The FAT partition: the ESP, or a U-Boot board's boot partition.
    fat: Part,
    /// Its volume label.
    volume_label: [u8; 11],
    /// Its files, in the order they are written.
    files: Vec<esp::EspFile>,
    /// For a U-Boot board, the bytes of the state partition: both environment copies.
    state: Option<Vec<u8>>,
}

/// Reads and checks the boot files the layout names, and opens the extra files to copy; a file to copy onto a FAT
/// partition cannot be larger than the partition.
fn read_boot_files(l: &Layout) -> Result<BootFiles> {
    let extra = |files: &[(String, PathBuf)], max_bytes: u64| {
        files
            .iter()
            .map(|(name, src)| {
                Ok(esp::EspFile { name: name.clone(), content: esp::Content::Copy(esp::open_source(src, max_bytes)?) })
            })
            .collect::<Result<Vec<_>>>()
    };
    match &l.boot {
        Boot::Esp(e) => {
            let grub_cfg = esp::read_grub_cfg(&e.grub_cfg)?;
            let [state0, state1] = esp::read_boot_state(&e.boot_state)?;
            let grub_efi = esp::open_source(&e.grub_efi, e.size_bytes)?;
            // The boot state first, on the freshly formatted filesystem: its two blocks land in free clusters in a
            // row, as GRUB's save_env needs to rewrite them in place.
            let mut files = vec![
                esp::EspFile {
                    name: format!("{}/{}", esp::STATE_DIR, esp::STATE_FILES[0]),
                    content: esp::Content::Bytes(state0),
                },
                esp::EspFile {
                    name: format!("{}/{}", esp::STATE_DIR, esp::STATE_FILES[1]),
                    content: esp::Content::Bytes(state1),
                },
                esp::EspFile { name: esp::GRUB_EFI_PATH.to_owned(), content: esp::Content::Copy(grub_efi) },
                esp::EspFile { name: esp::GRUB_CFG_PATH.to_owned(), content: esp::Content::Bytes(grub_cfg) },
            ];
            files.extend(extra(&e.files, e.size_bytes)?);
            Ok(BootFiles { fat: Part::Esp, volume_label: esp::VOLUME_LABEL, files, state: None })
        }
        Boot::Uboot(u) => {
            let script = uboot::read_boot_script(&u.boot_script)?;
            let state = uboot::read_boot_state(&u.boot_state, u.state_size_bytes)?;
            let mut files =
                vec![esp::EspFile { name: uboot::SCRIPT_PATH.to_owned(), content: esp::Content::Bytes(script) }];
            files.extend(extra(&u.files, u.boot_size_bytes)?);
            Ok(BootFiles { fat: Part::Boot, volume_label: uboot::VOLUME_LABEL, files, state: Some(state) })
        }
    }
}

/// Builds the disk described by `layout` at `output`; bundle expiry is checked against `now`. With `fsync`, the
/// output is synced before it is renamed into place.
pub fn build(l: &Layout, output: &Path, now: time::OffsetDateTime, fsync: bool) -> Result<DiskReport> {
    let plan = plan(l)?;
    // The boot files are read, or opened, and checked before anything is written, so that a wrong one leaves no
    // output.
    let boot = read_boot_files(l)?;
    // A seed that already holds the updater's files is refused before the bundles are opened or anything is written.
    if let (Some(rel), Some(seed)) = (&l.data.updater_dir, &l.data.seed) {
        for file in updater_files(l.slots.b.is_some()) {
            let path = seed.join(rel).join(&file);
            if std::fs::symlink_metadata(&path).is_ok() {
                return Err(Error::SeedTaken { path });
            }
        }
    }
    let keyring = Keyring::load(&l.keyring)?;
    let policy = Policy::at(now, l.threshold);
    let mut a = open_bundle(l, Slot::A, &l.slots.a, &keyring, &policy)?;
    let mut b = l.slots.b.as_deref().map(|p| open_bundle(l, Slot::B, p, &keyring, &policy)).transpose()?;
    let ids = identities(
        &l.text,
        [Some(a.reader.verified().manifest_hash()), b.as_ref().map(|b| b.reader.verified().manifest_hash())],
    );
    let partitions: Vec<Partition> = plan
        .parts
        .iter()
        .zip(&plan.lbas)
        .zip(ids.partitions)
        .map(|((part, &(first_lba, last_lba)), unique_guid)| Partition {
            type_guid: part.type_guid(),
            unique_guid,
            first_lba,
            last_lba,
            name: part.label().to_owned(),
        })
        .collect();
    let table = gpt::encode(ids.disk, plan.total_bytes / SECTOR_BYTES, &partitions)
        .expect("the plan places the partitions in order inside the usable sectors");

    let mut out = AtomicFile::create(output)?;
    let out_path = out.tmp_path().to_owned();
    let werr = |source| Error::WriteFile { path: out_path.clone(), source };
    out.file().set_len(plan.total_bytes).map_err(werr)?;
    // AtomicFile opens for writing only; fatfs also reads what it wrote, so the same temporary file is opened again.
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&out_path).map_err(werr)?;
    file.write_all_at(&table.head, 0).map_err(werr)?;
    file.write_all_at(&table.tail, table.tail_lba * SECTOR_BYTES).map_err(werr)?;

    let volume = esp::Volume {
        partition: boot.fat.label(),
        start: plan.start(boot.fat),
        len: part_bytes(l, boot.fat),
        volume_id: ids.fat_volume_id,
        label: boot.volume_label,
    };
    let fat_type = esp::write(&file, &out_path, &volume, &boot.files)?;
    if let Some(state) = &boot.state {
        // Both copies from the partition's first byte, where the script and `fw_env.config` expect copy 0; the rest
        // of the partition stays zeros.
        file.write_all_at(state, plan.start(Part::State)).map_err(werr)?;
    }

    write_slot(&mut a, &file, &out_path, plan.start(Part::SlotA))?;
    if let Some(b) = b.as_mut() {
        write_slot(b, &file, &out_path, plan.start(Part::SlotB))?;
    }

    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let data_tmp = TempPath(dir.join(format!(".{name}.data.tmp.{}", std::process::id())));
    let _ = std::fs::remove_file(&data_tmp.0);
    // With `data.updater_dir`, the seed is a copy of the layout's with the updater's journal added, which records
    // what the slots hold (as the updater's own install would have), so the node's first `edge-update status` and
    // the fleet agent's first inventory name slot A's bundle, and slot A's security version is the node's floor.
    let merged = match &l.data.updater_dir {
        Some(rel) => Some(updater_seed(l, &dir, &name, rel, [Some(&a), b.as_ref()])?),
        None => None,
    };
    let fs = ext4::Ext4 {
        size_bytes: l.data.size_bytes,
        seed: merged.as_ref().map(|m| m.0.clone()).or_else(|| l.data.seed.clone()),
        uuid: ids.ext4_uuid,
        hash_seed: ids.ext4_hash_seed,
    };
    ext4::make(&fs, &data_tmp.0)?;
    copy_sparse(&data_tmp.0, &file, &out_path, plan.start(Part::Data))?;
    drop(data_tmp);
    drop(file);
    if fsync {
        out.commit()?;
    } else {
        out.commit_unsynced()?;
    }

    let mut a_report = Some(a.report);
    let mut b_report = b.map(|b| b.report);
    let partitions = plan
        .parts
        .iter()
        .zip(partitions)
        .enumerate()
        .map(|(i, (part, p))| {
            let (filesystem, bundle) = match part {
                Part::Esp | Part::Boot => (Some(esp::fat_type_name(fat_type)), None),
                Part::State => (Some(uboot::STATE_FILESYSTEM), None),
                Part::SlotA => (None, a_report.take()),
                Part::SlotB => (None, b_report.take()),
                Part::Data => (Some("ext4"), None),
            };
            PartitionReport {
                number: i as u32 + 1,
                label: p.name,
                type_guid: p.type_guid.to_string(),
                unique_guid: p.unique_guid.to_string(),
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                size_bytes: (p.last_lba - p.first_lba + 1) * SECTOR_BYTES,
                filesystem: filesystem.map(str::to_owned),
                bundle,
            }
        })
        .collect();
    Ok(DiskReport {
        schema: DISK_SCHEMA,
        output: output.display().to_string(),
        size_bytes: plan.total_bytes,
        disk_guid: ids.disk.to_string(),
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(extra: &str) -> Layout {
        let text = format!(
            "{extra}\ncompatible = \"c\"\nkeyring = \"k\"\n[esp]\ngrub_efi = \"g\"\ngrub_cfg = \"c\"\n\
             boot_state = \"s\"\n[slots]\nsize = \"64MiB\"\na = \"a\"\n[data]\nsize = \"16MiB\"\n"
        );
        Layout::parse(text.as_bytes(), Path::new("l.toml")).expect("valid layout")
    }

    #[test]
    fn partitions_sit_back_to_back_from_one_mib() {
        let p = plan(&layout("")).expect("fits");
        assert_eq!(p.total_bytes, (1 + 32 + 64 + 64 + 16 + 1) * MIB);
        assert_eq!(p.lbas, [(2048, 67583), (67584, 198655), (198656, 329727), (329728, 362495)]);
        let last_usable = gpt::last_usable_lba(p.total_bytes / SECTOR_BYTES);
        assert!(p.lbas[3].1 <= last_usable);
    }

    fn uboot_layout(extra: &str) -> Layout {
        let text = format!(
            "compatible = \"c\"\nkeyring = \"k\"\n[uboot]\nboot_script = \"b\"\nboot_state = \"s\"\n{extra}\n\
             [slots]\nsize = \"64MiB\"\na = \"a\"\n[data]\nsize = \"16MiB\"\n"
        );
        Layout::parse(text.as_bytes(), Path::new("l.toml")).expect("valid layout")
    }

    #[test]
    fn a_uboot_disk_has_its_state_where_the_script_reads_it() {
        let l = uboot_layout("");
        assert_eq!(Kind::of(&l).labels(), ["edge-boot", "edge-state", "edge-slot-a", "edge-slot-b", "edge-data"]);
        let p = plan(&l).expect("fits");
        assert_eq!(p.total_bytes, (1 + 4 + 1 + 64 + 64 + 16 + 1) * MIB);
        assert_eq!(p.lbas, [(2048, 10239), (10240, 12287), (12288, 143359), (143360, 274431), (274432, 307199)]);
        // `bootctl::ubootscript::UbootConfig::default().state_block`, where the committed boot.cmd reads the state.
        assert_eq!(p.start(Part::State), 0x2800 * SECTOR_BYTES);
        assert_eq!(p.start(Part::SlotA), 12288 * SECTOR_BYTES);
        let p = plan(&uboot_layout("boot_size = \"8MiB\"\nstate_size = \"2MiB\"")).expect("fits");
        assert_eq!(p.start(Part::State), 9 * MIB);
        assert_eq!(p.lbas[1], (18432, 22527));
        assert_eq!(Kind::of(&layout("")).labels(), ["edge-esp", "edge-slot-a", "edge-slot-b", "edge-data"]);
    }

    #[test]
    fn the_fat_is_fat12_below_8_mib() {
        assert_eq!(esp::fat_type_for(MIB), fatfs::FatType::Fat12);
        assert_eq!(esp::fat_type_for(7 * MIB), fatfs::FatType::Fat12);
        assert_eq!(esp::fat_type_for(8 * MIB), fatfs::FatType::Fat16);
        assert_eq!(esp::fat_type_for(1 << 30), fatfs::FatType::Fat16);
    }

    #[test]
    fn a_given_size_must_hold_the_partitions_and_both_tables() {
        let needed = 178 * MIB;
        assert_eq!(plan(&layout("size = \"178MiB\"")).expect("fits").total_bytes, needed);
        assert_eq!(plan(&layout("size = \"1GiB\"")).expect("fits").total_bytes, 1 << 30);
        let err = plan(&layout("size = \"177MiB\"")).expect_err("too small");
        assert!(matches!(err, Error::LayoutTooSmall { size_bytes, needed_bytes, .. }
            if size_bytes == 177 * MIB && needed_bytes == needed));
    }

    #[test]
    fn identities_depend_on_every_input_and_are_version_4() {
        let base = identities(b"layout", [Some([1; 32]), None]);
        assert_eq!(base, identities(b"layout", [Some([1; 32]), None]));
        for other in [
            identities(b"layout ", [Some([1; 32]), None]),
            identities(b"layout", [Some([2; 32]), None]),
            identities(b"layout", [Some([1; 32]), Some([0; 32])]),
        ] {
            assert_ne!(base.disk, other.disk);
        }
        let all = [
            base.disk,
            base.partitions[0],
            base.partitions[1],
            base.partitions[2],
            base.partitions[3],
            base.partitions[4],
            base.ext4_uuid,
            base.ext4_hash_seed,
        ];
        for (i, g) in all.iter().enumerate() {
            assert_eq!(g.0[6] >> 4, 4, "version 4");
            assert_eq!(g.0[8] >> 6, 0b10, "RFC variant");
            assert!(all[..i].iter().all(|o| o != g), "distinct");
        }
    }

    #[test]
    fn sparse_writes_skip_zero_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let f = File::create(&path).expect("create");
        f.set_len(4 << 20).expect("set_len");
        let mut bytes = vec![0u8; 256 << 10];
        bytes[(128 << 10) + 5] = 9;
        write_sparse(&f, &path, 1 << 20, &bytes).expect("write");
        let back = std::fs::read(&path).expect("read");
        assert_eq!(back[(1 << 20) + (128 << 10) + 5], 9);
        assert_eq!(back.iter().filter(|&&b| b != 0).count(), 1);
    }
}
