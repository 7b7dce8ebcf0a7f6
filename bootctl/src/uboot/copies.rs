//! The two copies of a redundant environment: which one U-Boot reads when both CRCs are good, and which flags the
//! copy that replaces it gets. These are U-Boot's rules, apart from the bytes and the devices so that they can be
//! enumerated in tests.

/// The flags value of the copy that is current, in the boolean scheme (U-Boot's `ENV_REDUND_ACTIVE`).
pub const FLAG_ACTIVE: u8 = 1;
/// The flags value of the copy that was replaced, in the boolean scheme (U-Boot's `ENV_REDUND_OBSOLETE`).
pub const FLAG_OBSOLETE: u8 = 0;

/// One of the two copies of a redundant environment, in `fw_env.config` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyId {
    /// The first line of `fw_env.config` (U-Boot's `CONFIG_ENV_OFFSET`).
    Primary,
    /// The second line (U-Boot's `CONFIG_ENV_OFFSET_REDUND`).
    Redundant,
}

impl CopyId {
    /// The other copy.
    pub fn other(self) -> CopyId {
        match self {
            CopyId::Primary => CopyId::Redundant,
            CopyId::Redundant => CopyId::Primary,
        }
    }

    /// 0 for the primary copy, 1 for the redundant one.
    pub fn index(self) -> usize {
        match self {
            CopyId::Primary => 0,
            CopyId::Redundant => 1,
        }
    }
}

/// How the flags byte orders two copies whose CRCs are both good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagScheme {
    /// A counter, one more at every save (wrapping 255 to 0); the higher wins. U-Boot uses it for every medium but
    /// parallel NOR flash (`env/common.c`, `env_check_redund`), and `fw_env`/libubootenv use it for files and block
    /// devices: this is the scheme of an environment on eMMC or SD.
    Incremental,
    /// [`FLAG_ACTIVE`] on the copy just written, [`FLAG_OBSOLETE`] written afterwards over the flags of the copy it
    /// replaces, as NOR flash can clear bits without an erase (`env/flash.c`; `fw_env` on NOR MTD devices).
    Boolean,
}

impl FlagScheme {
    /// Which copy is current when both CRCs are good, exactly as U-Boot decides (`env_check_redund` and
    /// `env_flash_init`, and `fw_env.c`'s `fw_env_open`).
    ///
    /// Incremental: 255 then 0 is a wrap, so the copy with 0 wins; otherwise the higher wins, and a tie goes to the
    /// primary copy. Boolean: active beats obsolete; a tie goes to the primary copy; otherwise a copy with `0xff`
    /// (never programmed) wins, and any other pair goes to the primary copy. libubootenv 0.3.2 agrees except on
    /// pairs U-Boot never writes (both `0xff`, or two values that are neither 0, 1 nor `0xff`).
    pub fn current(self, primary: u8, redundant: u8) -> CopyId {
        match self {
            FlagScheme::Incremental => match (primary, redundant) {
                (255, 0) => CopyId::Redundant,
                (0, 255) => CopyId::Primary,
                (p, r) if r > p => CopyId::Redundant,
                _ => CopyId::Primary,
            },
            FlagScheme::Boolean => match (primary, redundant) {
                (FLAG_ACTIVE, FLAG_OBSOLETE) => CopyId::Primary,
                (FLAG_OBSOLETE, FLAG_ACTIVE) => CopyId::Redundant,
                (p, r) if p == r => CopyId::Primary,
                (0xff, _) => CopyId::Primary,
                (_, 0xff) => CopyId::Redundant,
                _ => CopyId::Primary,
            },
        }
    }

    /// The flags of the copy written to replace a current copy with flags `current`.
    pub fn next(self, current: u8) -> u8 {
        match self {
            FlagScheme::Incremental => current.wrapping_add(1),
            FlagScheme::Boolean => FLAG_ACTIVE,
        }
    }
}

/// Picks the current copy from the flags of the copies whose CRC is good (`None` for a bad one), and returns it
/// with its flags; `None` when neither copy is good.
pub fn select(primary: Option<u8>, redundant: Option<u8>, scheme: FlagScheme) -> Option<(CopyId, u8)> {
    match (primary, redundant) {
        (Some(p), Some(r)) => match scheme.current(p, r) {
            CopyId::Primary => Some((CopyId::Primary, p)),
            CopyId::Redundant => Some((CopyId::Redundant, r)),
        },
        (Some(p), None) => Some((CopyId::Primary, p)),
        (None, Some(r)) => Some((CopyId::Redundant, r)),
        (None, None) => None,
    }
}

/// Which copy of a redundant environment was read, and the state of the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyChoice {
    /// The copy read.
    pub current: CopyId,
    /// Its flags.
    pub flags: u8,
    /// The other copy.
    pub other: OtherCopy,
}

/// The copy that was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherCopy {
    /// Its CRC is good; it holds the environment before the last save (or the same one, with equal flags).
    Valid {
        /// Its flags.
        flags: u8,
    },
    /// Its CRC is bad: a save into it was cut short, or it was never written.
    BadCrc,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_copy_is_the_one_u_boot_picks() {
        use CopyId::{Primary as P, Redundant as R};
        use FlagScheme::{Boolean, Incremental};
        let check = |primary: Option<u8>, redundant: Option<u8>, scheme, expected: Option<CopyId>| {
            let got = select(primary, redundant, scheme);
            assert_eq!(got.map(|(c, _)| c), expected, "{primary:?} {redundant:?} {scheme:?}");
            if let Some((c, flags)) = got {
                assert_eq!(Some(flags), [primary, redundant][c.index()]);
            }
        };
        check(None, None, Incremental, None);
        check(Some(9), None, Incremental, Some(P));
        check(None, Some(9), Incremental, Some(R));
        check(Some(1), Some(2), Incremental, Some(R));
        check(Some(2), Some(1), Incremental, Some(P));
        check(Some(5), Some(5), Incremental, Some(P));
        check(Some(255), Some(0), Incremental, Some(R));
        check(Some(0), Some(255), Incremental, Some(P));
        check(Some(254), Some(255), Incremental, Some(R));
        check(Some(0), Some(1), Incremental, Some(R));
        // Only 255 then 0 is a wrap: 254 and 0 is an ordinary comparison.
        check(Some(254), Some(0), Incremental, Some(P));
        check(Some(0), Some(254), Incremental, Some(R));
        check(None, None, Boolean, None);
        check(Some(0), None, Boolean, Some(P));
        check(Some(1), Some(0), Boolean, Some(P));
        check(Some(0), Some(1), Boolean, Some(R));
        check(Some(1), Some(1), Boolean, Some(P));
        check(Some(0), Some(0), Boolean, Some(P));
        check(Some(0xff), Some(0xff), Boolean, Some(P));
        check(Some(0xff), Some(1), Boolean, Some(P));
        check(Some(1), Some(0xff), Boolean, Some(R));
        check(Some(0), Some(0xff), Boolean, Some(R));
        check(Some(2), Some(3), Boolean, Some(P));
        assert_eq!(Incremental.next(255), 0);
        assert_eq!(Incremental.next(6), 7);
        assert_eq!(Boolean.next(0), FLAG_ACTIVE);
    }
}
