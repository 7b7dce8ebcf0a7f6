//! The kernel command line, read once at start into [`Cmdline`] (docs/edge-init.md, "Kernel command line").
//! Only `edge.` words are ours; the rest belongs to the kernel and is ignored.

/// How the root and data partitions are named; the lookup is `platform::partition`'s.
pub use platform::partition::PartSpec;

/// What `edge-init` takes from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cmdline {
    /// `edge.slot=A|B`: the slot this root belongs to.
    pub slot: Option<char>,
    /// `edge.root=PARTLABEL=...`: in an initramfs, the root to mount and switch to.
    pub root: Option<PartSpec>,
    /// `edge.data=PARTLABEL=...`: the data partition.
    pub data: Option<PartSpec>,
    /// `edge.debug`: log at debug level.
    pub debug: bool,
    /// `edge.modules=a,b`: kernel modules to load at start, besides those the image lists.
    pub modules: Vec<String>,
    /// `edge.services=/path`: another services file (for recovery and tests).
    pub services: Option<String>,
    /// `edge.watchdog=0`: leave the hardware watchdog alone.
    pub watchdog: bool,
    /// The kernel's own `rootfstype=`: the root's filesystem in initramfs mode (ext4 when unset).
    pub root_fstype: Option<String>,
    /// `module.param=value` words: the kernel applies them to built-in modules only, so `edge-init` passes them to
    /// the modules it loads (module name with `-` as `_`, then `param=value`).
    pub module_params: Vec<(String, String)>,
    /// Words starting with `edge.` that mean nothing to this version, to be logged once.
    pub unknown: Vec<String>,
}

/// Parses a kernel command line; the last of a repeated word wins, as the kernel's own parsing does.
pub fn parse(line: &str) -> Cmdline {
    let mut c = Cmdline { watchdog: true, ..Cmdline::default() };
    for word in split(line) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.as_str(), None),
        };
        match (key, value) {
            ("edge.slot", Some(v)) if matches!(v, "A" | "B") => c.slot = v.chars().next(),
            ("edge.root", Some(v)) if PartSpec::parse(v).is_some() => c.root = PartSpec::parse(v),
            ("edge.data", Some(v)) if PartSpec::parse(v).is_some() => c.data = PartSpec::parse(v),
            ("edge.debug", None | Some("1")) => c.debug = true,
            ("edge.debug", Some("0")) => c.debug = false,
            ("edge.modules", Some(v)) => {
                c.modules = v.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect();
            }
            ("edge.services", Some(v)) if v.starts_with('/') => c.services = Some(v.to_owned()),
            ("edge.watchdog", Some("0")) => c.watchdog = false,
            ("edge.watchdog", Some("1")) => c.watchdog = true,
            (k, _) if k.starts_with("edge.") => c.unknown.push(word.clone()),
            ("rootfstype", Some(v)) if !v.is_empty() => c.root_fstype = Some(v.to_owned()),
            (k, Some(v)) if k.contains('.') => {
                let (module, param) = k.split_once('.').unwrap_or((k, ""));
                let plausible =
                    |t: &str| !t.is_empty() && t.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_".contains(ch));
                if plausible(module) && !param.is_empty() {
                    c.module_params.push((module.replace('-', "_"), format!("{param}={v}")));
                }
            }
            _ => {}
        }
    }
    c
}

/// Splits a command line into words, keeping double-quoted spaces (`a="b c"`), as the kernel does.
fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_cases() {
        let check = |line: &str, expected: Cmdline| assert_eq!(parse(line), expected, "{line}");
        let base = Cmdline { watchdog: true, ..Cmdline::default() };
        check("", base.clone());
        check("ro quiet console=ttyS0", base.clone());
        check("edge.slot=A", Cmdline { slot: Some('A'), ..base.clone() });
        check("edge.slot=A edge.slot=B", Cmdline { slot: Some('B'), ..base.clone() });
        check("edge.slot=C", Cmdline { unknown: vec!["edge.slot=C".into()], ..base.clone() });
        check(
            "edge.data=PARTLABEL=edge-data edge.root=PARTUUID=ABC-1",
            Cmdline {
                data: Some(PartSpec::Label("edge-data".into())),
                root: Some(PartSpec::Uuid("abc-1".into())),
                ..base.clone()
            },
        );
        check("edge.root=/dev/vda3", Cmdline { root: Some(PartSpec::Path("/dev/vda3".into())), ..base.clone() });
        check("edge.debug", Cmdline { debug: true, ..base.clone() });
        check("edge.debug edge.debug=0", base.clone());
        check(
            "edge.modules=virtio_blk,,i6300esb",
            Cmdline { modules: vec!["virtio_blk".into(), "i6300esb".into()], ..base.clone() },
        );
        check("edge.watchdog=0", Cmdline { watchdog: false, ..base.clone() });
        check("edge.services=/run/s.toml", Cmdline { services: Some("/run/s.toml".into()), ..base.clone() });
        check("edge.frobnicate=1", Cmdline { unknown: vec!["edge.frobnicate=1".into()], ..base.clone() });
        check("a=\"edge.slot=B x\" edge.slot=A", Cmdline { slot: Some('A'), ..base.clone() });
        check("rootfstype=ext4", Cmdline { root_fstype: Some("ext4".into()), ..base.clone() });
        check(
            "i6300esb.heartbeat=30 snd-hda.model=\"a b\" rd.x=1 .y=2 z.=3",
            Cmdline {
                module_params: vec![
                    ("i6300esb".into(), "heartbeat=30".into()),
                    ("snd_hda".into(), "model=a b".into()),
                    ("rd".into(), "x=1".into()),
                ],
                ..base
            },
        );
    }
}
