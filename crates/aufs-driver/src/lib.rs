//! The aufs storage driver: layers, references, mounts, diffs, as moby's aufs graphdriver, over ports.
