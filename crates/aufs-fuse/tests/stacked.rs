//! The stacked mount (kernel overlayfs over a read-only FUSE view) against
//! the full FUSE union: the same tree seen through both, the same diff dir
//! left by the same operations, aufs form back after an unmount and after
//! a crash, and overlayfs xattrs from a layer without effect.
//!
//! Needs root and /dev/fuse; skips (saying why) without them.

mod common;

use aufs_fuse::{FuseBackend, Launcher, StackMode, StackedBackend};
use aufs_ports::{UnionBackend, UnionSpec};
use camino::{Utf8Path, Utf8PathBuf};
use common::{can_mount, write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

struct Rig {
    _tmp: tempfile::TempDir,
    root: Utf8PathBuf,
    fuse: FuseBackend,
    stacked: StackedBackend,
}

impl Rig {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
        let fuse = FuseBackend::new(
            Launcher::new(env!("CARGO_BIN_EXE_aufs-union-server"), Vec::new()),
            root.join("state"),
        );
        let stacked = StackedBackend::new(fuse.clone(), root.clone(), StackMode::Stacked);
        Rig {
            _tmp: tmp,
            root,
            fuse,
            stacked,
        }
    }

    /// `diff/<name>` dirs and a mount point, as a store lays them out.
    fn spec(&self, rw: &str, ro: &[&str]) -> UnionSpec {
        let d = |n: &str| {
            let p = self.root.join("diff").join(n);
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        let target = self.root.join("mnt").join(rw);
        std::fs::create_dir_all(&target).unwrap();
        UnionSpec {
            rw: d(rw),
            ro: ro.iter().map(|n| d(n)).collect(),
            target,
            mount_label: String::new(),
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.stacked.unmount_all_under(&self.root);
    }
}

/// Two lower layers with a whiteout, an opaque dir and aufs metadata, and
/// an rw layer already holding a whiteout, an opaque dir and a metadata
/// dir (what a layer mounted by aufs before leaves).
fn populate(rig: &Rig, rw: &str, l1: &str, l2: &str) -> UnionSpec {
    let spec = rig.spec(rw, &[l1, l2]);
    let [a, b] = [&spec.ro[0], &spec.ro[1]];
    write(&b.join("base/keep"), "keep");
    write(&b.join("base/gone"), "gone");
    write(&b.join("old/x"), "x");
    write(&b.join("lowdir/f"), "f");
    write(&b.join("hard1"), "h");
    write(&a.join("base/.wh.gone"), "");
    write(&a.join("old/.wh..wh..opq"), "");
    write(&a.join("old/y"), "y");
    write(&a.join("top"), "top");
    write(&a.join(".wh..wh.plnk/ignored"), "");
    write(&spec.rw.join(".wh.top"), "");
    write(&spec.rw.join("lowdir/.wh..wh..opq"), "");
    write(&spec.rw.join("lowdir/mine"), "mine");
    write(&spec.rw.join(".wh..wh.plnk/kept"), "k");
    std::fs::set_permissions(
        spec.rw.join("lowdir/mine"),
        PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    spec
}

/// Every entry below `dir`: path, type, mode, owner, content, xattrs.
fn dump(dir: &Utf8Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for n in names {
            let p = d.join(&n);
            let md = std::fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if ft.is_file() {
                format!("file {:?}", std::fs::read_to_string(&p).unwrap())
            } else if ft.is_char_device() {
                format!("chardev {}", md.rdev())
            } else {
                format!("other {:?}", ft)
            };
            let mut xattrs = Vec::new();
            let mut buf = vec![0u8; 4096];
            if let Ok(len) = rustix::fs::llistxattr(p.as_std_path(), &mut buf[..]) {
                for x in buf[..len].split(|c| *c == 0).filter(|x| !x.is_empty()) {
                    xattrs.push(String::from_utf8_lossy(x).into_owned());
                }
            }
            xattrs.sort();
            out.push(format!(
                "{} {what} {:o} {}:{} {xattrs:?}",
                p.strip_prefix(dir).unwrap(),
                md.mode() & 0o7777,
                md.uid(),
                md.gid()
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn the_stacked_mount_shows_the_same_tree_and_leaves_aufs_form() {
    if !can_mount() {
        return;
    }
    let rig = Rig::new();
    let spec = populate(&rig, "top", "l1", "l2");
    let before = dump(&spec.rw);
    rig.fuse.mount(&spec).unwrap();
    let through_fuse = dump(&spec.target);
    rig.fuse.unmount(&spec.target).unwrap();
    assert_eq!(
        dump(&spec.rw),
        before,
        "a read of the FUSE union changes nothing"
    );

    rig.stacked.mount(&spec).unwrap();
    assert!(rig.stacked.is_mounted(&spec.target).unwrap());
    let through_stack = dump(&spec.target);
    assert_eq!(through_stack, through_fuse);
    assert!(
        !through_stack.iter().any(|l| l.contains(".wh.")),
        "no aufs name shows: {through_stack:#?}"
    );
    rig.stacked.unmount(&spec.target).unwrap();
    assert!(!rig.stacked.is_mounted(&spec.target).unwrap());
    assert_eq!(dump(&spec.rw), before, "back in aufs form, byte for byte");
    assert!(!rig.root.join("stack/top/overlay-form").exists());
}

/// What a container does: writes, deletes, replaces a directory, renames,
/// chmods, creates below a lower directory.
fn work(m: &Utf8Path) {
    std::fs::write(m.join("base/keep"), "changed").unwrap();
    std::fs::write(m.join("new"), "new").unwrap();
    std::fs::remove_file(m.join("hard1")).unwrap();
    std::fs::remove_dir_all(m.join("old")).unwrap();
    std::fs::create_dir(m.join("old")).unwrap();
    std::fs::write(m.join("old/fresh"), "fresh").unwrap();
    std::fs::write(m.join("lowdir/added"), "added").unwrap();
    std::fs::rename(m.join("new"), m.join("renamed")).unwrap();
    std::fs::set_permissions(m.join("base"), PermissionsExt::from_mode(0o711)).unwrap();
    std::fs::remove_file(m.join("lowdir/mine")).unwrap();
}

#[test]
fn the_same_operations_leave_the_same_diff_dir_as_the_fuse_union() {
    if !can_mount() {
        return;
    }
    let rig = Rig::new();
    let by_fuse = populate(&rig, "a", "a1", "a2");
    let by_stack = populate(&rig, "b", "b1", "b2");
    rig.fuse.mount(&by_fuse).unwrap();
    work(&by_fuse.target);
    let shown_fuse = dump(&by_fuse.target);
    rig.fuse.unmount(&by_fuse.target).unwrap();
    rig.stacked.mount(&by_stack).unwrap();
    work(&by_stack.target);
    let shown_stack = dump(&by_stack.target);
    rig.stacked.unmount(&by_stack.target).unwrap();
    assert_eq!(shown_stack, shown_fuse, "the same tree after the same work");
    assert_eq!(dump(&by_stack.rw), dump(&by_fuse.rw), "the same diff dir");
}

#[test]
fn a_crash_while_mounted_is_put_back_into_aufs_form() {
    if !can_mount() {
        return;
    }
    let rig = Rig::new();
    let spec = populate(&rig, "c", "c1", "c2");
    rig.stacked.mount(&spec).unwrap();
    std::fs::remove_file(spec.target.join("base/keep")).unwrap();
    std::fs::remove_dir_all(spec.target.join("old")).unwrap();
    std::fs::create_dir(spec.target.join("old")).unwrap();
    std::fs::write(spec.target.join("written"), "w").unwrap();
    // kill -9 of the lower view's server, and the overlay left behind.
    let lower = rig.root.join("stack/c/lower");
    let pid = rig.fuse.server_pid(&lower).expect("lower server pid");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    rig.stacked.recover().unwrap();
    assert!(!rig.stacked.is_mounted(&spec.target).unwrap());
    let d = dump(&spec.rw);
    assert!(
        d.iter().any(|l| l.starts_with("base/.wh.keep file")),
        "{d:#?}"
    );
    assert!(
        d.iter().any(|l| l.starts_with("old/.wh..wh..opq file")),
        "{d:#?}"
    );
    assert!(
        d.iter().any(|l| l.starts_with("written file \"w\"")),
        "{d:#?}"
    );
    assert!(
        d.iter().any(|l| l.starts_with(".wh..wh.plnk/kept")),
        "{d:#?}"
    );
    assert!(
        !d.iter()
            .any(|l| l.contains("chardev") || l.contains("overlay")),
        "nothing of overlay form is left: {d:#?}"
    );
    assert!(!rig.root.join("stack/c/overlay-form").exists());
    // And it mounts again.
    rig.stacked.mount(&spec).unwrap();
    assert_eq!(
        std::fs::read_to_string(spec.target.join("written")).unwrap(),
        "w"
    );
    assert!(!spec.target.join("base/keep").exists());
    rig.stacked.unmount(&spec.target).unwrap();
}

#[test]
fn overlay_xattrs_in_the_rw_layer_steer_nothing() {
    if !can_mount() {
        return;
    }
    let rig = Rig::new();
    let spec = populate(&rig, "d", "d1", "d2");
    // Not opaque for aufs (no marker): its lower content must show.
    std::fs::create_dir_all(spec.rw.join("base")).unwrap();
    rustix::fs::setxattr(
        spec.rw.join("base").as_std_path(),
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    write(&spec.rw.join("plain"), "p");
    rustix::fs::setxattr(
        spec.rw.join("plain").as_std_path(),
        "trusted.overlay.redirect",
        b"/base/keep",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rig.stacked.mount(&spec).unwrap();
    assert_eq!(
        std::fs::read_to_string(spec.target.join("base/keep")).unwrap(),
        "keep",
        "a forged opaque xattr hid nothing"
    );
    assert_eq!(
        std::fs::read_to_string(spec.target.join("plain")).unwrap(),
        "p"
    );
    rig.stacked.unmount(&spec.target).unwrap();
    let d = dump(&spec.rw);
    assert!(!d.iter().any(|l| l.contains("trusted.overlay")), "{d:#?}");
    assert!(!spec.rw.join("base/.wh..wh..opq").exists());
}

#[test]
fn overlay_xattrs_in_a_lower_layer_are_never_shown() {
    if !can_mount() {
        return;
    }
    let rig = Rig::new();
    let spec = populate(&rig, "e", "e1", "e2");
    let lower = &spec.ro[0];
    write(&lower.join("meta"), "full content");
    for (path, key, value) in [
        (lower.join("meta"), "trusted.overlay.metacopy", &b""[..]),
        (lower.join("meta"), "user.overlay.redirect", b"/top"),
        (lower.join("old"), "trusted.overlay.redirect", b"/base"),
    ] {
        rustix::fs::setxattr(
            path.as_std_path(),
            key,
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    rustix::fs::setxattr(
        lower.join("meta").as_std_path(),
        "user.kept",
        b"1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    // The read-only view overlayfs stacks on hides them and refuses them.
    let view = rig.root.join("view");
    std::fs::create_dir_all(&view).unwrap();
    rig.fuse.mount_read_only(&spec.ro, &view).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(view.join("meta").as_std_path(), &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"user.kept\0");
    assert_eq!(
        rustix::fs::lgetxattr(
            view.join("old").as_std_path(),
            "trusted.overlay.redirect",
            &mut buf[..]
        ),
        Err(rustix::io::Errno::NODATA)
    );
    rig.fuse.unmount(&view).unwrap();
    // Stacked, the files read as themselves: no metacopy, no redirect.
    rig.stacked.mount(&spec).unwrap();
    assert_eq!(
        std::fs::read_to_string(spec.target.join("meta")).unwrap(),
        "full content"
    );
    let mut names: Vec<String> = std::fs::read_dir(spec.target.join("old"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["y"], "the opaque lower dir shows its own entries");
    rig.stacked.unmount(&spec.target).unwrap();
}

#[test]
fn the_full_union_refuses_overlay_xattrs() {
    if !can_mount() {
        return;
    }
    let rig = Rig::new();
    let spec = populate(&rig, "f", "f1", "f2");
    rig.fuse.mount(&spec).unwrap();
    let f = spec.target.join("base/keep");
    assert_eq!(
        rustix::fs::setxattr(
            f.as_std_path(),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty()
        ),
        Err(rustix::io::Errno::PERM)
    );
    rig.fuse.unmount(&spec.target).unwrap();
}

/// A container that swaps a directory holding stashed aufs names for a
/// symlink to the host root cannot make the unmount fail, nor the
/// conversion back follow the symlink: the names it cannot put back stay
/// in a quarantine dir beside the layer's state.
#[test]
fn a_layer_rearranged_while_mounted_still_goes_back_to_aufs_form() {
    if !can_mount() {
        return;
    }
    let rig = Rig::new();
    let spec = populate(&rig, "g", "g1", "g2");
    write(&spec.rw.join("x/.wh..wh.meta"), "m");
    write(&spec.rw.join("x/.wh.gone"), "");
    let outside = rig.root.join("outside");
    write(&outside.join("keep"), "k");
    rig.stacked.mount(&spec).unwrap();
    std::fs::remove_dir_all(spec.target.join("x")).unwrap();
    std::os::unix::fs::symlink(outside.as_std_path(), spec.target.join("x")).unwrap();
    rig.stacked.unmount(&spec.target).unwrap();
    assert!(std::fs::symlink_metadata(spec.rw.join("x"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "nothing was put into the symlink's target"
    );
    assert!(rig.root.join("stack/g/stash.unrestored.0").is_dir());
    assert!(!rig.root.join("stack/g/overlay-form").exists());
}

/// Only layers of the store, mounted at their own mnt dir, are stacked:
/// the paths of the state and of recovery come from that layout.
#[test]
fn a_union_outside_the_store_layout_is_not_stacked() {
    if !can_mount() {
        return;
    }
    let rig = Rig::new();
    let mut spec = populate(&rig, "h", "h1", "h2");
    spec.target = rig.root.join("elsewhere");
    std::fs::create_dir_all(&spec.target).unwrap();
    let err = rig.stacked.mount(&spec).unwrap_err();
    assert!(
        err.to_string().contains("not a layer of the store"),
        "{err}"
    );
    assert!(!rig.stacked.is_mounted(&spec.target).unwrap());
    let auto = StackedBackend::new(rig.fuse.clone(), rig.root.clone(), StackMode::Auto);
    auto.mount(&spec).unwrap();
    assert!(
        rig.fuse.is_mounted(&spec.target).unwrap(),
        "a full FUSE union instead"
    );
    auto.unmount(&spec.target).unwrap();
}
