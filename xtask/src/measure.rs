//! Timing discipline: alternate contenders run by run, optionally drop the
//! page cache before each run (cold cache), take medians, report ratios.

use std::time::{Duration, Instant};

/// One contender of a comparison: a label and a run function. `setup`
/// runs before each timed run and is not timed.
pub struct Contender<'a> {
    /// Shown in the report.
    pub label: String,
    /// Untimed preparation before each run.
    pub setup: Box<dyn FnMut() -> Result<(), String> + 'a>,
    /// The timed work.
    pub run: Box<dyn FnMut() -> Result<(), String> + 'a>,
}

/// Medians of a comparison, in contender order.
pub struct Outcome {
    /// What was measured.
    pub name: String,
    /// (label, median).
    pub medians: Vec<(String, Duration)>,
}

impl Outcome {
    /// `ours / peer` for the first contender against each other one.
    pub fn ratios(&self) -> Vec<(String, f64)> {
        let ours = self.medians[0].1.as_secs_f64();
        self.medians[1..]
            .iter()
            .map(|(l, d)| (l.clone(), ours / d.as_secs_f64().max(1e-9)))
            .collect()
    }
}

/// Drops clean caches so the next run reads from disk (root only).
pub fn drop_caches() {
    let _ = std::process::Command::new("sync").status();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

/// Runs every contender `runs` times, interleaved (A B C A B C ...), with
/// cold caches when `cold`.
pub fn compare(
    name: &str,
    runs: usize,
    cold: bool,
    mut contenders: Vec<Contender<'_>>,
) -> Result<Outcome, String> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    for _ in 0..runs {
        for (i, c) in contenders.iter_mut().enumerate() {
            (c.setup)().map_err(|e| format!("{name}: {} setup: {e}", c.label))?;
            if cold {
                drop_caches();
            }
            let t = Instant::now();
            (c.run)().map_err(|e| format!("{name}: {}: {e}", c.label))?;
            times[i].push(t.elapsed());
        }
    }
    let medians = contenders
        .iter()
        .zip(times)
        .map(|(c, mut ts)| {
            ts.sort();
            (c.label.clone(), ts[ts.len() / 2])
        })
        .collect();
    Ok(Outcome {
        name: name.to_owned(),
        medians,
    })
}

/// Runs a shell command, failing with its stderr.
pub fn sh(cmd: &str) -> Result<(), String> {
    let out = std::process::Command::new("bash")
        .args(["-c", cmd])
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A markdown table of outcomes.
pub fn report(outcomes: &[Outcome]) -> String {
    let mut s = String::from("| benchmark | ours (median) | peer | peer (median) | ratio ours/peer |\n|---|---|---|---|---|\n");
    for o in outcomes {
        let (ours_l, ours) = &o.medians[0];
        for ((peer_l, peer), (_, ratio)) in o.medians[1..].iter().zip(o.ratios()) {
            s.push_str(&format!(
                "| {} | {ours_l} {:.3}s | {peer_l} | {:.3}s | {ratio:.2}x |\n",
                o.name,
                ours.as_secs_f64(),
                peer.as_secs_f64()
            ));
        }
    }
    s
}
