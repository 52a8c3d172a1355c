//! A corpus of hostile tarballs: each must fail (or be contained) without
//! touching anything outside the diff dir, and a failed apply leaves the
//! layer as it was.

use std::fs;

use aufs_archive::{apply_layer, ApplyOptions};
use camino::Utf8PathBuf;

use crate::util::*;

struct Case {
    name: &'static str,
    tar: Vec<u8>,
    /// Substring of the error, or None when the archive must apply (contained).
    error: Option<&'static str>,
}

fn hdr_with(kind: u8, name: &[u8], size: u64, f: impl FnOnce(&mut tar::Header)) -> tar::Header {
    let mut h = RawTar::header(kind, name, size);
    f(&mut h);
    h.set_cksum();
    h
}

fn corpus(outside: &Utf8PathBuf) -> Vec<Case> {
    let victim = outside.join("victim");
    let out_abs = outside.as_str();
    let mut cases = vec![
        Case {
            name: "dotdot",
            tar: RawTar::new().file("../outside/victim", b"pwned").end(),
            error: Some("escapes the layer root"),
        },
        Case {
            name: "nested dotdot",
            tar: RawTar::new().file("a/../../outside/victim", b"pwned").end(),
            error: Some("escapes the layer root"),
        },
        Case {
            name: "absolute path is contained",
            tar: RawTar::new().file(victim.as_str(), b"pwned").end(),
            error: None,
        },
        Case {
            name: "symlinked parent (relative)",
            tar: RawTar::new()
                .link(b'2', "evil", "../outside")
                .file("evil/victim", b"pwned")
                .end(),
            error: Some("invalid symlink"),
        },
        Case {
            name: "endless PAX headers before one entry",
            tar: {
                let mut t = RawTar::new();
                let big = vec![b'x'; 1000 * 1000];
                for _ in 0..5 {
                    t.pax(&[("comment", &big[..])]);
                }
                t.file("f", b"x").end()
            },
            error: Some("PAX headers before one entry exceed"),
        },
        Case {
            name: "top-level symlink climbing out",
            tar: RawTar::new().link(b'2', "evil", "../../x").end(),
            error: Some("invalid symlink"),
        },
        Case {
            name: "top-level symlink climbing out through a dir",
            tar: RawTar::new().link(b'2', "evil", "a/../../x").end(),
            error: Some("invalid symlink"),
        },
        Case {
            name: "whiteout of the directory itself",
            tar: RawTar::new().dir("a/").file("a/.wh..", b"").end(),
            error: Some("whiteout of `.` or `..`"),
        },
        Case {
            name: "whiteout of the parent directory",
            tar: RawTar::new().file(".wh...", b"").end(),
            error: Some("whiteout of `.` or `..`"),
        },
        Case {
            name: "symlinked parent (absolute)",
            tar: RawTar::new()
                .link(b'2', "evil", out_abs)
                .file("evil/victim", b"pwned")
                .end(),
            error: Some("resolving parent"),
        },
        Case {
            name: "hardlink dotdot",
            tar: RawTar::new().link(b'1', "h", "../outside/victim").end(),
            error: Some("escapes the layer root"),
        },
        Case {
            name: "hardlink absolute",
            tar: RawTar::new().link(b'1', "h", victim.as_str()).end(),
            error: Some("hardlink"),
        },
        Case {
            name: "hardlink through symlinked parent",
            tar: RawTar::new()
                .link(b'2', "evil", out_abs)
                .link(b'1', "h", "evil/victim")
                .file("h", b"pwned")
                .end(),
            error: Some("hardlink"),
        },
        Case {
            name: "file over a symlink to outside",
            tar: RawTar::new()
                .link(b'2', "x", victim.as_str())
                .file("x", b"pwned")
                .end(),
            error: None,
        },
        Case {
            name: "directory swapped for a symlink mid-archive",
            tar: RawTar::new()
                .dir("d/")
                .link(b'2', "d", out_abs)
                .file("d/victim", b"pwned")
                .end(),
            error: Some("resolving parent"),
        },
        Case {
            name: "directory entry over a symlink to outside",
            tar: RawTar::new().link(b'2', "s", out_abs).dir("s/").end(),
            error: None,
        },
        Case {
            name: "symlink climbing out through a subdir",
            tar: RawTar::new()
                .link(b'2', "a/b/evil", "../../../outside")
                .end(),
            error: Some("invalid symlink"),
        },
        Case {
            name: "absolute symlink target climbing out",
            tar: RawTar::new().link(b'2', "a/evil", "/../../outside").end(),
            error: Some("invalid symlink"),
        },
        Case {
            name: "root replaced by a file",
            tar: RawTar::new().file("./", b"x").end(),
            error: None, // "./" with a trailing slash is a directory in old tars: ignored
        },
        Case {
            name: "root replaced by a symlink",
            tar: RawTar::new().link(b'2', ".", out_abs).end(),
            error: Some("replace the layer root"),
        },
    ];
    // Absurd size: 8 GiB declared, a few bytes present.
    let mut t = RawTar::new();
    let h = RawTar::header(b'0', b"huge", 8 << 30);
    t.raw(&h, b"abc");
    cases.push(Case {
        name: "absurd size",
        tar: t.bytes.clone(),
        error: Some("truncated"),
    });
    // Truncated inside a header block.
    let mut t = RawTar::new().file("a", b"x").end();
    t.truncate(512 + 512 + 100);
    cases.push(Case {
        name: "truncated header",
        tar: t,
        error: Some("truncated"),
    });
    // Bad checksum.
    let mut h = RawTar::header(b'0', b"bad", 1);
    h.as_old_mut().cksum = *b"0000000\0";
    cases.push(Case {
        name: "bad checksum",
        tar: RawTar::new().raw(&h, b"x").end(),
        error: Some("checksum"),
    });
    // Garbage numeric field.
    let mut h = RawTar::header(b'0', b"badsize", 1);
    h.as_old_mut().size = *b"zzzzzzzzzzz\0";
    h.set_cksum();
    cases.push(Case {
        name: "bad size field",
        tar: RawTar::new().raw(&h, b"x").end(),
        error: Some("size"),
    });
    // Garbage in fields that may be left empty: still refused.
    for (field, value) in [("uid", *b"12x4\0\0\0\0"), ("mtime", *b" 1 2 \0\0\0")] {
        let mut h = RawTar::header(b'0', format!("bad{field}").as_bytes(), 1);
        match field {
            "uid" => h.as_old_mut().uid = value,
            _ => h.as_old_mut().mtime[..8].copy_from_slice(&value),
        }
        h.set_cksum();
        cases.push(Case {
            name: if field == "uid" {
                "garbage uid field"
            } else {
                "garbage mtime field"
            },
            tar: RawTar::new().raw(&h, b"x").end(),
            error: Some(if field == "uid" {
                "bad uid field"
            } else {
                "bad mtime field"
            }),
        });
    }
    // A PAX header of 2 MiB.
    let big = vec![b'a'; 2 << 20];
    let mut t = RawTar::new();
    t.pax(&[("comment", &big)]).file("after-pax", b"x");
    cases.push(Case {
        name: "huge PAX header",
        tar: t.end(),
        error: Some("exceeds"),
    });
    // A PAX record whose length lies.
    let mut t = RawTar::new();
    let data = b"999 path=x\n";
    t.raw(&RawTar::header(b'x', b"pax", data.len() as u64), data)
        .file("y", b"x");
    cases.push(Case {
        name: "lying PAX length",
        tar: t.end(),
        error: Some("PAX record length"),
    });
    // An extension header with no entry after it.
    let mut t = RawTar::new();
    t.pax(&[("path", b"x")]);
    cases.push(Case {
        name: "dangling PAX header",
        tar: t.end(),
        error: Some("extension header"),
    });
    // A NUL inside a PAX path.
    let mut t = RawTar::new();
    t.pax(&[("path", b"a\0b")]).file("y", b"x");
    cases.push(Case {
        name: "NUL in PAX path",
        tar: t.end(),
        error: Some("NUL"),
    });
    // PAX path escaping.
    let mut t = RawTar::new();
    t.pax(&[("path", b"../../outside/victim")])
        .file("innocent", b"pwned");
    cases.push(Case {
        name: "PAX path escape",
        tar: t.end(),
        error: Some("escapes the layer root"),
    });
    // GNU long name escaping.
    let mut t = RawTar::new();
    let long = format!("{}../../../outside/victim\0", "a/../".repeat(30));
    t.raw(
        &RawTar::header(b'L', b"././@LongLink", long.len() as u64),
        long.as_bytes(),
    )
    .file("innocent", b"pwned");
    cases.push(Case {
        name: "GNU long name escape",
        tar: t.end(),
        error: Some("escapes the layer root"),
    });
    // Sparse map pointing past the file.
    let mut t = RawTar::new();
    t.pax(&[
        ("GNU.sparse.map", b"100,10"),
        ("GNU.sparse.numblocks", b"1"),
        ("GNU.sparse.size", b"50"),
    ])
    .file("sparse", &[1u8; 10]);
    cases.push(Case {
        name: "sparse region beyond size",
        tar: t.end(),
        error: Some("sparse"),
    });
    // Sparse map claiming more data than stored.
    let mut t = RawTar::new();
    t.pax(&[
        ("GNU.sparse.map", b"0,1000"),
        ("GNU.sparse.numblocks", b"1"),
        ("GNU.sparse.size", b"1000"),
    ])
    .file("sparse", &[1u8; 10]);
    cases.push(Case {
        name: "sparse data short",
        tar: t.end(),
        error: Some("sparse"),
    });
    // A region count that disagrees with the map (Go's archive/tar refuses it).
    for (name, numblocks) in [
        ("sparse numblocks too small", Some(&b"1"[..])),
        ("sparse numblocks too large", Some(&b"3"[..])),
        ("sparse numblocks missing", None),
    ] {
        let mut records: Vec<(&str, &[u8])> =
            vec![("GNU.sparse.map", b"0,3,10,2"), ("GNU.sparse.size", b"20")];
        records.extend(numblocks.map(|n| ("GNU.sparse.numblocks", n)));
        let mut t = RawTar::new();
        t.pax(&records).file("sparse", b"abcde");
        cases.push(Case {
            name,
            tar: t.end(),
            error: Some("GNU.sparse.numblocks"),
        });
    }
    // Unknown entry type.
    cases.push(Case {
        name: "unknown type",
        tar: RawTar::new()
            .raw(&hdr_with(b'Z', b"z", 0, |_| {}), &[])
            .end(),
        error: Some("unhandled tar header type"),
    });
    // Symlink with an xattr: set on the link, never on its target.
    let mut t = RawTar::new();
    t.pax(&[("SCHILY.xattr.user.evil", b"1")])
        .link(b'2', "s", victim.as_str());
    cases.push(Case {
        name: "xattr on symlink",
        tar: t.end(),
        error: None,
    });
    cases
}

#[test]
fn hostile_archives_never_touch_the_outside() {
    let s = Scratch::new();
    let outside = s.mkdir("outside");
    write_file(&outside.join("victim"), b"secret");
    // Every case runs; the failures are listed together at the end.
    let mut failed = Vec::new();
    for case in corpus(&outside) {
        let name = case.name;
        let run = std::panic::AssertUnwindSafe(|| {
            let before = snapshot(&outside);
            let layers = s.mkdir(&format!("layers-{}", case.name.replace(' ', "_")));
            let diff = layers.join("diff");
            fs::create_dir(&diff).unwrap();
            write_file(&diff.join("pre-existing"), b"old");
            let layer_before = snapshot(&diff);
            let res = apply_layer(
                &case.tar[..],
                &diff,
                &ApplyOptions {
                    sync: false,
                    ..base_opts()
                },
            );
            match (case.error, &res) {
                (Some(want), Err(e)) => {
                    assert!(
                        e.to_string().contains(want),
                        "{}: error {e:?} lacks {want:?}",
                        case.name
                    );
                    assert_eq!(
                        snapshot(&diff),
                        layer_before,
                        "{}: failed apply changed the layer",
                        case.name
                    );
                }
                (None, Ok(_)) => {}
                (want, got) => panic!("{}: expected {want:?}, got {got:?}", case.name),
            }
            assert_eq!(snapshot(&outside), before, "{}: outside changed", case.name);
            assert_eq!(
                fs::read(outside.join("victim")).unwrap(),
                b"secret",
                "{}",
                case.name
            );
            let left: Vec<_> = fs::read_dir(&layers)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                left.len(),
                1,
                "{}: staging left behind: {left:?}",
                case.name
            );
        });
        if std::panic::catch_unwind(run).is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}

#[test]
fn contained_paths_land_inside() {
    let s = Scratch::new();
    let outside = s.mkdir("outside");
    let diff = s.mkdir("diff");
    let victim = outside.join("victim");
    let tar = RawTar::new()
        .file(victim.as_str(), b"inside")
        .link(b'2', "root-link", "/")
        .file("root-link/via-root-link", b"ok")
        .end();
    apply_layer(
        &tar[..],
        &diff,
        &ApplyOptions {
            sync: false,
            ..base_opts()
        },
    )
    .unwrap();
    let inner = diff.join(victim.as_str().trim_start_matches('/'));
    assert_eq!(fs::read(inner).unwrap(), b"inside");
    assert!(!victim.exists());
    // A symlink to "/" resolves to the layer root, as in a chroot.
    assert_eq!(fs::read(diff.join("via-root-link")).unwrap(), b"ok");
}

mod mutated {
    use proptest::prelude::*;

    use super::*;

    fn seed_tar() -> Vec<u8> {
        let mut t = RawTar::new();
        t.dir("d/")
            .file("d/f", &[b'x'; 700])
            .link(b'2', "d/l", "f")
            .link(b'1', "d/h", "d/f");
        t.pax(&[
            ("GNU.sparse.map", b"0,3,10,2"),
            ("GNU.sparse.numblocks", b"2"),
            ("GNU.sparse.size", b"20"),
        ])
        .file("sparse", b"abcde");
        t.pax(&[("path", b"long/name"), ("SCHILY.xattr.user.a", b"1")])
            .file("short", b"x");
        t.end()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        /// Random corruption of a valid tar: an error or a contained apply, never a panic,
        /// never a write outside.
        #[test]
        fn corrupted_archives_stay_contained(flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8), cut in 0usize..5000) {
            let mut tar = seed_tar();
            for (pos, b) in flips {
                let n = tar.len();
                tar[pos % n] = b;
            }
            tar.truncate(cut.max(1).min(tar.len()));
            let s = Scratch::new();
            let outside = s.mkdir("outside");
            write_file(&outside.join("victim"), b"secret");
            let before = snapshot(&outside);
            let diff = s.mkdir("layers/diff");
            let _ = apply_layer(&tar[..], &diff, &ApplyOptions { sync: false, tar_split: Some(s.path("ts")), ..base_opts() });
            prop_assert_eq!(snapshot(&outside), before);
            prop_assert_eq!(fs::read_dir(s.path("layers")).unwrap().count(), 1);
        }
    }
}
