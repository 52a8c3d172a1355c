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
#[derive(Clone)]
pub struct Outcome {
    /// What was measured.
    pub name: String,
    /// (label, median).
    pub medians: Vec<(String, Duration)>,
    /// (fastest, slowest) run, in the order of `medians`.
    pub spread: Vec<(Duration, Duration)>,
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
    let mut medians = Vec::new();
    let mut spread = Vec::new();
    for (c, mut ts) in contenders.iter().zip(times) {
        ts.sort();
        medians.push((c.label.clone(), ts[ts.len() / 2]));
        spread.push((ts[0], ts[ts.len() - 1]));
    }
    Ok(Outcome {
        name: name.to_owned(),
        medians,
        spread,
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

/// Every figure of a run as JSON: one record per (benchmark, contender),
/// with the median, fastest and slowest run in seconds and the ratio of
/// the first contender's median to this one's.
pub fn json(outcomes: &[Outcome]) -> String {
    let mut records = Vec::new();
    for o in outcomes {
        let ours = o.medians[0].1.as_secs_f64();
        let (workload, layers) = match o.name.rsplit_once(", ") {
            Some((w, l)) if l.ends_with(" layers") => (
                w.to_string(),
                l.trim_end_matches(" layers").parse::<u64>().ok(),
            ),
            _ => (o.name.clone(), None),
        };
        for ((label, median), (min, max)) in o.medians.iter().zip(&o.spread) {
            let m = median.as_secs_f64();
            records.push(format!(
                "  {{\"workload\": {}, \"layers\": {}, \"contender\": {}, \"median_s\": {:.6}, \"min_s\": {:.6}, \"max_s\": {:.6}, \"ratio_first_to_this\": {:.4}}}",
                quote(&workload),
                layers.map_or("null".to_string(), |l| l.to_string()),
                quote(label),
                m,
                min.as_secs_f64(),
                max.as_secs_f64(),
                ours / m.max(1e-9)
            ));
        }
    }
    format!("[\n{}\n]\n", records.join(",\n"))
}

/// `s` as a JSON string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A markdown table of outcomes: each of ours (the first contender, and
/// any other `aufsctl` one) against each peer.
pub fn report(outcomes: &[Outcome]) -> String {
    let mut s = String::from("| benchmark | ours (median) | peer | peer (median) | ratio ours/peer |\n|---|---|---|---|---|\n");
    for o in outcomes {
        let ours: Vec<usize> = (0..o.medians.len())
            .filter(|&i| i == 0 || o.medians[i].0.contains("aufsctl"))
            .collect();
        for &i in &ours {
            let (ours_l, ours_t) = &o.medians[i];
            for (j, (peer_l, peer)) in o.medians.iter().enumerate() {
                if ours.contains(&j) {
                    continue;
                }
                s.push_str(&format!(
                    "| {} | {ours_l} {:.3}s | {peer_l} | {:.3}s | {:.2}x |\n",
                    o.name,
                    ours_t.as_secs_f64(),
                    peer.as_secs_f64(),
                    ours_t.as_secs_f64() / peer.as_secs_f64().max(1e-9)
                ));
            }
        }
    }
    s
}
