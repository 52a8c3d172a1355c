//! A userspace union filesystem with aufs semantics (whiteouts, opaque dirs, copy-up), over FUSE.
