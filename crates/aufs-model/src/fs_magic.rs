//! Filesystem magic numbers (`statfs.f_type`) and the names Docker reports
//! for them (moby `daemon/graphdriver/driver_linux.go` `FsNames`).

/// `AUFS_SUPER_MAGIC`.
pub const AUFS: u64 = 0x6175_6673;
/// `BTRFS_SUPER_MAGIC`.
pub const BTRFS: u64 = 0x9123_683E;
/// `CRAMFS_MAGIC`.
pub const CRAMFS: u64 = 0x28cd_3d45;
/// `ECRYPTFS_SUPER_MAGIC`.
pub const ECRYPTFS: u64 = 0xf15f;
/// `EXT2/3/4_SUPER_MAGIC`.
pub const EXTFS: u64 = 0xEF53;
/// `F2FS_SUPER_MAGIC`.
pub const F2FS: u64 = 0xF2F5_2010;
/// `FUSE_SUPER_MAGIC`.
pub const FUSE: u64 = 0x6573_5546;
/// GPFS.
pub const GPFS: u64 = 0x4750_4653;
/// `JFFS2_SUPER_MAGIC`.
pub const JFFS2: u64 = 0x72b6;
/// JFS.
pub const JFS: u64 = 0x3153_464a;
/// `NFS_SUPER_MAGIC`.
pub const NFS: u64 = 0x6969;
/// `OVERLAYFS_SUPER_MAGIC`.
pub const OVERLAY: u64 = 0x794C_7630;
/// `RAMFS_MAGIC`.
pub const RAMFS: u64 = 0x8584_58f6;
/// `REISERFS_SUPER_MAGIC`.
pub const REISERFS: u64 = 0x5265_4973;
/// `SMB_SUPER_MAGIC`.
pub const SMB: u64 = 0x517B;
/// `SQUASHFS_MAGIC`.
pub const SQUASHFS: u64 = 0x7371_7368;
/// `TMPFS_MAGIC`.
pub const TMPFS: u64 = 0x0102_1994;
/// VxFS.
pub const VXFS: u64 = 0xa501_fcf5;
/// `XFS_SUPER_MAGIC`.
pub const XFS: u64 = 0x5846_5342;
/// ZFS.
pub const ZFS: u64 = 0x2fc1_2fc1;
/// `statfs` reported no type.
pub const UNSUPPORTED: u64 = 0;

/// Docker's name for a filesystem magic, `None` when Docker has none (it
/// then reports `<unknown>`).
pub fn fs_name(magic: u64) -> Option<&'static str> {
    Some(match magic {
        AUFS => "aufs",
        BTRFS => "btrfs",
        CRAMFS => "cramfs",
        ECRYPTFS => "ecryptfs",
        EXTFS => "extfs",
        F2FS => "f2fs",
        FUSE => "fuse",
        GPFS => "gpfs",
        JFFS2 => "jffs2",
        JFS => "jfs",
        NFS => "nfs",
        OVERLAY => "overlayfs",
        RAMFS => "ramfs",
        REISERFS => "reiserfs",
        SMB => "smb",
        SQUASHFS => "squashfs",
        TMPFS => "tmpfs",
        UNSUPPORTED => "unsupported",
        VXFS => "vxfs",
        XFS => "xfs",
        ZFS => "zfs",
        _ => return None,
    })
}

/// Docker's name, or `<unknown>`.
pub fn fs_display_name(magic: u64) -> &'static str {
    fs_name(magic).unwrap_or("<unknown>")
}

/// Backing filesystems kernel aufs cannot stack on (the Go driver's
/// `ErrIncompatibleFS`).
pub fn kernel_aufs_refuses(magic: u64) -> bool {
    matches!(magic, AUFS | BTRFS | ECRYPTFS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_docker() {
        assert_eq!(fs_display_name(0xEF53), "extfs");
        assert_eq!(fs_display_name(0x01021994), "tmpfs");
        assert_eq!(fs_display_name(0x794C7630), "overlayfs");
        assert_eq!(fs_display_name(0x1234_5678), "<unknown>");
        assert!(kernel_aufs_refuses(BTRFS));
        assert!(!kernel_aufs_refuses(XFS));
    }
}
