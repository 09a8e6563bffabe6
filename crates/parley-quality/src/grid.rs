//! The measurement grid (loss × loss model × jitter) and its report as a Markdown table.

use std::path::Path;

use crate::call::{CallResult, Network};

/// Every combination of `losses`, `models` and `jitters`; a loss of 0 appears once per jitter,
/// since random and bursty loss of nothing are the same network.
pub fn networks(losses: &[f32], bursty_models: &[bool], jitters: &[u32]) -> Vec<Network> {
    let mut out = Vec::new();
    for &jitter_ms in jitters {
        for &loss_percent in losses {
            if loss_percent <= 0.0 {
                out.push(Network {
                    loss_percent: 0.0,
                    bursty: false,
                    jitter_ms,
                });
                continue;
            }
            for &bursty in bursty_models {
                out.push(Network {
                    loss_percent,
                    bursty,
                    jitter_ms,
                });
            }
        }
    }
    out
}

/// Scores a call's WAV pair with the PESQ script under `python`; `None` (with a warning) when
/// the scorer is missing or fails.
pub fn pesq(python: &Path, script: &Path, result: &CallResult) -> Option<f64> {
    let (sent, heard) = (result.reference_wav.as_ref()?, result.degraded_wav.as_ref()?);
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(sent)
        .arg(heard)
        .output();
    match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().parse().ok(),
        Ok(out) => {
            eprintln!("PESQ failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            None
        }
        Err(e) => {
            eprintln!("PESQ scorer {} not runnable: {e}", python.display());
            None
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

/// The results as a Markdown table, one row per call.
pub fn table(results: &[CallResult]) -> String {
    let mut out = String::from(
        "| network | loss seen | concealed | FEC-recovered | late | mouth-to-ear p50 / p95 (ms) | buffer mean / p95 (ms) | PESQ-WB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        let seen = if r.downlink_in == 0 {
            0.0
        } else {
            100.0 * (1.0 - r.downlink_out as f64 / r.downlink_in as f64)
        };
        let fec = if r.frames_played == 0 {
            0.0
        } else {
            100.0 * r.fec_frames as f64 / r.frames_played as f64
        };
        out.push_str(&format!(
            "| {} | {seen:.1} % | {:.2} % ({}/{}) | {fec:.1} % | {} | {} / {} | {:.0} / {:.0} | {} |\n",
            r.network.label(),
            100.0 * r.concealed_ratio(),
            r.concealed_frames,
            r.frames_played,
            r.late_packets,
            opt(r.mouth_to_ear_p50_ms, 0),
            opt(r.mouth_to_ear_p95_ms, 0),
            r.buffer_mean_ms,
            r.buffer_p95_ms,
            opt(r.pesq_wb, 2),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_loss_is_one_network_per_jitter() {
        let grid = networks(&[0.0, 5.0, 10.0, 20.0], &[false, true], &[0, 20, 50]);
        assert_eq!(grid.len(), 3 * (1 + 3 * 2));
        assert_eq!(grid.iter().filter(|n| n.loss_percent == 0.0).count(), 3);
    }
}
