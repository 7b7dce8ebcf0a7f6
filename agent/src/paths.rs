//! Every fixed path the agent reads or writes, hung off one root (`Paths::under`), so that tests run the real code
//! on a fake tree in a temporary directory. Paths that an operator may move (the updater's config, edge-init's
//! socket, the CA, the token) are config keys instead (`config`).

use std::path::{Path, PathBuf};

/// The config file's default path (`--config` replaces it).
pub const CONFIG: &str = "/etc/edge/agent.toml";

/// The agent's directory on the data partition, which survives updates of both slots, so the node keeps its
/// identity, its spool and its numbering across them.
pub const DATA_DIR: &str = "data/edge-agent";

/// Where the agent's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The root everything hangs off (`/` on a node).
    pub root: PathBuf,
    /// The agent's directory on the data partition (`/data/edge-agent`).
    pub data_dir: PathBuf,
    /// The node's ed25519 key (mode 0600): its identity. Read by nothing else.
    pub key: PathBuf,
    /// The report spool (`spool`): reports not yet acknowledged by the endpoint, in order, and the event log
    /// offset they were read up to.
    pub spool: PathBuf,
    /// The agent's state (`state`): enrollment, the last desired state and its ETag, the inventory's hash, the
    /// actions done. Read by `edge-agent status`.
    pub state: PathBuf,
    /// DMI identity (`sys_vendor`, `product_name`, `product_serial`), written by the kernel.
    pub dmi: PathBuf,
    /// `/proc/cpuinfo`.
    pub cpuinfo: PathBuf,
    /// `/proc/meminfo`.
    pub meminfo: PathBuf,
    /// `/sys/block`: one directory per whole disk with its `size` in 512-byte sectors.
    pub sys_block: PathBuf,
    /// `/sys/class/net`: one directory per interface with its `address`.
    pub sys_net: PathBuf,
    /// The kernel release (`uname -r`).
    pub osrelease: PathBuf,
    /// The host name.
    pub hostname: PathBuf,
    /// The kernel log, whose tail a diagnostics action collects (edge-init logs every service there), and which the
    /// telemetry reads whole.
    pub kmsg: PathBuf,
    /// The telemetry spool's directory (`telemetry::spool`): segments and their metadata. Read by nothing else.
    pub telemetry: PathBuf,
    /// How many boots the agent has seen on this data partition, and the last boot's id. Read by nothing else.
    pub boots: PathBuf,
    /// The boot's id, written by the kernel.
    pub boot_id: PathBuf,
    /// `/proc/stat` (CPU time).
    pub proc_stat: PathBuf,
    /// `/proc/loadavg`.
    pub loadavg: PathBuf,
    /// `/proc/net/dev` (bytes per interface).
    pub net_dev: PathBuf,
    /// `/proc/uptime`.
    pub uptime: PathBuf,
    /// Where the data partition is mounted (its size and free bytes).
    pub data_mount: PathBuf,
}

impl Paths {
    /// The paths of a node whose root is `root`.
    pub fn under(root: &Path) -> Paths {
        let data_dir = root.join(DATA_DIR);
        Paths {
            root: root.to_owned(),
            key: data_dir.join("node.key"),
            spool: data_dir.join("spool.jsonl"),
            state: data_dir.join("state.json"),
            data_dir,
            dmi: root.join("sys/class/dmi/id"),
            cpuinfo: root.join("proc/cpuinfo"),
            meminfo: root.join("proc/meminfo"),
            sys_block: root.join("sys/block"),
            sys_net: root.join("sys/class/net"),
            osrelease: root.join("proc/sys/kernel/osrelease"),
            hostname: root.join("proc/sys/kernel/hostname"),
            kmsg: root.join("dev/kmsg"),
            telemetry: root.join(DATA_DIR).join("telemetry"),
            boots: root.join(DATA_DIR).join("boots.json"),
            boot_id: root.join("proc/sys/kernel/random/boot_id"),
            proc_stat: root.join("proc/stat"),
            loadavg: root.join("proc/loadavg"),
            net_dev: root.join("proc/net/dev"),
            uptime: root.join("proc/uptime"),
            data_mount: root.join("data"),
        }
    }

    /// The paths of the node this runs on.
    pub fn node() -> Paths {
        Paths::under(Path::new("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_hangs_off_the_root() {
        let p = Paths::under(Path::new("/tmp/x"));
        assert_eq!(p.key, Path::new("/tmp/x/data/edge-agent/node.key"));
        for path in [
            &p.spool,
            &p.state,
            &p.dmi,
            &p.cpuinfo,
            &p.meminfo,
            &p.sys_block,
            &p.sys_net,
            &p.kmsg,
            &p.telemetry,
            &p.boots,
            &p.boot_id,
            &p.proc_stat,
            &p.loadavg,
            &p.net_dev,
            &p.uptime,
            &p.data_mount,
        ] {
            assert!(path.starts_with("/tmp/x"), "{path:?}");
        }
        assert_eq!(Paths::node().key, Path::new("/data/edge-agent/node.key"));
    }
}
