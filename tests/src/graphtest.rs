//! moby's `graphtest` content cases (plus containers/storage's
//! `DriverTestEcho`) over a [`Driver`] on a real filesystem: files are
//! written and read with `std::fs` on the paths `get` returns, so with a
//! parent the union mount itself is exercised.
//!
//! `DriverTestDiffApply` and `DriverTestChanges` go through the driver's
//! `diff`, `apply_diff`, `changes` and `diff_size`;
//! [`driver_test_diff_from_ancestor`] adds the case moby leaves to its
//! `NaiveDiffDriver`: a diff against an ancestor that is not the parent.
//! `DriverTestEcho` checks the entries of each layer's diff dir that
//! Docker's aufs `Changes` reads (every entry except `.wh..wh.*` metadata).

use aufs_driver::{Change, ChangeKind, CreateOpts, Driver};
use aufs_model::LayerId;
use camino::{Utf8Path, Utf8PathBuf};
use nix::sys::stat::{umask, Mode};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::{Mutex, MutexGuard};

/// The mode `get` shows for the root of a new layer.
pub const DEFAULT_PERMS: u32 = 0o755;
const SUBDIR: &str = "a subdir";
const SUBDIR_PERMS: u32 = 0o705 | libc::S_ISVTX;
const SUBDIR_OWNER: (u32, u32) = (1, 2);
const FILE: &str = "a file";
const FILE_PERMS: u32 = 0o222 | libc::S_ISUID;
const FILE_DATA: &[u8] = b"Some data";

fn id(s: &str) -> LayerId {
    LayerId::new(s).unwrap_or_else(|e| panic!("layer id {s:?}: {e}"))
}

fn no_opts() -> CreateOpts {
    CreateOpts::default()
}

/// A 64-hex-digit layer id (what `stringid.GenerateRandomID` makes),
/// derived from `seed` so runs are reproducible.
pub fn layer_id(seed: u64) -> LayerId {
    let mut rng = SplitMix(seed);
    id(&(0..4)
        .map(|_| format!("{:016x}", rng.next_u64()))
        .collect::<String>())
}

/// A small seeded generator (splitmix64): reproducible content, no
/// dependency.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (which must not be 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `size` bytes derived from `seed` (graphtest's `randomContent`).
pub fn random_content(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix(seed);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(size);
    out
}

/// Holds the process umask at 0, as graphtest's `createBase` does "to be
/// able to set any perms"; restores it on drop. The umask is per process,
/// so holders are serialised.
#[derive(Debug)]
struct ZeroUmask {
    old: Mode,
    _serial: MutexGuard<'static, ()>,
}

impl ZeroUmask {
    fn set() -> Self {
        static SERIAL: Mutex<()> = Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        ZeroUmask {
            old: umask(Mode::empty()),
            _serial: serial,
        }
    }
}

impl Drop for ZeroUmask {
    fn drop(&mut self) {
        umask(self.old);
    }
}

/// Checks type, permission bits (with sticky, set-uid, set-gid) and owner
/// of `path`, following symlinks as `os.Stat` does.
pub fn verify_file(path: &Utf8Path, file_type: u32, perms: u32, uid: u32, gid: u32) {
    let md = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {path}: {e}"));
    let mode = md.mode();
    assert_eq!(mode & libc::S_IFMT, file_type, "type of {path}: {mode:o}");
    assert_eq!(mode & 0o7777, perms, "mode of {path}: {mode:o}");
    assert_eq!((md.uid(), md.gid()), (uid, gid), "owner of {path}");
}

/// The names in `dir`, without `lost+found` (which ext4 roots always have).
pub fn read_dir(dir: &Utf8Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("read {dir}: {e}"))
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .filter(|n| n != "lost+found")
        .collect()
}

/// Runs `f` on the root of `layer` between a `get` and a `put`.
pub fn with_layer<T>(driver: &Driver, layer: &LayerId, f: impl FnOnce(&Utf8Path) -> T) -> T {
    let root = driver
        .get(layer, "")
        .unwrap_or_else(|e| panic!("get {layer}: {e}"));
    let out = f(&root);
    driver
        .put(layer)
        .unwrap_or_else(|e| panic!("put {layer}: {e}"));
    out
}

fn write_file(path: &Utf8Path, data: &[u8], mode: u32) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
    f.write_all(data)
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
}

fn mkdir(path: &Utf8Path, mode: u32) {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .unwrap_or_else(|e| panic!("mkdir {path}: {e}"));
}

fn read(path: &Utf8Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// graphtest `createBase`: a read-write layer with `a subdir` (0705, sticky,
/// owned 1:2) and `a file` ("Some data", 0222, set-uid), made under umask 0.
pub fn create_base(driver: &Driver, name: &LayerId) {
    let _umask = ZeroUmask::set();
    driver
        .create_read_write(name, None, &no_opts())
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    with_layer(driver, name, |root| {
        let subdir = root.join(SUBDIR);
        mkdir(&subdir, SUBDIR_PERMS);
        std::os::unix::fs::lchown(&subdir, Some(SUBDIR_OWNER.0), Some(SUBDIR_OWNER.1))
            .unwrap_or_else(|e| panic!("lchown {subdir}: {e}"));
        write_file(&root.join(FILE), FILE_DATA, FILE_PERMS);
    });
}

/// graphtest `verifyBase`: exactly the two entries of [`create_base`], with
/// their modes and owners.
pub fn verify_base(driver: &Driver, name: &LayerId) {
    with_layer(driver, name, |root| {
        verify_file(
            &root.join(SUBDIR),
            libc::S_IFDIR,
            SUBDIR_PERMS,
            SUBDIR_OWNER.0,
            SUBDIR_OWNER.1,
        );
        verify_file(&root.join(FILE), libc::S_IFREG, FILE_PERMS, 0, 0);
        assert_eq!(read(&root.join(FILE)), FILE_DATA, "content of {FILE}");
        assert_eq!(
            read_dir(root),
            [FILE, SUBDIR].map(String::from).into(),
            "entries of {name}"
        );
    });
}

fn remove_layers(driver: &Driver, top_first: &[LayerId]) {
    for l in top_first {
        driver
            .remove(l)
            .unwrap_or_else(|e| panic!("remove {l}: {e}"));
        assert!(!driver.exists(l), "{l} still exists after remove");
    }
}

/// DriverTestCreateEmpty: a new layer is an empty 0755 directory owned by
/// root.
pub fn driver_test_create_empty(driver: &Driver) {
    let empty = id("empty");
    driver
        .create(&empty, None, &no_opts())
        .expect("create empty");
    assert!(driver.exists(&empty), "newly created layer does not exist");
    with_layer(driver, &empty, |dir| {
        verify_file(dir, libc::S_IFDIR, DEFAULT_PERMS, 0, 0);
        assert!(read_dir(dir).is_empty(), "new layer is not empty");
    });
    remove_layers(driver, &[empty]);
}

/// DriverTestCreateBase.
pub fn driver_test_create_base(driver: &Driver) {
    let base = id("Base");
    create_base(driver, &base);
    verify_base(driver, &base);
    remove_layers(driver, &[base]);
}

/// DriverTestCreateSnap: a layer on the base shows the base's entries with
/// their metadata, through the union, over an empty root of its own.
pub fn driver_test_create_snap(driver: &Driver) {
    let (base, snap) = (id("Base"), id("Snap"));
    create_base(driver, &base);
    driver
        .create(&snap, Some(&base), &no_opts())
        .expect("create Snap");
    verify_base(driver, &snap);
    with_layer(driver, &snap, |root| {
        verify_file(root, libc::S_IFDIR, DEFAULT_PERMS, 0, 0);
    });
    // Reading through the union copied nothing up.
    assert!(
        read_dir(&driver.layout().diff_dir(&snap))
            .iter()
            .all(|n| n.starts_with(".wh..wh.")),
        "reading Snap changed its diff"
    );
    remove_layers(driver, &[snap, base]);
}

/// graphtest `addLayerFiles`: `top-id` (overwritten by every layer),
/// `layer-<i>/layer-id` and `layer-<i>/parent-id`.
fn add_layer_files(driver: &Driver, layer: &LayerId, parent: &LayerId, i: usize) {
    with_layer(driver, layer, |root| {
        write_file(&root.join("top-id"), layer.as_str().as_bytes(), 0o755);
        let dir = root.join(format!("layer-{i}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {dir}: {e}"));
        write_file(&dir.join("layer-id"), layer.as_str().as_bytes(), 0o755);
        write_file(&dir.join("parent-id"), parent.as_str().as_bytes(), 0o755);
    });
}

/// graphtest `addManyLayers`: `count` layers on `base`, each written
/// through its own union; returns them bottom first.
fn add_many_layers(driver: &Driver, base: &LayerId, count: usize, seed: u64) -> Vec<LayerId> {
    let mut layers = Vec::with_capacity(count);
    let mut last = base.clone();
    for i in 1..=count {
        let next = layer_id(seed.wrapping_mul(1000).wrapping_add(i as u64));
        driver
            .create(&next, Some(&last), &no_opts())
            .unwrap_or_else(|e| panic!("create layer {i}: {e}"));
        add_layer_files(driver, &next, &last, i);
        layers.push(next.clone());
        last = next;
    }
    layers
}

/// graphtest `checkManyLayers`: from the top, each `layer-<i>/layer-id`
/// names the layer whose `parent-id` the level above named.
fn check_many_layers(driver: &Driver, top: &LayerId, count: usize) {
    with_layer(driver, top, |root| {
        let mut expected = read(&root.join("top-id"));
        assert_eq!(expected, top.as_str().as_bytes(), "top-id");
        for i in (1..=count).rev() {
            let dir = root.join(format!("layer-{i}"));
            assert_eq!(read(&dir.join("layer-id")), expected, "layer-{i}/layer-id");
            expected = read(&dir.join("parent-id"));
        }
    });
}

/// DriverTestDeepLayerRead: a file of the base is read through `layers`
/// layers, and every layer's files show at the top.
pub fn driver_test_deep_layer_read(driver: &Driver, layers: usize) {
    let base = layer_id(0xba5e);
    let content = b"test content";
    driver.create(&base, None, &no_opts()).expect("create base");
    with_layer(driver, &base, |root| {
        write_file(&root.join("testfile.txt"), content, 0o755);
    });
    let stack = add_many_layers(driver, &base, layers, 0xdee9);
    let top = stack.last().unwrap_or(&base).clone();
    check_many_layers(driver, &top, layers);
    with_layer(driver, &top, |root| {
        assert_eq!(read(&root.join("testfile.txt")), content, "base file");
    });
    // Each layer's diff holds only what it wrote.
    for (i, l) in stack.iter().enumerate() {
        let diff = driver.layout().diff_dir(l);
        let names: BTreeSet<String> = read_dir(&diff)
            .into_iter()
            .filter(|n| !n.starts_with(".wh..wh."))
            .collect();
        assert_eq!(
            names,
            ["top-id".to_string(), format!("layer-{}", i + 1)].into(),
            "diff of layer {}",
            i + 1
        );
    }
    let mut all: Vec<LayerId> = stack;
    all.reverse();
    all.push(base);
    remove_layers(driver, &all);
}

/// Every path in `dir` (relative, `/`-rooted) but aufs metadata
/// (`.wh..wh.*`), which Docker's aufs `Changes` skips too.
pub fn diff_entries(dir: &Utf8Path) -> BTreeSet<String> {
    fn rec(base: &Utf8Path, dir: &Utf8Path, out: &mut BTreeSet<String>) {
        for name in read_dir(dir) {
            if name.starts_with(".wh..wh.") {
                continue;
            }
            let p = dir.join(&name);
            let md = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {p}: {e}"));
            // A layer mounted stacked right now is in overlay form: its
            // whiteouts are character devices 0/0, read as the aufs
            // whiteouts they become at unmount.
            let shown = if md.file_type().is_char_device() && md.rdev() == 0 {
                dir.join(format!(".wh.{name}"))
            } else {
                p.clone()
            };
            out.insert(format!(
                "/{}",
                shown.strip_prefix(base).expect("below the base")
            ));
            if md.is_dir() {
                rec(base, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    rec(dir, dir, &mut out);
    out
}

/// The whiteout path of `/a/b/c` (`/a/b/.wh.c`).
fn whiteout_of(path: &str) -> String {
    let (parent, name) = path.rsplit_once('/').expect("absolute path");
    format!("{parent}/.wh.{name}")
}

fn at(root: &Utf8Path, path: &str) -> Utf8PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// containers/storage DriverTestEcho, for 10 depths: a base with nested
/// `subdir1/…/subdir9/file`; a second layer removes the path at `depth`
/// through its union; a third recreates it. Each layer's `Changes` against
/// its parent, taken while it is mounted, are exactly as the Go test
/// expects: the base all added; the second the ancestors modified and the
/// path deleted; the third the ancestors modified and the recreated entries
/// added (ancestors only copied up may also be unchanged, as in kernel aufs:
/// see [`check_changes_copied_up`]). The diff dirs they are computed from
/// hold those entries, the deletion as one whiteout.
pub fn driver_test_echo(driver: &Driver) {
    const COMPONENTS: usize = 10;
    for depth in 0..COMPONENTS {
        let seed = 0xec40 + depth as u64 * 3;
        let (base, second, third) = (layer_id(seed), layer_id(seed + 1), layer_id(seed + 2));
        create_base(driver, &base);
        verify_base(driver, &base);

        let mut paths = Vec::new();
        let mut path = String::new();
        for i in 1..COMPONENTS {
            path = format!("{path}/subdir{i}");
            paths.push(path.clone());
        }
        paths.push(format!("{path}/file"));
        let content = random_content(128, depth as u64);

        let root = driver.get(&base, "").expect("get base");
        for p in &paths[..COMPONENTS - 1] {
            mkdir(&at(&root, p), 0o700);
        }
        write_file(&at(&root, &paths[COMPONENTS - 1]), &content, 0o600);
        let mut added: BTreeSet<String> = ["/a file", "/a subdir"].map(String::from).into();
        added.extend(paths.iter().cloned());
        check_changes(
            added.iter().map(|p| (p.clone(), ChangeKind::Add)).collect(),
            &driver.changes(&base, None).expect("changes of base"),
        );
        assert_eq!(
            diff_entries(&driver.layout().diff_dir(&base)),
            added,
            "depth {depth}: base"
        );

        driver
            .create(&second, Some(&base), &no_opts())
            .expect("create second");
        let root2 = driver.get(&second, "").expect("get second");
        let gone = at(&root2, &paths[depth]);
        if depth == COMPONENTS - 1 {
            std::fs::remove_file(&gone)
        } else {
            std::fs::remove_dir_all(&gone)
        }
        .unwrap_or_else(|e| panic!("depth {depth}: remove {gone}: {e}"));
        assert!(
            std::fs::symlink_metadata(&gone).is_err(),
            "depth {depth}: {gone} still shows"
        );
        for p in &paths[..depth] {
            verify_file(&at(&root2, p), libc::S_IFDIR, 0o700, 0, 0);
        }
        // The directory an entry was removed from or made in changed; the
        // ones above it were only copied up (see `check_changes_copied_up`).
        let changed_parent: Vec<(String, ChangeKind)> = depth
            .checked_sub(1)
            .map(|d| (paths[d].clone(), ChangeKind::Modify))
            .into_iter()
            .collect();
        let copied_up = &paths[..depth.saturating_sub(1)];
        check_changes_copied_up(
            changed_parent
                .iter()
                .cloned()
                .chain([(paths[depth].clone(), ChangeKind::Delete)])
                .collect(),
            copied_up,
            &driver
                .changes(&second, Some(&base))
                .expect("changes of second"),
        );
        let mut expected: BTreeSet<String> = paths[..depth].iter().cloned().collect();
        expected.insert(whiteout_of(&paths[depth]));
        assert_eq!(
            diff_entries(&driver.layout().diff_dir(&second)),
            expected,
            "depth {depth}: second (modified ancestors and one deletion)"
        );

        driver
            .create(&third, Some(&second), &no_opts())
            .expect("create third");
        let root3 = driver.get(&third, "").expect("get third");
        assert!(
            std::fs::symlink_metadata(at(&root3, &paths[depth])).is_err(),
            "depth {depth}: the third layer shows what the second removed"
        );
        for p in &paths[depth..COMPONENTS - 1] {
            mkdir(&at(&root3, p), 0o700);
        }
        write_file(&at(&root3, &paths[COMPONENTS - 1]), &content, 0o600);
        assert_eq!(read(&at(&root3, &paths[COMPONENTS - 1])), content);
        let added = paths[depth..].iter().map(|p| (p.clone(), ChangeKind::Add));
        check_changes_copied_up(
            changed_parent.into_iter().chain(added).collect(),
            copied_up,
            &driver
                .changes(&third, Some(&second))
                .expect("changes of third"),
        );
        let expected: BTreeSet<String> = paths.iter().cloned().collect();
        assert_eq!(
            diff_entries(&driver.layout().diff_dir(&third)),
            expected,
            "depth {depth}: third (modified ancestors and additions)"
        );
        // A recreated directory is new: nothing of the base shows in it.
        if depth < COMPONENTS - 1 {
            assert_eq!(
                read_dir(&at(&root3, &paths[depth])),
                [paths[depth + 1].rsplit('/').next().unwrap().to_string()].into(),
                "depth {depth}: recreated dir"
            );
        }
        // The lower layers' own views are untouched.
        assert!(std::fs::symlink_metadata(at(&root2, &paths[depth])).is_err());
        assert_eq!(read(&at(&root, &paths[COMPONENTS - 1])), content);

        for l in [&third, &second, &base] {
            driver.put(l).unwrap_or_else(|e| panic!("put {l}: {e}"));
        }
        remove_layers(driver, &[third, second, base]);
    }
}

fn mkdir_all(path: &Utf8Path, mode: u32) {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .unwrap_or_else(|e| panic!("mkdir -p {path}: {e}"));
}

/// graphtest `addFile`: one 0755 file written through the layer's root.
pub fn add_file(driver: &Driver, layer: &LayerId, name: &str, content: &[u8]) {
    with_layer(driver, layer, |root| {
        write_file(&root.join(name), content, 0o755)
    });
}

/// graphtest `addDirectory`: `MkdirAll(dir, 0755)`.
pub fn add_directory(driver: &Driver, layer: &LayerId, dir: &str) {
    with_layer(driver, layer, |root| mkdir_all(&root.join(dir), 0o755));
}

/// graphtest `removeAll`: `RemoveAll` of each name (absent names are fine).
pub fn remove_all(driver: &Driver, layer: &LayerId, names: &[&str]) {
    with_layer(driver, layer, |root| {
        for name in names {
            let path = root.join(name);
            let removed = match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
                Ok(md) if md.is_dir() => std::fs::remove_dir_all(&path),
                Ok(_) => std::fs::remove_file(&path),
            };
            removed.unwrap_or_else(|e| panic!("remove {path}: {e}"));
        }
    });
}

/// graphtest `checkFile`: `name` in the layer holds exactly `content`.
pub fn check_file(driver: &Driver, layer: &LayerId, name: &str, content: &[u8]) {
    with_layer(driver, layer, |root| {
        assert_eq!(
            read(&root.join(name)),
            content,
            "content of {name} in {layer}"
        );
    });
}

/// graphtest `checkFileRemoved`: `stat` of `name` fails with "not found".
pub fn check_file_removed(driver: &Driver, layer: &LayerId, name: &str) {
    with_layer(driver, layer, |root| {
        let path = root.join(name);
        match std::fs::metadata(&path) {
            Ok(_) => panic!("file still exists: {path}"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("stat {path}: {e}"),
        }
    });
}

/// The file names graphtest's `addManyFiles` family uses: for each
/// `directory-<i>` (one per 100 files), the indexes of its `file-<n>`.
fn many_files(count: usize) -> impl Iterator<Item = (String, std::ops::Range<usize>)> {
    (0..count)
        .step_by(100)
        .map(move |i| (format!("directory-{i}"), i..count.min(i + 100)))
}

/// graphtest `addManyFiles`: `count` files of 64 bytes seeded with
/// `seed + n`, `directory-<i>/file-<n>`, 100 to a directory.
pub fn add_many_files(driver: &Driver, layer: &LayerId, count: usize, seed: u64) {
    with_layer(driver, layer, |root| {
        for (dir, files) in many_files(count) {
            let dir = root.join(dir);
            mkdir_all(&dir, 0o755);
            for n in files {
                let content = random_content(64, seed + n as u64);
                write_file(&dir.join(format!("file-{n}")), &content, 0o755);
            }
        }
    });
}

/// graphtest `changeManyFiles`: in each directory of [`add_many_files`],
/// file `n` (counting from the directory's first) is rewritten when
/// `n % 3 == 0`, gets a new sibling `file-<seed>-<n>` when 1, is removed
/// when 2. Returns the changes made: those and a `C` of each directory.
pub fn change_many_files(
    driver: &Driver,
    layer: &LayerId,
    count: usize,
    seed: u64,
) -> Vec<(String, ChangeKind)> {
    with_layer(driver, layer, |root| {
        let mut changes = Vec::new();
        for (dir, files) in many_files(count) {
            let archive_root = format!("/{dir}");
            mkdir_all(&at(root, &archive_root), 0o755);
            changes.push((archive_root.clone(), ChangeKind::Modify));
            let first = files.start;
            for n in files {
                let content = random_content(64, seed + n as u64);
                let change = match (n - first) % 3 {
                    0 => {
                        let path = format!("{archive_root}/file-{n}");
                        write_file(&at(root, &path), &content, 0o755);
                        (path, ChangeKind::Modify)
                    }
                    1 => {
                        let path = format!("{archive_root}/file-{seed}-{n}");
                        write_file(&at(root, &path), &content, 0o755);
                        (path, ChangeKind::Add)
                    }
                    _ => {
                        let path = format!("{archive_root}/file-{n}");
                        let full = at(root, &path);
                        std::fs::remove_file(&full)
                            .unwrap_or_else(|e| panic!("remove {full}: {e}"));
                        (path, ChangeKind::Delete)
                    }
                };
                changes.push(change);
            }
        }
        changes
    })
}

/// graphtest `checkManyFiles`: every file of [`add_many_files`] holds the
/// content of `seed`.
pub fn check_many_files(driver: &Driver, layer: &LayerId, count: usize, seed: u64) {
    with_layer(driver, layer, |root| {
        for (dir, files) in many_files(count) {
            for n in files {
                let file = root.join(&dir).join(format!("file-{n}"));
                assert_eq!(
                    read(&file),
                    random_content(64, seed + n as u64),
                    "mismatched file content of {file}"
                );
            }
        }
    });
}

/// [`check_changes`], where each directory of `copied_up` may also show as
/// `Modify`. Such a directory was only copied up into the layer on the way
/// to a change below it: kernel aufs and overlayfs keep its times (both
/// restore a parent's times after making an entry in it for themselves),
/// so it is unchanged; the FUSE union gives it the time of the copy-up.
pub fn check_changes_copied_up(
    expected: Vec<(String, ChangeKind)>,
    copied_up: &[String],
    actual: &[Change],
) {
    let extra: Vec<(String, ChangeKind)> = actual
        .iter()
        .filter(|c| c.kind == ChangeKind::Modify && copied_up.contains(&c.path))
        .filter(|c| !expected.iter().any(|(p, _)| *p == c.path))
        .map(|c| (c.path.clone(), c.kind))
        .collect();
    check_changes(expected.into_iter().chain(extra).collect(), actual);
}

/// graphtest `checkChanges`: the same number of changes and, both sorted
/// by (path, kind), the same ones.
pub fn check_changes(mut expected: Vec<(String, ChangeKind)>, actual: &[Change]) {
    assert_eq!(
        expected.len(),
        actual.len(),
        "unexpected number of changes: expected {expected:?}, got {actual:?}"
    );
    let mut actual: Vec<(String, ChangeKind)> =
        actual.iter().map(|c| (c.path.clone(), c.kind)).collect();
    expected.sort();
    actual.sort();
    for (e, a) in expected.iter().zip(&actual) {
        assert_eq!(e, a, "unexpected change");
    }
}

/// DriverTestDiffApply: a layer's diff against its parent, applied to a
/// fresh layer on that parent, reproduces it: the applied size equals
/// `DiffSize(upper, "")`, rewritten files show their new content and
/// removed ones (a file and a directory) are gone.
pub fn driver_test_diff_apply(driver: &Driver, file_count: usize) {
    const DELETE_FILE: &str = "file-remove.txt";
    const DELETE_FILE_CONTENT: &[u8] = b"This file should get removed in upper!";
    const DELETE_DIR: &str = "var/lib";
    let seed = 0xd1ff_0000 + file_count as u64 * 3;
    let (base, upper, diff) = (layer_id(seed), layer_id(seed + 1), layer_id(seed + 2));

    driver.create(&base, None, &no_opts()).expect("create base");
    add_many_files(driver, &base, file_count, 3);
    add_file(driver, &base, DELETE_FILE, DELETE_FILE_CONTENT);
    add_directory(driver, &base, DELETE_DIR);

    driver
        .create(&upper, Some(&base), &no_opts())
        .expect("create upper");
    add_many_files(driver, &upper, file_count, 6);
    remove_all(driver, &upper, &[DELETE_FILE, DELETE_DIR]);

    let diff_size = driver.diff_size(&upper, None).expect("diff size of upper");

    driver
        .create(&diff, Some(&base), &no_opts())
        .expect("create diff");
    check_many_files(driver, &diff, file_count, 3);
    check_file(driver, &diff, DELETE_FILE, DELETE_FILE_CONTENT);

    let mut arch = Vec::new();
    let written = driver
        .diff(&upper, Some(&base), &mut arch)
        .expect("diff of upper");
    assert_eq!(written, arch.len() as u64, "bytes written by diff");

    let applied = driver
        .apply_diff(&diff, Some(&base), &arch[..])
        .expect("apply diff");
    assert_eq!(applied.size, diff_size, "Apply diff size different");

    check_many_files(driver, &diff, file_count, 6);
    check_file_removed(driver, &diff, DELETE_FILE);
    check_file_removed(driver, &diff, DELETE_DIR);
}

/// DriverTestChanges: the changes computed for a layer against its parent
/// are exactly the changes [`change_many_files`] made.
pub fn driver_test_changes(driver: &Driver) {
    let (base, upper) = (layer_id(0xc4a0), layer_id(0xc4a1));
    driver.create(&base, None, &no_opts()).expect("create base");
    add_many_files(driver, &base, 20, 3);
    driver
        .create(&upper, Some(&base), &no_opts())
        .expect("create upper");
    let expected = change_many_files(driver, &upper, 20, 6);
    let changes = driver
        .changes(&upper, Some(&base))
        .expect("changes of upper");
    check_changes(expected, &changes);
}

/// What a tree shows of one entry: `st_mode`, owner, and the file's bytes
/// or the link's target (empty for anything else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Content of a regular file, target of a symlink.
    pub data: Vec<u8>,
}

/// Every entry below `root` (paths `/`-rooted) as it shows, not following
/// symlinks; times are left out.
pub fn visible_tree(root: &Utf8Path) -> BTreeMap<String, Shown> {
    fn rec(base: &Utf8Path, dir: &Utf8Path, out: &mut BTreeMap<String, Shown>) {
        for name in read_dir(dir) {
            let p = dir.join(&name);
            let md = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat {p}: {e}"));
            let data = if md.file_type().is_file() {
                read(&p)
            } else if md.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap_or_else(|e| panic!("readlink {p}: {e}"));
                std::os::unix::ffi::OsStringExt::into_vec(target.into_os_string())
            } else {
                Vec::new()
            };
            let rel = format!("/{}", p.strip_prefix(base).expect("below the base"));
            out.insert(
                rel,
                Shown {
                    mode: md.mode(),
                    uid: md.uid(),
                    gid: md.gid(),
                    data,
                },
            );
            if md.is_dir() {
                rec(base, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    rec(root, root, &mut out);
    out
}

/// `diff`, `changes` and `diff_size` against an ancestor that is not the
/// parent (moby hands these to its `NaiveDiffDriver`, which compares the
/// two mounted trees), on a chain grandparent → middle → top; with
/// `grandparent_has_parent` the grandparent sits on a bottom layer, so both
/// compared trees are unions. What the middle layer changed must be part of
/// the diff; applied to a fresh layer on the grandparent, it shows the same
/// tree as the top. With no ancestor every visible entry is added.
pub fn driver_test_diff_from_ancestor(driver: &Driver, grandparent_has_parent: bool) {
    let seed = if grandparent_has_parent {
        0xa2c0_0010
    } else {
        0xa2c0_0000
    };
    let [bottom, grand, middle, top, copy] = [0, 1, 2, 3, 4].map(|i| layer_id(seed + i));
    const CONF: &[u8] = b"v2 from the middle layer";
    let big = random_content(5000, seed);

    let below_grand = grandparent_has_parent.then(|| {
        driver
            .create(&bottom, None, &no_opts())
            .expect("create bottom");
        add_file(driver, &bottom, "bottom", b"bottom");
        bottom.clone()
    });
    driver
        .create(&grand, below_grand.as_ref(), &no_opts())
        .expect("create grandparent");
    with_layer(driver, &grand, |root| {
        write_file(&root.join("keep"), b"keep", 0o644);
        mkdir(&root.join("etc"), 0o755);
        write_file(&root.join("etc/conf"), b"v1", 0o644);
        write_file(&root.join("etc/old"), b"old", 0o644);
        mkdir(&root.join("data"), 0o755);
        write_file(
            &root.join("data/big"),
            &random_content(4096, seed + 1),
            0o644,
        );
        mkdir(&root.join("gone-dir"), 0o755);
        write_file(&root.join("gone-dir/x"), b"x", 0o644);
    });

    driver
        .create(&middle, Some(&grand), &no_opts())
        .expect("create middle");
    with_layer(driver, &middle, |root| {
        write_file(&root.join("etc/conf"), CONF, 0o644);
        write_file(&root.join("mid-only"), b"mid", 0o600);
        std::os::unix::fs::symlink("etc/conf", root.join("link"))
            .unwrap_or_else(|e| panic!("symlink in {middle}: {e}"));
        std::fs::remove_file(root.join("etc/old")).expect("remove etc/old");
        std::fs::remove_dir_all(root.join("gone-dir")).expect("remove gone-dir");
    });

    driver
        .create(&top, Some(&middle), &no_opts())
        .expect("create top");
    with_layer(driver, &top, |root| {
        write_file(&root.join("top-only"), b"top", 0o644);
        write_file(&root.join("data/big"), &big, 0o644);
        std::fs::set_permissions(root.join("keep"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod keep");
    });

    use ChangeKind::{Add, Delete, Modify};
    let expected: Vec<(String, ChangeKind)> = [
        ("/data", Modify),
        ("/data/big", Modify),
        ("/etc", Modify),
        ("/etc/conf", Modify),
        ("/etc/old", Delete),
        ("/gone-dir", Delete),
        ("/keep", Modify),
        ("/link", Add),
        ("/mid-only", Add),
        ("/top-only", Add),
    ]
    .map(|(p, k)| (p.to_string(), k))
    .into();
    let changes = driver
        .changes(&top, Some(&grand))
        .expect("changes against the grandparent");
    check_changes(expected, &changes);

    // Docker's `ChangesSize`: added and modified non-directories, a
    // symlink counting its target's length.
    let expected_size = big.len() + CONF.len() + b"keep".len() + "etc/conf".len() + 3 + 3;
    let size = driver
        .diff_size(&top, Some(&grand))
        .expect("diff size against the grandparent");
    assert_eq!(
        size, expected_size as u64,
        "diff size against the grandparent"
    );

    let mut arch = Vec::new();
    let written = driver
        .diff(&top, Some(&grand), &mut arch)
        .expect("diff against the grandparent");
    assert_eq!(written, arch.len() as u64, "bytes written by diff");

    driver
        .create(&copy, Some(&grand), &no_opts())
        .expect("create copy");
    let applied = driver
        .apply_diff(&copy, Some(&grand), &arch[..])
        .expect("apply the diff to the copy");
    assert_eq!(applied.size, size, "applied size");
    // The copy's diff dir is what the tarball held.
    let copy_diff = driver.layout().diff_dir(&copy);
    assert_eq!(
        diff_entries(&copy_diff),
        [
            "/.wh.gone-dir",
            "/data",
            "/data/big",
            "/etc",
            "/etc/.wh.old",
            "/etc/conf",
            "/keep",
            "/link",
            "/mid-only",
            "/top-only",
        ]
        .map(String::from)
        .into(),
        "entries of the diff against the grandparent"
    );
    assert_eq!(
        read(&copy_diff.join("etc/conf")),
        CONF,
        "middle layer's etc/conf"
    );

    let top_tree = with_layer(driver, &top, visible_tree);
    let copy_tree = with_layer(driver, &copy, visible_tree);
    assert_eq!(copy_tree, top_tree, "copy and top show different trees");
    assert_eq!(top_tree["/link"].data, b"etc/conf", "link target");
    assert_eq!(top_tree["/keep"].mode & 0o7777, 0o600, "mode of /keep");

    // No ancestor: everything the top shows is added.
    let all_added: Vec<(String, ChangeKind)> = top_tree.keys().map(|p| (p.clone(), Add)).collect();
    let changes = driver.changes(&top, None).expect("changes against nothing");
    check_changes(all_added, &changes);
    let non_dirs: usize = top_tree
        .values()
        .filter(|s| s.mode & libc::S_IFMT != libc::S_IFDIR)
        .map(|s| s.data.len())
        .sum();
    assert_eq!(
        driver
            .diff_size(&top, None)
            .expect("diff size against nothing"),
        non_dirs as u64,
        "diff size against nothing"
    );

    // A layer that is no ancestor is refused.
    assert!(
        driver.changes(&top, Some(&copy)).is_err(),
        "changes against a layer off the chain"
    );
    for l in [&top, &middle, &grand, &copy] {
        assert_eq!(
            driver.references(l).expect("references"),
            0,
            "{l} left mounted"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_content_are_reproducible() {
        assert_eq!(layer_id(7), layer_id(7));
        assert_ne!(layer_id(7), layer_id(8));
        assert_eq!(layer_id(7).as_str().len(), 64);
        assert_eq!(random_content(128, 3), random_content(128, 3));
        assert_ne!(random_content(128, 3), random_content(128, 4));
        assert_eq!(random_content(13, 1).len(), 13);
    }

    #[test]
    fn many_files_go_100_to_a_directory() {
        let dirs: Vec<_> = many_files(250).collect();
        assert_eq!(
            dirs,
            vec![
                ("directory-0".to_string(), 0..100),
                ("directory-100".to_string(), 100..200),
                ("directory-200".to_string(), 200..250),
            ]
        );
        assert_eq!(many_files(0).count(), 0);
    }

    #[test]
    fn whiteout_paths() {
        assert_eq!(whiteout_of("/subdir1"), "/.wh.subdir1");
        assert_eq!(whiteout_of("/a/b/file"), "/a/b/.wh.file");
    }
}
