//! The benchmark groups.

use crate::measure::{compare, json, report, sh, Contender, Outcome};
#[path = "bench_archive.rs"]
mod bench_archive;
#[path = "bench_docker.rs"]
mod bench_docker;
#[path = "bench_fuse.rs"]
mod bench_fuse;
use std::path::{Path, PathBuf};

struct Options {
    runs: usize,
    only: Option<String>,
    /// Only the workloads whose name contains this (the `fuse` group).
    workload: Option<String>,
    /// Where to write every figure as JSON.
    json: Option<PathBuf>,
    /// One round of each workload on a smaller tree.
    quick: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        runs: 5,
        only: None,
        workload: None,
        json: None,
        quick: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                o.runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--runs needs a number")?
            }
            "--only" => o.only = Some(it.next().ok_or("--only needs a group")?.clone()),
            "--workload" => o.workload = Some(it.next().ok_or("--workload needs a name")?.clone()),
            "--json" => o.json = Some(PathBuf::from(it.next().ok_or("--json needs a file")?)),
            "--quick" => o.quick = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Where bench data and results live (kept between runs).
fn bench_dir() -> PathBuf {
    target_dir().join("bench")
}

/// Runs the selected groups and prints (and saves) the report.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut o = parse(args)?;
    if o.quick {
        o.runs = 1;
    }
    std::fs::create_dir_all(bench_dir()).map_err(|e| e.to_string())?;
    sh(&format!(
        "cd {} && cargo build --release -q -p aufs-cli",
        workspace_root().display()
    ))?;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let want = |g: &str| o.only.as_deref().is_none_or(|w| w == g);
    if want("create") {
        outcomes.push(bench_create(o.runs)?);
    }
    if want("fuse") {
        outcomes.extend(bench_fuse::bench_fuse(
            &bench_dir(),
            &aufsctl(),
            o.runs,
            o.workload.as_deref(),
            o.quick,
        )?);
    }
    if want("archive") {
        outcomes.extend(bench_archive::bench_archive(&bench_dir(), o.runs)?);
    }
    if want("docker") {
        outcomes.extend(bench_docker::bench_docker(
            &bench_dir(),
            &aufsctl(),
            o.runs,
        )?);
    }
    let table = report(&outcomes);
    println!("{table}");
    let out = bench_dir().join("results.md");
    std::fs::write(&out, &table).map_err(|e| e.to_string())?;
    eprintln!("saved {}", out.display());
    if let Some(path) = &o.json {
        std::fs::write(path, json(&outcomes)).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("saved {}", path.display());
    }
    Ok(())
}

fn aufsctl() -> PathBuf {
    target_dir().join("release/aufsctl")
}

/// Layer creation: 200 chained `aufsctl create` against `mkdir -p` of the
/// same dirs plus a file write (the floor of any implementation).
fn bench_create(runs: usize) -> Result<Outcome, String> {
    let root = bench_dir().join("create-root");
    let ctl = aufsctl();
    let reset = {
        let root = root.clone();
        move || sh(&format!("rm -rf {0} && mkdir -p {0}", root.display()))
    };
    let ours = {
        let (root, ctl) = (root.clone(), ctl.clone());
        move || {
            sh(&format!(
                "p=''; for i in $(seq 1 200); do {ctl} --root {r}/a create l$i $p || exit 1; p=\"--parent l$i\"; done",
                ctl = ctl.display(),
                r = root.display()
            ))
        }
    };
    let peer = {
        let root = root.clone();
        move || {
            sh(&format!(
                "cd {r} && for i in $(seq 1 200); do mkdir -p diff/l$i mnt/l$i layers && echo l$((i-1)) > layers/l$i; done",
                r = root.display()
            ))
        }
    };
    compare(
        "create 200 chained layers",
        runs,
        false,
        vec![
            Contender {
                label: "aufsctl create".into(),
                setup: Box::new(reset.clone()),
                run: Box::new(ours),
            },
            Contender {
                label: "mkdir+echo (shell)".into(),
                setup: Box::new(reset),
                run: Box::new(peer),
            },
        ],
    )
}
