//! The `Backend` trait, the one seam between the slot rules and where a bootloader keeps their state, and its two
//! implementations: the GRUB state copies (`grubstate`) and a redundant U-Boot environment (`uboot`).

use std::path::PathBuf;

use crate::blockdev::{Access, BlockDevice};
use crate::config::{BackendKind, Config};
use crate::error::{Error, Result};
use crate::grubstate::GrubStore;
use crate::health::{Copies, CopyHealth};
use crate::rules::{BootState, Slot, SlotState};
use crate::uboot::{Env, EnvStore, OtherCopy};

/// Where a bootloader keeps the boot state.
pub trait Backend {
    /// Which bootloader this is, for status output.
    fn kind(&self) -> BackendKind;
    /// Reads the state the bootloader will act on next.
    fn read(&mut self) -> Result<BootState>;
    /// Writes a new state durably (synced before returning), never leaving the bootloader without a whole copy.
    fn write(&mut self, state: &BootState) -> Result<()>;
    /// What each stored copy is and which one is read (a copy that is not whole is repaired by the next write).
    fn copies(&mut self) -> Result<Copies>;
    /// Writes every copy afresh with `state`, whatever they hold now (first install, or recovery of a lost state).
    fn provision(&mut self, state: &BootState) -> Result<()>;
}

impl<D: BlockDevice> Backend for GrubStore<D> {
    fn kind(&self) -> BackendKind {
        BackendKind::Grub
    }
    fn read(&mut self) -> Result<BootState> {
        Ok(GrubStore::read(self)?.state)
    }
    fn write(&mut self, state: &BootState) -> Result<()> {
        GrubStore::write(self, state).map(|_| ())
    }
    fn copies(&mut self) -> Result<Copies> {
        GrubStore::copies(self)
    }
    fn provision(&mut self, state: &BootState) -> Result<()> {
        GrubStore::provision(self, state)
    }
}

/// The boot state as variables of a U-Boot environment, with the same names as the GRUB copies use.
pub fn state_to_env(state: &BootState, env: &mut Env) -> Result<()> {
    let bit = |b: bool| if b { "1" } else { "0" };
    let a = state.slot(Slot::A);
    let b = state.slot(Slot::B);
    let vars = [
        ("edge_active", state.active().to_string()),
        ("edge_last_good", state.last_good().to_string()),
        ("edge_a_good", bit(a.good).to_owned()),
        ("edge_a_tries", a.tries.to_string()),
        ("edge_b_good", bit(b.good).to_owned()),
        ("edge_b_tries", b.tries.to_string()),
    ];
    for (n, v) in vars {
        env.set(n, &v).map_err(|source| Error::UBoot { location: PathBuf::from("boot state variables"), source })?;
    }
    Ok(())
}

/// Reads the boot state from U-Boot environment variables, as strictly as the boot script does.
pub fn state_from_env(env: &Env) -> Result<BootState> {
    let get = |n: &'static str| env.get(n).ok_or(Error::StateVariable { name: n, value: None });
    let bad = |n: &'static str, v: &str| Error::StateVariable { name: n, value: Some(v.to_owned()) };
    let slot = |n| get(n).and_then(|v| Slot::parse(v).ok_or_else(|| bad(n, v)));
    let good = |n| {
        get(n).and_then(|v| match v {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(bad(n, v)),
        })
    };
    let tries =
        |n| get(n).and_then(|v| v.parse::<u8>().ok().filter(|t| v.len() == 1 && *t <= 9).ok_or_else(|| bad(n, v)));
    let a = SlotState { good: good("edge_a_good")?, tries: tries("edge_a_tries")? };
    let b = SlotState { good: good("edge_b_good")?, tries: tries("edge_b_tries")? };
    Ok(BootState::from_parts(a, b, slot("edge_active")?, slot("edge_last_good")?))
}

/// A U-Boot environment holding the boot state (other variables in it are kept).
pub struct UbootBackend<D: BlockDevice> {
    store: EnvStore<D>,
    location: PathBuf,
}

impl<D: BlockDevice> UbootBackend<D> {
    /// The backend over an environment store; `location` names it in errors (its device or `fw_env.config`).
    pub fn new(store: EnvStore<D>, location: PathBuf) -> UbootBackend<D> {
        UbootBackend { store, location }
    }

    fn err(&self) -> impl Fn(crate::uboot::Error) -> Error + '_ {
        move |source| Error::UBoot { location: self.location.clone(), source }
    }
}

impl<D: BlockDevice> Backend for UbootBackend<D> {
    fn kind(&self) -> BackendKind {
        BackendKind::Uboot
    }
    fn read(&mut self) -> Result<BootState> {
        let (env, _) = self.store.read().map_err(|source| match source {
            // No copy passes its CRC: the state is lost, as when no GRUB copy is whole.
            crate::uboot::Error::NoValidCopy | crate::uboot::Error::BadCrc { .. } => {
                Error::NoWholeCopy { location: self.location.clone() }
            }
            source => Error::UBoot { location: self.location.clone(), source },
        })?;
        state_from_env(&env)
    }
    fn write(&mut self, state: &BootState) -> Result<()> {
        let (mut env, _) = self.store.read().map_err(self.err())?;
        state_to_env(state, &mut env)?;
        let location = self.location.clone();
        self.store.write(&env).map_err(|source| Error::UBoot { location, source })?;
        Ok(())
    }
    fn copies(&mut self) -> Result<Copies> {
        let choice = match self.store.read() {
            Ok((_, choice)) => choice,
            Err(crate::uboot::Error::NoValidCopy) => None,
            Err(source) => return Err(Error::UBoot { location: self.location.clone(), source }),
        };
        // A copy is whole when it is the one read, or the other one with a good CRC.
        let valid =
            |i: usize| choice.is_some_and(|c| c.current.index() == i || matches!(c.other, OtherCopy::Valid { .. }));
        let mut health = [CopyHealth::Damaged; 2];
        for (i, h) in health.iter_mut().enumerate() {
            *h = match self.store.copy_extent(i).map_err(self.err())? {
                None => CopyHealth::Missing,
                Some(false) => CopyHealth::Damaged,
                Some(true) if valid(i) => CopyHealth::Whole,
                Some(true) => CopyHealth::Damaged,
            };
        }
        let locations = [0, 1].map(|i| {
            let (path, offset) = self.store.copy_at(i);
            format!("{} at byte {offset:#x}", path.display())
        });
        Ok(Copies { locations, health, current: choice.map(|c| c.current.index()) })
    }
    fn provision(&mut self, state: &BootState) -> Result<()> {
        let mut env = Env::new();
        state_to_env(state, &mut env)?;
        // Each write goes to the copy that is not current (the primary when none is valid), so two fill both.
        for _ in 0..2 {
            let location = self.location.clone();
            self.store.write(&env).map_err(|source| Error::UBoot { location, source })?;
        }
        Ok(())
    }
}

/// Opens the backend a config names (the GRUB state directory, or the U-Boot environment of `fw_env.config`).
pub fn open(config: &Config, access: Access) -> Result<Box<dyn Backend>> {
    Ok(match config.backend {
        BackendKind::Grub => Box::new(GrubStore::open_dir(&config.grub_state_dir, access)?),
        BackendKind::Uboot => {
            let path = &config.uboot_fw_env_config;
            let uerr = |source| Error::UBoot { location: path.clone(), source };
            let c = crate::uboot::Config::load(path).map_err(uerr)?;
            check_state_layout(&c, path)?;
            Box::new(UbootBackend::new(EnvStore::open(&c, access).map_err(uerr)?, c.primary.device.clone()))
        }
    })
}

/// The boot state needs a redundant environment whose second copy directly follows the first on the same device:
/// that is where the boot script reads and writes them, and a single copy has no fallback on a torn write.
fn check_state_layout(c: &crate::uboot::Config, path: &std::path::Path) -> Result<()> {
    let bad = |detail: String| Err(Error::Config { path: path.to_owned(), detail });
    let Some(r) = &c.redundant else {
        return bad("the boot state needs two copies (two lines); this describes one".to_owned());
    };
    let p = &c.primary;
    if r.device != p.device || r.env_size != p.env_size || r.offset != p.offset + p.env_size as i64 {
        return bad(format!(
            "the second copy must follow the first on the same device: expected {} {:#x} {:#x}",
            p.device.display(),
            p.offset + p.env_size as i64,
            p.env_size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_a_uboot_env() {
        let s = BootState::provisioned(Slot::B).set_active(Slot::A, 4).expect("B is good").boot().1;
        let mut env = Env::new();
        env.set("bootdelay", "0").expect("set");
        state_to_env(&s, &mut env).expect("set");
        assert_eq!(state_from_env(&env).expect("read"), s);
        assert_eq!(env.get("bootdelay"), Some("0"));
        env.set("edge_a_tries", "10").expect("set");
        assert!(matches!(state_from_env(&env), Err(Error::StateVariable { name: "edge_a_tries", .. })));
        env.set("edge_a_tries", "1").expect("set");
        env.unset("edge_active");
        assert!(matches!(state_from_env(&env), Err(Error::StateVariable { name: "edge_active", value: None })));
    }
}
