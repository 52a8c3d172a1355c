//! Imports of `docker save` tarballs and OCI layouts (directory and tar)
//! made here, into a store on the real filesystem: layers named by chain
//! id, parents chained, content applied, repeats skipped, and every digest
//! mismatch refused with nothing left behind.

mod common;

use std::io::Write as _;

use aufs_image::{Digest, ImageError, ImportReport};
use camino::{Utf8Path, Utf8PathBuf};
use common::*;
use serde_json::json;

#[test]
fn docker_save_tarballs_import_layer_by_layer() {
    let s = store();
    let layers = layers();
    let image = s.dir.join("app.tar");
    std::fs::write(&image, docker_save(&layers)).unwrap();
    let report = run(&s, &image).unwrap();
    check_imported(&s, &report, &layers);
    // Importing again creates nothing.
    let again = run(&s, &image).unwrap();
    assert!(again.layers.iter().all(|(_, created)| !created));
    assert_eq!(again.top, report.top);
}

#[test]
fn oci_layouts_import_from_a_directory_and_from_a_tar() {
    let layers = layers();
    let files = oci_files(&layers);
    let s = store();
    let dir = s.dir.join("oci");
    write_dir(&dir, &files);
    check_imported(&s, &run(&s, &dir).unwrap(), &layers);

    let s = store();
    let tar = s.dir.join("oci.tar");
    std::fs::write(&tar, tarball(&files)).unwrap();
    check_imported(&s, &run(&s, &tar).unwrap(), &layers);
}

#[test]
fn a_layer_that_is_not_its_diff_id_is_refused_and_removed() {
    let s = store();
    let mut layers = layers();
    let good = layers.clone();
    let image = s.dir.join("bad.tar");
    // The config lists the good layers; the tarball carries another top.
    let mut bytes = docker_save(&good);
    let evil = layer(&[("etc/os-release", "evil\n"), ("app/run", "go\n")]);
    assert_eq!(evil.len(), good[1].len());
    let at = bytes
        .windows(good[1].len())
        .position(|w| w == &good[1][..])
        .unwrap();
    bytes[at..at + evil.len()].copy_from_slice(&evil);
    std::fs::write(&image, bytes).unwrap();
    layers[1] = evil;
    let err = run(&s, &image).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("layer 1"), "{err}");
    let ids = expected_ids(&good);
    assert!(s.driver.exists(&ids[0]), "the good base layer stays");
    assert!(!s.driver.exists(&ids[1]), "the refused layer is removed");
}

#[test]
fn oci_blobs_are_checked_against_their_digests() {
    let layers = layers();
    let mut files = oci_files(&layers);
    // Corrupt the first layer blob (still valid gzip of the same tar, of
    // the same size, but other bytes: another mtime in its header).
    let blob = files
        .iter_mut()
        .find(|(n, b)| n.starts_with("blobs/") && b.starts_with(&[0x1f, 0x8b]))
        .unwrap();
    blob.1[4] ^= 1;
    let s = store();
    let dir = s.dir.join("oci");
    write_dir(&dir, &files);
    let err = run(&s, &dir).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(!s.driver.exists(&expected_ids(&layers)[0]));

    // A manifest blob that is not what the index says.
    let mut files = oci_files(&layers);
    let index: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == "index.json").unwrap().1).unwrap();
    let md = Digest::parse(index["manifests"][0]["digest"].as_str().unwrap()).unwrap();
    let manifest = files
        .iter_mut()
        .find(|(n, _)| n == &format!("blobs/sha256/{}", md.hex()))
        .unwrap();
    // Same size, other bytes.
    let last = manifest.1.len() - 1;
    manifest.1[last] = b' ';
    let s = store();
    let dir = s.dir.join("oci");
    write_dir(&dir, &files);
    let err = run(&s, &dir).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
}

#[test]
fn hostile_and_unknown_images_are_refused() {
    let s = store();
    // Not an image at all.
    let junk = s.dir.join("junk.tar");
    std::fs::write(&junk, tarball(&[("hello".into(), b"x".to_vec())])).unwrap();
    assert!(matches!(
        run(&s, &junk).unwrap_err(),
        ImageError::UnknownFormat { .. }
    ));
    // A manifest pointing out of the image.
    let manifest = json!([{"Config": "../../etc/passwd", "Layers": []}]);
    let evil = s.dir.join("evil.tar");
    std::fs::write(
        &evil,
        tarball(&[(
            "manifest.json".into(),
            serde_json::to_vec(&manifest).unwrap(),
        )]),
    )
    .unwrap();
    let err = run(&s, &evil).unwrap_err();
    assert!(err.to_string().contains("../../etc/passwd"), "{err}");
    // Two images in one tarball.
    let layers = layers();
    let config = config(&layers);
    let name = format!("{}.json", Digest::of(&config).hex());
    let two = json!([{"Config": name, "Layers": []}, {"Config": name, "Layers": []}]);
    let both = s.dir.join("two.tar");
    std::fs::write(
        &both,
        tarball(&[
            (name.clone(), config),
            ("manifest.json".into(), serde_json::to_vec(&two).unwrap()),
        ]),
    )
    .unwrap();
    let err = run(&s, &both).unwrap_err();
    assert!(err.to_string().contains("holds 2 images"), "{err}");
    assert!(s.driver.list().unwrap().is_empty());
}

/// Images written by the OCI tools themselves: an OCI layout built with
/// `umoci` (two layers, gzip), and the same image as a `docker save`
/// tarball written by `skopeo` (its layer files are `<hex>.tar` with
/// `<id>/layer.tar` symlinks). Both import to the same layers.
#[test]
fn images_made_by_umoci_and_skopeo_import_alike() {
    let have = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("umoci") || !have("skopeo") {
        eprintln!("images_made_by_umoci_and_skopeo_import_alike: skipped: umoci and skopeo are needed (apt-get install umoci skopeo)");
        return;
    }
    let s = store();
    let sh = |script: &str| {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(s.dir.as_std_path())
            .status()
            .unwrap();
        assert!(st.success(), "{script}");
    };
    sh("umoci init --layout oci && umoci new --image oci:t \
        && umoci unpack --rootless --image oci:t b && mkdir -p b/rootfs/etc \
        && echo base > b/rootfs/etc/os-release && umoci repack --image oci:t b && rm -rf b \
        && umoci unpack --rootless --image oci:t b && mkdir b/rootfs/app \
        && echo run > b/rootfs/app/run && rm b/rootfs/etc/os-release \
        && echo app > b/rootfs/etc/os-release && umoci repack --image oci:t b \
        && skopeo copy -q oci:oci:t docker-archive:saved.tar:img:t");
    let from_oci = run(&s, &s.dir.join("oci")).unwrap();
    assert_eq!(from_oci.layers.len(), 2);
    assert!(from_oci.layers.iter().all(|(_, created)| *created));
    let top = s.dir.join("aufs/diff").join(from_oci.top.as_str());
    assert_eq!(
        std::fs::read_to_string(top.join("etc/os-release")).unwrap(),
        "app\n"
    );
    assert_eq!(
        std::fs::read_to_string(top.join("app/run")).unwrap(),
        "run\n"
    );
    // The docker save tarball holds the same layers: nothing new to create.
    let from_save = run(&s, &s.dir.join("saved.tar")).unwrap();
    assert_eq!(from_save.top, from_oci.top);
    assert!(from_save.layers.iter().all(|(_, created)| !created));
    // Into an empty store, the docker save tarball creates them itself.
    let s2 = store();
    let again = run(&s2, &s.dir.join("saved.tar")).unwrap();
    assert_eq!(again.top, from_oci.top);
    assert!(again.layers.iter().all(|(_, created)| *created));
}

/// Export gives back what import took: the same chain ids from a fresh
/// store, in both formats; and the OCI tools read what it writes.
#[test]
fn exported_images_import_to_the_same_layers() {
    use aufs_image::{export, ExportFormat};
    let s = store();
    let layers = layers();
    let image = s.dir.join("app.tar");
    std::fs::write(&image, docker_save(&layers)).unwrap();
    let top = run(&s, &image).unwrap().top;
    for (format, name) in [
        (ExportFormat::DockerSave, "out.tar"),
        (ExportFormat::OciLayout, "out-oci"),
    ] {
        let out = s.dir.join(name);
        let report = export(&s.driver, &top, &out, format).unwrap();
        let want: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
        assert_eq!(report.diff_ids, want, "{name}: the original bytes");
        let fresh = store();
        let again = run(&fresh, &out).unwrap();
        assert_eq!(again.top, top, "{name}");
        // An existing destination is refused, and left alone.
        assert!(export(&s.driver, &top, &out, format).is_err());
        assert!(out.exists());
    }
    let no_tmp = std::fs::read_dir(&s.dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .count();
    assert_eq!(no_tmp, 0, "no temporary files left");
    // skopeo (the OCI tools' reference) reads both and checks every digest.
    let skopeo = std::process::Command::new("skopeo")
        .arg("--version")
        .output();
    if skopeo.is_ok_and(|o| o.status.success()) {
        for src in [
            format!("docker-archive:{}", s.dir.join("out.tar")),
            format!("oci:{}:latest", s.dir.join("out-oci")),
        ] {
            let dst = s.dir.join(format!("copy-{}", src.len()));
            let o = std::process::Command::new("skopeo")
                .args(["copy", "-q", &src, &format!("oci:{dst}:x")])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{src}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    } else {
        eprintln!("exported_images_import_to_the_same_layers: skopeo not installed: its reading of the exports not checked");
    }
}

/// The layout of [`oci_files`] in a directory, and the file of its first
/// layer blob.
fn oci_dir(s: &Store) -> (Utf8PathBuf, Utf8PathBuf) {
    let files = oci_files(&layers());
    let dir = s.dir.join("oci");
    write_dir(&dir, &files);
    let blob = files
        .iter()
        .find(|(n, b)| n.starts_with("blobs/") && b.starts_with(&[0x1f, 0x8b]))
        .map(|(n, _)| dir.join(n))
        .unwrap();
    (dir, blob)
}

fn import_promptly(s: Store, image: Utf8PathBuf) -> (Store, Result<ImportReport, ImageError>) {
    promptly(move || {
        let r = run(&s, &image);
        (s, r)
    })
}

#[test]
fn blobs_are_read_only_as_regular_files_inside_the_layout_and_by_their_size() {
    // A symlink to /dev/zero (an endless blob) and a FIFO (a blob whose
    // open waits forever).
    let zero = |p: &Utf8Path| {
        std::fs::remove_file(p).unwrap();
        std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    };
    let fifo = |p: &Utf8Path| {
        std::fs::remove_file(p).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.as_std_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    };
    // A symlink to a copy out of the layout (a file the importer may read
    // and its caller may not).
    let outside = |p: &Utf8Path| {
        let copy = p.parent().unwrap().join("../../../elsewhere.gz");
        std::fs::rename(p, &copy).unwrap();
        std::os::unix::fs::symlink(copy.canonicalize_utf8().unwrap(), p).unwrap();
    };
    // Bytes past the size the manifest declares.
    let longer = |p: &Utf8Path| {
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(b"trailing").unwrap();
    };
    type Hostile = fn(&Utf8Path);
    let cases: [(&str, Hostile, &str); 4] = [
        ("/dev/zero", zero, "reaching out of the directory"),
        ("FIFO", fifo, "not a regular file"),
        ("outside", outside, "reaching out of the directory"),
        ("longer", longer, "but its descriptor says"),
    ];
    for (case, make, why) in cases {
        let s = store();
        let (dir, blob) = oci_dir(&s);
        make(&blob);
        let (s, r) = import_promptly(s, dir);
        let err = r.expect_err(case).to_string();
        assert!(err.contains(why), "{case}: {err}");
        assert!(s.driver.list().unwrap().is_empty(), "{case}");
    }
    // index.json as /dev/zero.
    let s = store();
    let (dir, _) = oci_dir(&s);
    zero(&dir.join("index.json"));
    let (_s, r) = import_promptly(s, dir);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("index.json") && err.contains("reaching out"),
        "{err}"
    );

    // A symlink that stays inside the layout is followed.
    let s = store();
    let (dir, blob) = oci_dir(&s);
    std::fs::rename(&blob, dir.join("layer0.gz")).unwrap();
    std::os::unix::fs::symlink("../../layer0.gz", &blob).unwrap();
    let (s, r) = import_promptly(s, dir);
    check_imported(&s, &r.unwrap(), &layers());
}
