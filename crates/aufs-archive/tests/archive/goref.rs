//! Comparison with moby's own pkg/archive (20.10, Debian's
//! golang-github-docker-docker-dev): a small Go program built offline gives
//! the reference outputs. Skipped, with the reason printed, without `go` or
//! the moby sources.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use aufs_archive::{
    apply_layer, changes, changes_between_views, changes_size_view, diff_size, export_diff,
    ApplyOptions,
};
use aufs_union::UnionView;
use camino::Utf8Path;
use proptest::prelude::*;

use crate::changes::{build, layer, E};
use crate::util::*;

const MOBY_SRC: &str = "/usr/share/gocode/src/github.com/docker/docker/pkg/archive";

/// Builds the reference program once; None (with the reason printed) when it cannot be.
fn goref(test: &str) -> Option<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = BIN.get_or_init(|| {
        if Command::new("go").arg("version").output().is_err() {
            return Err("`go` is not installed (apt-get install golang-go)".into());
        }
        if !std::path::Path::new(MOBY_SRC).is_dir() {
            return Err(format!(
                "{MOBY_SRC} missing (apt-get install golang-github-docker-docker-dev)"
            ));
        }
        // Kept between runs: Go's build cache makes the rebuild instant.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("goref");
        let src = dir.join("src/goref");
        std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
        let main = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/go-ref/main.go");
        std::fs::copy(main, src.join("main.go")).map_err(|e| e.to_string())?;
        let bin = dir.join("goref");
        let out = Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(".")
            .current_dir(&src)
            .env("GO111MODULE", "off")
            .env("GOPATH", format!("{}:/usr/share/gocode", dir.display()))
            .env("GOCACHE", dir.join("cache"))
            .env("GOFLAGS", "")
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "go build failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(bin)
    });
    match r {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            eprintln!("{test}: skipped: {why}");
            None
        }
    }
}

fn go(bin: &PathBuf, args: &[&str]) -> String {
    go_try(bin, args).unwrap_or_else(|e| panic!("goref {args:?}: {e}"))
}

fn go_try(bin: &PathBuf, args: &[&str]) -> Result<String, String> {
    let out = Command::new(bin).args(args).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout).unwrap())
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// Layers without the cases where Docker's aufs walk is knowingly not copied
/// (whiteouts and opaque dirs in lower layers, opaque markers anywhere).
fn docker_comparable(
    l: Vec<(Vec<&'static str>, E)>,
    allow_whiteouts: bool,
) -> Vec<(Vec<&'static str>, E)> {
    l.into_iter()
        .filter(|(_, e)| match e {
            E::Opaque => false,
            E::Whiteout => allow_whiteouts,
            _ => true,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn changes_match_docker(l1 in layer(), l2 in layer(), up in layer()) {
        let Some(bin) = goref("changes_match_docker") else { return Ok(()) };
        let s = Scratch::new();
        let (bottom, mid, upper) = (s.mkdir("bottom"), s.mkdir("mid"), s.mkdir("upper"));
        build(&bottom, &docker_comparable(l1, false));
        build(&mid, &docker_comparable(l2, false));
        build(&upper, &docker_comparable(up, true));
        let ours: Vec<String> = changes(&[&mid, &bottom], &upper).unwrap().iter().map(|c| c.to_string()).collect();
        let theirs = go_try(&bin, &["changes", upper.as_str(), mid.as_str(), bottom.as_str()]);
        // Docker's walk fails where a lower layer has a file in place of a directory (ENOTDIR).
        prop_assume!(theirs.as_ref().map_or_else(|e| !e.contains("not a directory"), |_| true));
        let theirs = theirs.unwrap();
        prop_assert_eq!(sorted_lines(&ours.join("\n")), sorted_lines(&theirs));
        let size = changes_size_view(
            &UnionView::open(None, &[&upper]).unwrap(),
            &changes(&[&mid, &bottom], &upper).unwrap(),
        ).unwrap();
        let go_size = go(&bin, &["changes-size", upper.as_str(), mid.as_str(), bottom.as_str()]);
        prop_assert_eq!(size.to_string(), go_size.trim());
    }

    #[test]
    fn changes_between_views_match_docker(l1 in layer(), l2 in layer()) {
        let Some(bin) = goref("changes_between_views_match_docker") else { return Ok(()) };
        let s = Scratch::new();
        let (old, new) = (s.mkdir("old"), s.mkdir("new"));
        build(&old, &docker_comparable(l1.clone(), false));
        // The new view: the old one with some entries rewritten, removed or added.
        run(Command::new("cp").arg("-a").arg(format!("{old}/.")).arg(new.as_str()));
        for (i, (p, _)) in l1.iter().enumerate() {
            let target = p.iter().fold(new.clone(), |d, c| d.join(c));
            if i % 3 == 0 && target.is_file() {
                std::fs::write(&target, b"rewritten!").unwrap();
            } else if i % 3 == 1 && target.is_file() {
                std::fs::remove_file(&target).unwrap();
            }
        }
        build(&new, &docker_comparable(l2, false));
        let (old_view, new_view) = (UnionView::open(None, &[&old]).unwrap(), UnionView::open(None, &[&new]).unwrap());
        let ours: Vec<String> = changes_between_views(Some(&old_view), &new_view).unwrap().iter().map(|c| c.to_string()).collect();
        let theirs = go(&bin, &["changes-dirs", new.as_str(), old.as_str()]);
        prop_assert_eq!(sorted_lines(&ours.join("\n")), sorted_lines(&theirs));
    }

    #[test]
    fn changes_between_stacked_views_match_docker_on_the_merged_trees(
        l0 in layer(), l1 in layer(), l2 in layer(), l3 in layer()
    ) {
        let Some(bin) = goref("changes_between_stacked_views_match_docker_on_the_merged_trees") else { return Ok(()) };
        let st = crate::views::Stack::new([l0, l1, l2, l3]);
        let (old, new) = (st.old(), st.new_view());
        let (old_copy, new_copy) = (st.s.mkdir("old-copy"), st.s.mkdir("new-copy"));
        crate::views::materialize(&old, &old_copy);
        crate::views::materialize(&new, &new_copy);
        let ours: Vec<String> = changes_between_views(Some(&old), &new).unwrap().iter().map(|c| c.to_string()).collect();
        let theirs = go(&bin, &["changes-dirs", new_copy.as_str(), old_copy.as_str()]);
        prop_assert_eq!(sorted_lines(&ours.join("\n")), sorted_lines(&theirs));
    }
}

fn untar_compare(bin: &PathBuf, s: &Scratch, label: &str, tar_path: &Utf8Path) {
    let ours = s.mkdir(&format!("ours-{label}"));
    let theirs = s.mkdir(&format!("theirs-{label}"));
    let tar = std::fs::read(tar_path).unwrap();
    apply_layer(
        &tar[..],
        &ours,
        &ApplyOptions {
            sync: false,
            ..base_opts()
        },
    )
    .unwrap();
    go(bin, &["untar", tar_path.as_str(), theirs.as_str()]);
    assert_eq!(
        dump(&ours),
        dump(&theirs),
        "{label}: apply differs from Docker's UntarUncompressed"
    );
    assert_eq!(
        diff_size(&ours).unwrap().to_string(),
        go(bin, &["size", ours.as_str()]).trim(),
        "{label}"
    );
}

#[test]
fn apply_and_size_match_docker() {
    let Some(bin) = goref("apply_and_size_match_docker") else {
        return;
    };
    let s = Scratch::new();
    let src = s.mkdir("src");
    crate::roundtrip::rich_tree(&src, is_root());
    // Docker's Untar keeps .wh..wh.* entries; ours drops them: compare on a tree without them.
    std::fs::remove_dir_all(src.join(".wh..wh.plnk")).unwrap();
    std::fs::remove_file(src.join(".wh..wh.aufs")).unwrap();
    // Docker re-chowns a hardlink's inode, which drops its security.capability;
    // we keep the inode as its first entry made it. Compare without that case.
    std::fs::remove_file(src.join("passwd-hardlink")).unwrap();
    let tar_path = s.path("export.tar");
    export_diff(&src, std::fs::File::create(&tar_path).unwrap()).unwrap();
    untar_compare(&bin, &s, "export", &tar_path);
    let plain = s.mkdir("plain");
    write_file(&plain.join("dir/file"), b"content");
    write_file(&plain.join("dir/.wh.old"), b"");
    for fmt in ["gnu", "pax", "ustar"] {
        let p = s.path(&format!("{fmt}.tar"));
        run(Command::new("tar")
            .arg("-C")
            .arg(plain.as_str())
            .arg("-cf")
            .arg(p.as_str())
            .arg(format!("--format={fmt}"))
            .arg("."));
        untar_compare(&bin, &s, fmt, &p);
    }
}
