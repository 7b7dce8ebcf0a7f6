//! Early boot: the mounts, hostname, loopback and switch-root of an initramfs (to be written).
