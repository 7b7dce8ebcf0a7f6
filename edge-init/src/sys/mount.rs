//! mount(2), umount2(2), switch-root and the other calls of early boot (to be written).
