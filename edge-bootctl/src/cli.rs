//! The `edge-bootctl` command line: `status`, `booted`, `set-active`, `mark-good`, `mark-bad`, each reading the
//! backend named in the config, applying one rule of `rules` and writing the result back through the backend.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use cliout::Output;

use bootctl::backend::open;
use bootctl::blockdev::Access;
use bootctl::booted::booted_slot;
use bootctl::config::{Config, DEFAULT_PATH};
use bootctl::error::{Error, Result};
use bootctl::rules::{BootState, Slot};
use bootctl::ubootscript::{generate, UbootConfig};
use bootctl::wire::Status;

/// Show and change which slot boots.
#[derive(Debug, Parser)]
#[command(name = "edge-bootctl", version, about)]
pub struct Cli {
    /// The config file [default: /etc/edge/bootctl.toml, and every key's default when that file does not exist].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show both slots, the boot order and what boots next.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the running slot.
    Booted,
    /// Put a slot first in the boot order, not good, with the configured tries (the other slot must be good).
    SetActive {
        /// `A` or `B`.
        #[arg(value_parser = parse_slot)]
        slot: Slot,
    },
    /// Mark the running slot good.
    MarkGood,
    /// Do what the bootloader does at power-on: pick the slot by the rules, take a try off it when it is on trial,
    /// write that back, and print the slot. For slots that are files (trying updates on a laptop); on a node the
    /// bootloader does this itself.
    SimulateBoot,
    /// Mark a slot bad: not good, no tries (default: the running slot).
    MarkBad {
        /// `A` or `B`.
        #[arg(value_parser = parse_slot)]
        slot: Option<Slot>,
    },
    /// Write the boot state afresh: `--good` is good and active, the other slot empty (first install, or recovery
    /// when no copy is whole).
    Provision {
        /// The slot that holds a working image.
        #[arg(long, value_parser = parse_slot)]
        good: Slot,
        /// Overwrite a whole boot state too.
        #[arg(long)]
        force: bool,
    },
    /// Print the U-Boot boot script (boot.cmd) for a board: every option left out takes the value of the committed
    /// bootctl/uboot/boot.cmd, which fits the disk `edge-image disk` makes with its default sizes. Reads no config.
    UbootScript(Box<ScriptArgs>),
}

/// Where a board's U-Boot finds the state, the slots and the kernel (docs/board-integration.md).
#[derive(Debug, clap::Args)]
pub struct ScriptArgs {
    /// U-Boot's block interface of the boot device: `virtio`, `mmc`, `scsi`, `nvme`, `usb` [default: virtio].
    #[arg(long)]
    pub interface: Option<String>,
    /// The device number on that interface [default: 0].
    #[arg(long)]
    pub device: Option<u32>,
    /// First block (512 bytes) of the state area on the whole device: the first LBA of `edge-state` [default:
    /// 0x2800].
    #[arg(long, value_parser = parse_number)]
    pub state_block: Option<u64>,
    /// Bytes of one copy of the state environment, as in fw_env.config [default: 0x2000].
    #[arg(long, value_parser = parse_number)]
    pub env_size: Option<u64>,
    /// Free RAM for four copies while the script runs, clear of the kernel's and initramfs's load addresses
    /// [default: 0x50000000].
    #[arg(long, value_parser = parse_number)]
    pub scratch_addr: Option<u64>,
    /// Partition number of slot A [default: 3].
    #[arg(long)]
    pub slot_a_part: Option<u32>,
    /// Partition number of slot B [default: 4].
    #[arg(long)]
    pub slot_b_part: Option<u32>,
    /// The kernel's `root=` (and `edge.root=`) for slot A [default: PARTLABEL=edge-slot-a].
    #[arg(long)]
    pub slot_a_root: Option<String>,
    /// The same for slot B [default: PARTLABEL=edge-slot-b].
    #[arg(long)]
    pub slot_b_root: Option<String>,
    /// The kernel inside a slot, an arm64 Image [default: /boot/vmlinuz].
    #[arg(long)]
    pub kernel: Option<String>,
    /// The initramfs inside a slot; empty for none [default: /boot/initrd.img].
    #[arg(long)]
    pub initrd: Option<String>,
    /// The device tree inside a slot; empty for the firmware's own [default: empty].
    #[arg(long)]
    pub fdt: Option<String>,
    /// More kernel arguments [default: "ro console=ttyAMA0,115200 panic=10"].
    #[arg(long)]
    pub cmdline: Option<String>,
}

impl ScriptArgs {
    /// The defaults with every option given put over them.
    fn config(self: Box<Self>) -> UbootConfig {
        let d = UbootConfig::default();
        UbootConfig {
            interface: self.interface.unwrap_or(d.interface),
            device: self.device.unwrap_or(d.device),
            state_block: self.state_block.unwrap_or(d.state_block),
            env_size: self.env_size.unwrap_or(d.env_size),
            scratch_addr: self.scratch_addr.unwrap_or(d.scratch_addr),
            slot_a_part: self.slot_a_part.unwrap_or(d.slot_a_part),
            slot_b_part: self.slot_b_part.unwrap_or(d.slot_b_part),
            slot_a_root: self.slot_a_root.unwrap_or(d.slot_a_root),
            slot_b_root: self.slot_b_root.unwrap_or(d.slot_b_root),
            kernel: self.kernel.unwrap_or(d.kernel),
            fdt: self.fdt.unwrap_or(d.fdt),
            initrd: self.initrd.unwrap_or(d.initrd),
            cmdline: self.cmdline.unwrap_or(d.cmdline),
        }
    }
}

/// A number as U-Boot and fw_env.config write them: `0x` hex, or decimal.
fn parse_number(s: &str) -> std::result::Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("{s:?} is not a number (0x.. hex or decimal)"))
}

fn parse_slot(s: &str) -> std::result::Result<Slot, String> {
    Slot::parse(s).ok_or_else(|| format!("{s:?} is not a slot: A or B"))
}

/// Runs a command line; returns what to print on stdout.
pub fn run(cli: Cli) -> Result<Output> {
    // The script is made from its options alone: no config is read, so it can be made on a build machine.
    let cli = match cli.command {
        Command::UbootScript(args) => {
            // A refused value is named as the command's, not as the library's config.
            let script = generate(&args.config()).map_err(|e| match e {
                Error::Config { detail, .. } => Error::Config { path: "edge-bootctl uboot-script".into(), detail },
                other => other,
            })?;
            return Ok(Output::text(script.trim_end().to_owned()));
        }
        command => Cli { command, ..cli },
    };
    // The default file is optional (every key has a default); a file named on the command line must be there, so
    // that a misspelt name is not quietly replaced by the defaults.
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::load_default(Path::new(DEFAULT_PATH))?,
    };
    let booted = || booted_slot(&config.cmdline, &config.root, |s| config.slot_device(s));
    match cli.command {
        Command::Status { json } => {
            let mut b = open(&config, Access::ReadOnly)?;
            let status = Status::read(&mut *b, booted().ok())?;
            Ok(Output::report(&status, json, Status::human))
        }
        Command::Booted => Ok(Output::text(booted()?.to_string())),
        Command::SimulateBoot => {
            let mut b = open(&config, Access::ReadWrite)?;
            let state = b.read()?;
            let (boot, next) = state.boot();
            // Durability: as the bootloader does, the try is written before the slot would be booted.
            if next != state {
                b.write(&next)?;
            }
            Ok(Output::text(boot.slot().to_string()))
        }
        Command::SetActive { slot } => {
            let s = slot;
            let mut b = open(&config, Access::ReadWrite)?;
            let next = b.read()?.set_active(s, config.tries)?;
            b.write(&next)?;
            Ok(Output::text(format!("slot {s}: active, {} tries", config.tries)))
        }
        Command::MarkGood => {
            let s = booted()?;
            let mut b = open(&config, Access::ReadWrite)?;
            let next = b.read()?.mark_good(s);
            b.write(&next)?;
            Ok(Output::text(format!("slot {s}: good")))
        }
        Command::Provision { good, force } => {
            let s = good;
            let mut b = open(&config, Access::ReadWrite)?;
            match b.read() {
                // Only a state known to be lost is provisioned without --force; a read error is not that.
                Err(Error::NoWholeCopy { .. }) => {}
                Err(e) if !force => return Err(e),
                Ok(_) if !force => return Err(Error::StateExists),
                _ => {}
            }
            b.provision(&BootState::provisioned(s))?;
            Ok(Output::text(format!("provisioned: slot {s} good and active, slot {} empty", s.other())))
        }
        Command::UbootScript(_) => unreachable!("the script is made above, before the config is read"),
        Command::MarkBad { slot } => {
            let s = match slot {
                Some(x) => x,
                None => booted()?,
            };
            let mut b = open(&config, Access::ReadWrite)?;
            let next = b.read()?.mark_bad(s);
            b.write(&next)?;
            Ok(Output::text(format!("slot {s}: bad")))
        }
    }
}
