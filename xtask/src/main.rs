//! Project tasks: `cargo xtask bench [--runs N] [--only GROUP]
//! [--workload NAME] [--json FILE] [--quick]` (`--workload`: only the
//! `fuse` workloads whose name contains NAME, e.g. `untar`; `--json`: every
//! figure of the run as JSON; `--quick`: one round of each workload on a
//! smaller tree, to spot a regression in a few minutes).
//!
//! Benchmarks here are side by side: every measurement of ours is taken in
//! the same run, on the same data, alternating with a peer (GNU tar, kernel
//! overlayfs, fuse-overlayfs), and reported as a ratio of medians. Absolute
//! times on these shared machines mean little; ratios do.

mod bench;
mod measure;
mod probe;
mod rootfs;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => match bench::run(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask bench: {e}");
                ExitCode::FAILURE
            }
        },
        // Used by the `fuse` group's round-trip workload, inside a mount.
        Some(probe::COMMAND) => match probe::run(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask {}: {e}", probe::COMMAND);
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo xtask bench [--runs N] [--only GROUP] [--workload NAME] [--json FILE] [--quick]");
            ExitCode::from(2)
        }
    }
}
