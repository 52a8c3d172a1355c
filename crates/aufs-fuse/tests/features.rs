//! POSIX features through a mounted union: locks, shared writable mmap,
//! ACLs, `O_TMPFILE` and `linkat` of it, fsync, open files whose names are
//! gone (reopened through procfs too), passthrough
//! opens next to copy-up, and inode numbers of copied-up files across
//! remounts.

// mmap and fcntl locks have no safe std API; the calls are checked one by one.
#![allow(unsafe_code)]

mod common;

use aufs_ports::UnionBackend;
use common::{can_mount, write, Fixture};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::process::Command;

fn ofd_lock(f: &std::fs::File, kind: i32) -> std::io::Result<()> {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    // SAFETY: F_OFD_SETLK reads one flock struct that lives across the call.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn flock_and_posix_locks_conflict_through_the_union() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(1);
    write(&spec.ro[0].join("lockme"), "x");
    f.mount(&spec);
    let path = spec.target.join("lockme");

    // flock(2): held by us, refused to another process.
    let held = std::fs::File::open(&path).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let other = Command::new("flock")
        .args(["-n", "-E", "42", path.as_str(), "true"])
        .status()
        .unwrap();
    assert_eq!(other.code(), Some(42), "second flock must fail");
    rustix::fs::flock(&held, rustix::fs::FlockOperation::Unlock).unwrap();
    let other = Command::new("flock")
        .args(["-n", "-E", "42", path.as_str(), "true"])
        .status()
        .unwrap();
    assert!(other.success(), "flock free again");

    // POSIX (open file description) locks: a write lock excludes another.
    let a = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let b = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    ofd_lock(&a, libc::F_WRLCK).unwrap();
    let err = ofd_lock(&b, libc::F_WRLCK).unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)),
        "{err}"
    );
    ofd_lock(&a, libc::F_UNLCK).unwrap();
    ofd_lock(&b, libc::F_WRLCK).unwrap();
    drop((a, b, held));
    f.backend.unmount(&spec.target).unwrap();
}

#[test]
fn shared_writable_mmap_reaches_the_rw_branch() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(1);
    write(&spec.ro[0].join("map"), &"a".repeat(8192));
    f.mount(&spec);
    let path = spec.target.join("map");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // SAFETY: a fresh shared mapping of 8192 bytes of an open file, written
    // only within its length and unmapped before the file is closed.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        let bytes = std::slice::from_raw_parts_mut(p.cast::<u8>(), 8192);
        assert_eq!(bytes[100], b'a');
        bytes[0..5].copy_from_slice(b"hello");
        bytes[8191] = b'z';
        assert_eq!(libc::msync(p, 8192, libc::MS_SYNC), 0);
        assert_eq!(libc::munmap(p, 8192), 0);
    }
    drop(file);
    let through = std::fs::read(&path).unwrap();
    assert_eq!(&through[..5], b"hello");
    assert_eq!(through[8191], b'z');
    let real = std::fs::read(spec.rw.join("map")).unwrap();
    assert_eq!(real, through);
    assert_eq!(
        std::fs::read(spec.ro[0].join("map")).unwrap(),
        "a".repeat(8192).as_bytes()
    );
    f.backend.unmount(&spec.target).unwrap();
}

/// An access ACL (Linux xattr format, version 2): owner rw, user `uid`
/// read, group and others nothing.
fn acl_granting_read_to(uid: u32) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX), // USER_OBJ
        (0x02, 4, uid),            // USER
        (0x04, 0, u32::MAX),       // GROUP_OBJ
        (0x10, 4, u32::MAX),       // MASK
        (0x20, 0, u32::MAX),       // OTHER
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn cat_as_nobody(path: &camino::Utf8Path) -> bool {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "cat",
            path.as_str(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn posix_acls_pass_through_and_are_enforced() {
    if !can_mount() {
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipping: setpriv (util-linux) is missing");
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(1);
    write(&spec.ro[0].join("secret"), "s");
    write(&spec.ro[0].join("shared"), "s");
    for n in ["secret", "shared"] {
        std::fs::set_permissions(spec.ro[0].join(n), PermissionsExt::from_mode(0o600)).unwrap();
    }
    let probe = rustix::fs::setxattr(
        spec.ro[0].join("shared").as_std_path(),
        "system.posix_acl_access",
        &acl_granting_read_to(65534),
        rustix::fs::XattrFlags::empty(),
    );
    if probe.is_err() {
        eprintln!("skipping: the branch filesystem has no POSIX ACLs ({probe:?})");
        return;
    }
    rustix::fs::removexattr(
        spec.ro[0].join("shared").as_std_path(),
        "system.posix_acl_access",
    )
    .unwrap();
    f.mount(&spec);
    let m = &spec.target;
    assert!(!cat_as_nobody(&m.join("shared")), "0600 denies nobody");
    rustix::fs::setxattr(
        m.join("shared").as_std_path(),
        "system.posix_acl_access",
        &acl_granting_read_to(65534),
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    assert!(cat_as_nobody(&m.join("shared")), "the ACL grants nobody");
    assert!(!cat_as_nobody(&m.join("secret")), "no ACL, no access");
    // The ACL lives on the copy in the rw branch; the lower file is intact.
    let mut buf = [0u8; 128];
    let n = rustix::fs::getxattr(
        spec.rw.join("shared").as_std_path(),
        "system.posix_acl_access",
        &mut buf[..],
    )
    .unwrap();
    assert_eq!(&buf[..n], &acl_granting_read_to(65534)[..]);
    assert!(rustix::fs::getxattr(
        spec.ro[0].join("shared").as_std_path(),
        "system.posix_acl_access",
        &mut buf[..]
    )
    .is_err());
    f.backend.unmount(m).unwrap();
}

/// `linkat(AT_FDCWD, "/proc/self/fd/N", AT_FDCWD, dst, AT_SYMLINK_FOLLOW)`:
/// names the open file `f` (how an `O_TMPFILE` file gets a name).
fn link_open_file(f: &std::fs::File, dst: &std::path::Path) -> std::io::Result<()> {
    let src = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
    let dst = std::ffi::CString::new(dst.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: both paths are NUL-terminated strings alive across the call.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn o_tmpfile_makes_an_unnamed_file_that_linkat_names() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(2);
    // `dir` exists only in a read-only branch, with a whiteout-hidden name
    // that the new file takes.
    write(&spec.ro[1].join("dir/old"), "old");
    write(&spec.ro[0].join("dir/.wh.old"), "");
    f.mount(&spec);
    let m = &spec.target;
    let listing = |p: &camino::Utf8Path| {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };

    let mut tmp = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o640)
        .custom_flags(libc::O_TMPFILE)
        .open(m.join("dir"))
        .unwrap();
    tmp.write_all(b"made unnamed").unwrap();
    let md = tmp.metadata().unwrap();
    assert_eq!(md.nlink(), 0);
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert!(
        listing(&m.join("dir")).is_empty(),
        "an unnamed file is listed"
    );
    // The directory was copied up to hold it; nothing else appeared.
    assert!(spec.rw.join("dir").is_dir());
    assert_eq!(listing(&spec.rw.join("dir")), Vec::<String>::new());

    // Opened again through procfs, changed through its descriptor.
    let mut again = std::fs::File::open(format!("/proc/self/fd/{}", tmp.as_raw_fd())).unwrap();
    let mut s = String::new();
    again.read_to_string(&mut s).unwrap();
    assert_eq!(s, "made unnamed");
    std::fs::set_permissions(
        format!("/proc/self/fd/{}", tmp.as_raw_fd()),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    // Named over the whited-out lower name: same inode, content, mode.
    link_open_file(&tmp, m.join("dir/old").as_std_path()).unwrap();
    let named = std::fs::metadata(m.join("dir/old")).unwrap();
    assert_eq!(named.ino(), md.ino());
    assert_eq!(named.nlink(), 1);
    assert_eq!(named.mode() & 0o7777, 0o600);
    assert_eq!(
        std::fs::read_to_string(m.join("dir/old")).unwrap(),
        "made unnamed"
    );
    assert_eq!(listing(&spec.rw.join("dir")), vec!["old".to_string()]);
    assert_eq!(
        std::fs::read_to_string(spec.rw.join("dir/old")).unwrap(),
        "made unnamed"
    );
    // A name that exists already is refused.
    let e = link_open_file(&tmp, m.join("dir/old").as_std_path()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    drop((tmp, again));

    // O_EXCL: never to be named, and gone with its descriptor.
    let excl = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_EXCL)
        .open(m.join("dir"))
        .unwrap();
    let e = link_open_file(&excl, m.join("dir/never").as_std_path()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    drop(excl);
    assert_eq!(listing(&spec.rw.join("dir")), vec!["old".to_string()]);

    // The inode number of the named file survives a remount.
    f.backend.unmount(m).unwrap();
    f.mount(&spec);
    assert_eq!(
        std::fs::metadata(m.join("dir/old")).unwrap().ino(),
        md.ino()
    );
    f.backend.unmount(m).unwrap();
}

#[test]
fn fsync_and_unlinked_open_files() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(1);
    write(&spec.ro[0].join("dir/low"), "low");
    f.mount(&spec);
    let m = &spec.target;

    // fsync and fdatasync of a copied-up file, fsync of a directory.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("dir/low"))
        .unwrap();
    file.write_all(b"LOW").unwrap();
    file.sync_all().unwrap();
    file.sync_data().unwrap();
    std::fs::File::open(m.join("dir"))
        .unwrap()
        .sync_all()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(spec.rw.join("dir/low")).unwrap(),
        "LOW"
    );

    // A file keeps working through its descriptor after its last name goes.
    std::fs::remove_file(m.join("dir/low")).unwrap();
    assert!(spec.rw.join("dir/.wh.low").exists());
    file.write_all(b"+more").unwrap();
    assert_eq!(file.metadata().unwrap().len(), 8);
    file.set_len(2).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 2);
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    file.read_to_string(&mut s).unwrap();
    assert_eq!(s, "LO");
    // ...and opens again through procfs, as any file does.
    let again = std::fs::read_to_string(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
    assert_eq!(again, "LO");
    drop(file);
    f.backend.unmount(m).unwrap();
}

#[test]
fn writers_and_readers_of_one_file_share_it_across_copy_up() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(2);
    write(&spec.ro[1].join("f"), "lower data");
    f.mount(&spec);
    let path = spec.target.join("f");
    // A read-only open of the lower file stays open while a writer copies
    // the file up: both opens must work.
    let mut reader = std::fs::File::open(&path).unwrap();
    let mut writer = OpenOptions::new().write(true).open(&path).unwrap();
    writer.write_all(b"UPPER").unwrap();
    writer.sync_all().unwrap();
    let mut s = String::new();
    reader.read_to_string(&mut s).unwrap();
    // The old reader keeps the lower file (as with overlayfs).
    assert_eq!(s, "lower data");
    // A new reader sees the copy, and so does the writer.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "UPPER data");
    assert_eq!(
        std::fs::read_to_string(spec.rw.join("f")).unwrap(),
        "UPPER data"
    );
    assert_eq!(
        std::fs::read_to_string(spec.ro[1].join("f")).unwrap(),
        "lower data"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        writer.metadata().unwrap().len()
    );
    // Many opens of one rw file, reading and writing, agree.
    let mut opens: Vec<std::fs::File> = (0..4)
        .map(|i| {
            OpenOptions::new()
                .read(true)
                .write(i % 2 == 0)
                .open(&path)
                .unwrap()
        })
        .collect();
    opens[0].write_all(b"again").unwrap();
    let mut s = String::new();
    opens[1].read_to_string(&mut s).unwrap();
    assert_eq!(s, "again data");
    drop(opens);
    drop((reader, writer));
    f.backend.unmount(&spec.target).unwrap();
}

#[test]
fn copied_up_files_keep_their_inode_numbers_across_remounts() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(1);
    write(&spec.ro[0].join("etc/conf"), "v1");
    write(&spec.ro[0].join("etc/other"), "o");
    f.mount(&spec);
    let m = &spec.target;
    let ino = |p: &str| std::fs::symlink_metadata(m.join(p)).unwrap().ino();
    let before = ino("etc/conf");
    std::fs::write(m.join("etc/conf"), "v2").unwrap();
    assert!(spec.rw.join("etc/conf").exists(), "copied up");
    assert_eq!(ino("etc/conf"), before, "same number after copy-up");
    std::fs::write(m.join("fresh"), "n").unwrap();
    let fresh = ino("fresh");
    f.backend.unmount(m).unwrap();

    f.mount(&spec);
    assert_eq!(ino("etc/conf"), before, "same number after remount");
    assert_eq!(ino("fresh"), fresh);
    let listed = std::fs::read_dir(m.join("etc"))
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.file_name() == "conf")
        .unwrap();
    assert_eq!(
        std::os::unix::fs::DirEntryExt::ino(&listed),
        before,
        "readdir agrees"
    );
    assert!(f.backend.xino_path(m).exists());
    // A removed copy gives its number back; a new file under the same rw
    // inode number does not inherit it.
    std::fs::remove_file(m.join("etc/conf")).unwrap();
    std::fs::write(m.join("etc/conf2"), "x").unwrap();
    assert_ne!(ino("etc/conf2"), before);
    f.backend.unmount(m).unwrap();
}
