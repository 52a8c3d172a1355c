//! Per-request counts and handler time, to see which kernel requests a
//! workload costs (an untar's mix of lookups, attribute changes and xattr
//! probes). Off unless the server is started with `AUFS_FUSE_STATS=1`; then
//! the table is logged when the union is unmounted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Environment variable that turns the counters on (`1`).
pub const STATS_ENV: &str = "AUFS_FUSE_STATS";

/// The requests counted (one per handler), plus the `getxattr` names the
/// kernel probes most, counted next to `Getxattr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Readlink,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Releasedir,
    Readdirplus,
    Fsyncdir,
    Statfs,
    Setxattr,
    Getxattr,
    Listxattr,
    Removexattr,
    Access,
    Create,
    Tmpfile,
    Fallocate,
    Ioctl,
    CopyFileRange,
    Lseek,
    /// `getxattr` of `security.capability` (also counted as `Getxattr`).
    XattrCapability,
    /// `getxattr` of `system.posix_acl_access`.
    XattrAclAccess,
    /// `getxattr` of `system.posix_acl_default`.
    XattrAclDefault,
    /// `getxattr` answered without a system call (known to have none).
    XattrAnsweredFromCache,
}

const OPS: [Op; 39] = [
    Op::Lookup,
    Op::Forget,
    Op::Getattr,
    Op::Setattr,
    Op::Readlink,
    Op::Mknod,
    Op::Mkdir,
    Op::Unlink,
    Op::Rmdir,
    Op::Symlink,
    Op::Rename,
    Op::Link,
    Op::Open,
    Op::Read,
    Op::Write,
    Op::Flush,
    Op::Release,
    Op::Fsync,
    Op::Opendir,
    Op::Readdir,
    Op::Releasedir,
    Op::Readdirplus,
    Op::Fsyncdir,
    Op::Statfs,
    Op::Setxattr,
    Op::Getxattr,
    Op::Listxattr,
    Op::Removexattr,
    Op::Access,
    Op::Create,
    Op::Tmpfile,
    Op::Fallocate,
    Op::Ioctl,
    Op::CopyFileRange,
    Op::Lseek,
    Op::XattrCapability,
    Op::XattrAclAccess,
    Op::XattrAclDefault,
    Op::XattrAnsweredFromCache,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Lookup => "LOOKUP",
            Op::Forget => "FORGET (nodes, batched or not)",
            Op::Getattr => "GETATTR",
            Op::Setattr => "SETATTR",
            Op::Readlink => "READLINK",
            Op::Mknod => "MKNOD",
            Op::Mkdir => "MKDIR",
            Op::Unlink => "UNLINK",
            Op::Rmdir => "RMDIR",
            Op::Symlink => "SYMLINK",
            Op::Rename => "RENAME",
            Op::Link => "LINK",
            Op::Open => "OPEN",
            Op::Read => "READ",
            Op::Write => "WRITE",
            Op::Flush => "FLUSH",
            Op::Release => "RELEASE",
            Op::Fsync => "FSYNC",
            Op::Opendir => "OPENDIR",
            Op::Readdir => "READDIR",
            Op::Releasedir => "RELEASEDIR",
            Op::Readdirplus => "READDIRPLUS",
            Op::Fsyncdir => "FSYNCDIR",
            Op::Statfs => "STATFS",
            Op::Setxattr => "SETXATTR",
            Op::Getxattr => "GETXATTR",
            Op::Listxattr => "LISTXATTR",
            Op::Removexattr => "REMOVEXATTR",
            Op::Access => "ACCESS",
            Op::Create => "CREATE",
            Op::Tmpfile => "TMPFILE",
            Op::Fallocate => "FALLOCATE",
            Op::Ioctl => "IOCTL",
            Op::CopyFileRange => "COPY_FILE_RANGE",
            Op::Lseek => "LSEEK",
            Op::XattrCapability => "  getxattr security.capability",
            Op::XattrAclAccess => "  getxattr system.posix_acl_access",
            Op::XattrAclDefault => "  getxattr system.posix_acl_default",
            Op::XattrAnsweredFromCache => "  getxattr answered without a syscall",
        }
    }

    /// Sub-counts of another request, left out of the request total.
    fn is_detail(self) -> bool {
        matches!(
            self,
            Op::XattrCapability
                | Op::XattrAclAccess
                | Op::XattrAclDefault
                | Op::XattrAnsweredFromCache
        )
    }
}

/// The counters of one server.
#[derive(Debug)]
pub(crate) struct Stats {
    enabled: bool,
    counts: [AtomicU64; OPS.len()],
    nanos: [AtomicU64; OPS.len()],
}

/// Adds the handler's time to its request when dropped.
pub(crate) struct Timer<'a> {
    running: Option<(&'a Stats, Op, Instant)>,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        if let Some((stats, op, start)) = self.running.take() {
            let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            stats.nanos[op as usize].fetch_add(ns, Ordering::Relaxed);
        }
    }
}

impl Stats {
    /// Counters that count when `enabled`, else cost one branch per request.
    pub(crate) fn new(enabled: bool) -> Self {
        Stats {
            enabled,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            nanos: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Whether `AUFS_FUSE_STATS=1` is set in this process.
    pub(crate) fn enabled_by_env() -> bool {
        std::env::var_os(STATS_ENV).is_some_and(|v| v == "1")
    }

    /// Counts one `op` and times its handler until the timer is dropped.
    pub(crate) fn start(&self, op: Op) -> Timer<'_> {
        if !self.enabled {
            return Timer { running: None };
        }
        self.add(op, 1);
        Timer {
            running: Some((self, op, Instant::now())),
        }
    }

    /// Adds `n` to the count of `op` (no timing).
    pub(crate) fn add(&self, op: Op, n: u64) {
        if self.enabled {
            self.counts[op as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts a `getxattr` of `name` under its detail row, if it has one.
    pub(crate) fn xattr_name(&self, name: &[u8]) {
        let op = match name {
            b"security.capability" => Op::XattrCapability,
            b"system.posix_acl_access" => Op::XattrAclAccess,
            b"system.posix_acl_default" => Op::XattrAclDefault,
            _ => return,
        };
        self.add(op, 1);
    }

    /// The count of `op` so far.
    pub(crate) fn count(&self, op: Op) -> u64 {
        self.counts[op as usize].load(Ordering::Relaxed)
    }

    /// A table of the non-zero counters, most frequent first, with the
    /// total number of requests; `None` when counting is off.
    pub(crate) fn table(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let row = |op: Op| {
            let n = self.count(op);
            let ns = self.nanos[op as usize].load(Ordering::Relaxed);
            (op, n, ns)
        };
        let mut rows: Vec<(Op, u64, u64)> = OPS
            .iter()
            .filter(|op| !op.is_detail())
            .map(|&op| row(op))
            .filter(|r| r.1 > 0)
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1));
        // Batched forgets reach us one node at a time: not in the total.
        let total: u64 = rows.iter().filter(|r| r.0 != Op::Forget).map(|r| r.1).sum();
        let mut out = format!("{total} requests (forgets not included)\n");
        for (op, n, ns) in rows {
            out.push_str(&format!(
                "{:<40} {n:>9} {:>9.1} ms {:>7.1} us/req\n",
                op.name(),
                ns as f64 / 1e6,
                ns as f64 / 1e3 / n as f64
            ));
            if op == Op::Getxattr {
                for d in OPS.iter().filter(|d| d.is_detail()) {
                    let n = self.count(*d);
                    if n > 0 {
                        out.push_str(&format!("{:<40} {n:>9}\n", d.name()));
                    }
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_when_enabled() {
        let off = Stats::new(false);
        drop(off.start(Op::Lookup));
        assert_eq!(off.count(Op::Lookup), 0);
        assert!(off.table().is_none());

        let on = Stats::new(true);
        drop(on.start(Op::Lookup));
        drop(on.start(Op::Lookup));
        drop(on.start(Op::Getxattr));
        on.xattr_name(b"security.capability");
        on.xattr_name(b"user.other");
        assert_eq!(on.count(Op::Lookup), 2);
        assert_eq!(on.count(Op::XattrCapability), 1);
        let t = on.table().unwrap();
        assert!(t.starts_with("3 requests "), "{t}");
        assert!(t.contains("LOOKUP"), "{t}");
        assert!(t.contains("security.capability"), "{t}");
    }

    #[test]
    fn every_op_has_its_own_slot() {
        for (i, op) in OPS.iter().enumerate() {
            assert_eq!(*op as usize, i, "{op:?}");
        }
    }
}
