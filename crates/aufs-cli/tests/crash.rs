//! `aufsctl` killed with SIGKILL at random points of `import`, `apply`,
//! `rm` and `create`: after each kill the next command leaves every layer
//! complete or absent, nothing of the dead command behind, and importing
//! the image again gives its genuine content.

mod common;

use common::image::{dump, layer_tar, Image};
use common::Ctl;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Kills per command.
const KILLS: usize = 24;

/// xorshift64*, seeded from the clock and printed, so a failure can be
/// replayed with `AUFS_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("AUFS_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("AUFS_CRASH_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// A three-layer image, big enough that its applies take a while.
fn image() -> Image {
    let base: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            (
                format!("usr/lib/f{i}"),
                vec![b'a' + (i % 26) as u8; 8192 + i],
            )
        })
        .collect();
    let mid = vec![
        (
            "usr/bin/big".to_owned(),
            (0..800_000u32).map(|i| (i * 7 % 251) as u8).collect(),
        ),
        ("etc/os-release".to_owned(), b"mid\n".to_vec()),
    ];
    let top: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| (format!("app/{i}/conf"), format!("top {i}\n").into_bytes()))
        .chain([("etc/.wh.os-release".to_owned(), Vec::new())])
        .collect();
    Image::new(vec![layer_tar(&base), layer_tar(&mid), layer_tar(&top)])
}

/// The image's layers as a clean import leaves them: each diff dir's dump.
fn genuine(img_path: &Path, img: &Image) -> Vec<BTreeMap<String, String>> {
    let c = Ctl::new();
    c.ok(&["import", img_path.to_str().unwrap()]);
    img.ids.iter().map(|id| dump(&c.diff(id))).collect()
}

/// Runs `args` and SIGKILLs it after a random part of `span`; true when
/// the kill cut it off (false: it had finished). The span follows the
/// machine's load: shorter after a command that finished first, longer
/// after one that was cut off.
fn kill_at_random(c: &Ctl, args: &[&str], span: &mut Duration, rng: &mut Rng) -> bool {
    let mut child = c
        .cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_micros(rng.below(span.as_micros() as u64)));
    let _ = child.kill();
    let cut = child.wait().unwrap().signal() == Some(libc::SIGKILL);
    *span = span.mul_f64(if cut { 1.05 } else { 0.8 });
    cut
}

/// How long `args` takes uninterrupted on a root prepared by `setup`.
fn span_of(setup: impl Fn(&Ctl), args: &[&str]) -> Duration {
    let c = Ctl::new();
    setup(&c);
    let t = Instant::now();
    c.ok(args);
    t.elapsed().mul_f64(1.2)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    v.sort();
    v
}

/// Runs `ls` (the next command after a kill) and checks what it leaves:
/// every layers file is a listed, complete layer with its two dirs, no
/// dir is an orphan, and nothing transient is left. Returns id → parent.
fn check_store(c: &Ctl, what: &str) -> BTreeMap<String, String> {
    let listed: BTreeMap<String, String> = c
        .ok(&["ls"])
        .lines()
        .map(|l| {
            let (id, parent) = l.split_once(' ').unwrap();
            (id.to_owned(), parent.to_owned())
        })
        .collect();
    let ids: Vec<String> = listed.keys().cloned().collect();
    for dir in ["layers", "diff", "mnt"] {
        assert_eq!(names(&c.root.join(dir)), ids, "{what}: {dir}/ against ls");
    }
    for dir in ["incomplete", "staging", "removing"] {
        assert!(
            names(&c.root.join(dir)).is_empty(),
            "{what}: {dir}/ holds {:?}",
            names(&c.root.join(dir))
        );
    }
    for dir in ["layers", "refs", "tar-split"] {
        for n in names(&c.root.join(dir)) {
            assert!(
                !n.contains(".tmp") && !n.starts_with('.'),
                "{what}: temp file {dir}/{n} left"
            );
        }
    }
    listed
}

/// Checks that every present layer of the image is genuine (content and
/// exact bytes) with the right parent; returns how many are present.
fn check_image_layers(
    c: &Ctl,
    img: &Image,
    want: &[BTreeMap<String, String>],
    listed: &BTreeMap<String, String>,
    what: &str,
) -> usize {
    let mut present = 0;
    for (i, id) in img.ids.iter().enumerate() {
        let Some(parent) = listed.get(id) else {
            continue;
        };
        present += 1;
        let want_parent = if i == 0 { "-" } else { img.ids[i - 1].as_str() };
        assert_eq!(parent, want_parent, "{what}: parent of layer {i}");
        assert!(
            dump(&c.diff(id)) == want[i],
            "{what}: layer {i} is not genuine"
        );
        let out = c.cmd().args(["diff", id]).output().unwrap();
        assert!(out.status.success(), "{what}: diff of layer {i}");
        assert!(
            out.stdout == img.layers[i],
            "{what}: layer {i} lost its exact bytes"
        );
    }
    present
}

fn reimport_is_genuine(
    c: &Ctl,
    img_path: &Path,
    img: &Image,
    want: &[BTreeMap<String, String>],
    what: &str,
) {
    let top = c.ok(&["import", img_path.to_str().unwrap()]);
    assert_eq!(top.trim_end(), img.ids[2], "{what}");
    let listed = check_store(c, what);
    assert_eq!(check_image_layers(c, img, want, &listed, what), 3, "{what}");
}

#[test]
fn sigkill_at_random_points_leaves_layers_complete_or_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image();
    let img_path = tmp.path().join("image.tar");
    std::fs::write(&img_path, &img.bytes).unwrap();
    let img_arg = img_path.to_str().unwrap();
    let want = genuine(&img_path, &img);
    let mut rng = Rng::new();
    let mut cut = BTreeMap::new();

    // import into an empty root, then import again.
    let mut span = span_of(|_| {}, &["import", img_arg]);
    for i in 0..KILLS {
        let c = Ctl::new();
        let what = format!("import kill {i}");
        *cut.entry("import").or_insert(0) +=
            kill_at_random(&c, &["import", img_arg], &mut span, &mut rng) as usize;
        let listed = check_store(&c, &what);
        check_image_layers(&c, &img, &want, &listed, &what);
        reimport_is_genuine(&c, &img_path, &img, &want, &what);
    }

    // apply of the biggest layer into a fresh layer.
    let layer_file = tmp.path().join("mid.tar");
    std::fs::write(&layer_file, &img.layers[1]).unwrap();
    let layer_arg = layer_file.to_str().unwrap();
    let mut span = span_of(
        |c| {
            c.ok(&["create", "x"]);
        },
        &["apply", "x", layer_arg],
    );
    let c = Ctl::new();
    for i in 0..KILLS {
        let what = format!("apply kill {i}");
        c.ok(&["create", "x"]);
        *cut.entry("apply").or_insert(0) +=
            kill_at_random(&c, &["apply", "x", layer_arg], &mut span, &mut rng) as usize;
        let listed = check_store(&c, &what);
        assert_eq!(listed.get("x").map(String::as_str), Some("-"), "{what}");
        let got = dump(&c.diff("x"));
        assert!(
            got.is_empty() || got == want[1],
            "{what}: half-applied layer: {got:?}"
        );
        let out = c.cmd().args(["diff", "x"]).output().unwrap();
        assert!(out.status.success(), "{what}: diff");
        c.ok(&["rm", "x"]);
    }
    reimport_is_genuine(&c, &img_path, &img, &want, "apply, then import");

    // rm of the top layer of an imported image, imported again each time.
    let mut span = span_of(
        |c| {
            c.ok(&["import", img_arg]);
        },
        &["rm", &img.ids[2]],
    );
    let c = Ctl::new();
    for i in 0..KILLS {
        let what = format!("rm kill {i}");
        reimport_is_genuine(&c, &img_path, &img, &want, &what);
        *cut.entry("rm").or_insert(0) +=
            kill_at_random(&c, &["rm", &img.ids[2]], &mut span, &mut rng) as usize;
        let listed = check_store(&c, &what);
        assert!(
            check_image_layers(&c, &img, &want, &listed, &what) >= 2,
            "{what}"
        );
    }
    reimport_is_genuine(&c, &img_path, &img, &want, "rm, then import");

    // create of a child layer.
    let mut span = span_of(
        |c| {
            c.ok(&["create", "base"]);
        },
        &["create", "x", "--parent", "base"],
    );
    let c = Ctl::new();
    c.ok(&["create", "base"]);
    for i in 0..KILLS {
        let what = format!("create kill {i}");
        *cut.entry("create").or_insert(0) += kill_at_random(
            &c,
            &["create", "x", "--parent", "base"],
            &mut span,
            &mut rng,
        ) as usize;
        let listed = check_store(&c, &what);
        if let Some(parent) = listed.get("x") {
            assert_eq!(parent, "base", "{what}");
            assert!(dump(&c.diff("x")).is_empty(), "{what}");
            c.ok(&["rm", "x"]);
        }
    }
    reimport_is_genuine(&c, &img_path, &img, &want, "create, then import");

    eprintln!("commands cut off by the kill: {cut:?}");
    for (cmd, n) in &cut {
        assert!(
            *n >= KILLS / 4,
            "{cmd}: only {n} of {KILLS} kills landed before it finished"
        );
    }
}
