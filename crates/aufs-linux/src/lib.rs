//! Real Linux adapters of the aufs ports: mount/umount2, statfs magic, mountinfo, openat2, xattrs, removal.
