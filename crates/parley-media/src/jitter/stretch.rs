//! Time-stretching of decoded audio by whole pitch periods, as NetEQ's Accelerate and
//! PreemptiveExpand do (a WSOLA variant).
//!
//! Removing or repeating exactly one period of a periodic signal, with a crossfade across it,
//! changes the duration without an audible click or pitch change. For each candidate lag the
//! normalised correlation between the signal and itself shifted by the lag says how periodic
//! it is there; only a strongly periodic stretch (or a near-silent one, where anything goes) is
//! done, otherwise the frame plays unchanged and the next one is tried.

/// Shortest period removed or inserted (5 ms): short periods would move the delay too slowly.
pub(crate) const MIN_LAG: usize = 240;
/// Longest period (10 ms); two of them must fit in one decoded 20 ms frame.
pub(crate) const MAX_LAG: usize = 480;
/// Correlation above which a segment counts as periodic enough to stretch.
const MIN_CORRELATION: f64 = 0.9;
/// Below this RMS (about −40 dBFS) a segment is quiet enough to cut anywhere.
const QUIET_RMS: f64 = 330.0;

/// Finds the lag to stretch by at the start of `x`, or `None` when no safe one exists.
fn best_lag(x: &[i16]) -> Option<usize> {
    if x.len() < 2 * MAX_LAG {
        return None;
    }
    let energy: f64 = x[..2 * MAX_LAG]
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum();
    if (energy / (2 * MAX_LAG) as f64).sqrt() < QUIET_RMS {
        return Some(MAX_LAG);
    }
    let mut best = (f64::MIN, 0usize);
    for lag in MIN_LAG..=MAX_LAG {
        let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..lag {
            let a = f64::from(x[i]);
            let b = f64::from(x[i + lag]);
            xy += a * b;
            xx += a * a;
            yy += b * b;
        }
        let denom = (xx * yy).sqrt();
        if denom > 0.0 {
            let c = xy / denom;
            if c > best.0 {
                best = (c, lag);
            }
        }
    }
    (best.0 >= MIN_CORRELATION).then_some(best.1)
}

fn crossfade(fade_out: i16, fade_in: i16, i: usize, len: usize) -> i16 {
    let w = (i as f64 + 0.5) / len as f64;
    (f64::from(fade_out) * (1.0 - w) + f64::from(fade_in) * w).round() as i16
}

/// Shortens `x` by one period taken from its start; returns the samples removed (0 if none).
pub(crate) fn accelerate(x: &mut Vec<i16>) -> usize {
    let Some(lag) = best_lag(x) else { return 0 };
    // x[0..lag] fades into x[lag..2lag]: starts like x[0] (continuous with what already
    // played) and ends like x[2lag-1] (continuous with what follows).
    for i in 0..lag {
        x[i] = crossfade(x[i], x[i + lag], i, lag);
    }
    x.drain(lag..2 * lag);
    lag
}

/// Lengthens `x` by one period inserted near its start; returns the samples added (0 if none).
pub(crate) fn preemptive_expand(x: &mut Vec<i16>) -> usize {
    let Some(lag) = best_lag(x) else { return 0 };
    // Output x[0..lag], then x[lag..2lag] fading into a repeat of x[0..lag], then x[lag..]:
    // each seam joins a sample to (nearly) its own successor.
    let inserted: Vec<i16> = (0..lag).map(|i| crossfade(x[i + lag], x[i], i, lag)).collect();
    x.splice(lag..lag, inserted);
    lag
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize, hz: f64) -> Vec<i16> {
        crate::test_tone(len, hz, 10_000.0)
    }

    fn max_step(x: &[i16]) -> i32 {
        x.windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn accelerate_removes_whole_periods_of_a_tone_smoothly() {
        let mut x = tone(1_920, 200.0);
        let before = max_step(&x);
        let removed = accelerate(&mut x);
        assert_eq!(removed % 240, 0, "200 Hz has a 240-sample period");
        assert_eq!(x.len(), 1_920 - removed);
        assert!(max_step(&x) <= before + 50);
    }

    #[test]
    fn expand_inserts_a_period_smoothly() {
        let mut x = tone(1_920, 200.0);
        let before = max_step(&x);
        let added = preemptive_expand(&mut x);
        assert!(added >= MIN_LAG);
        assert_eq!(x.len(), 1_920 + added);
        assert!(max_step(&x) <= before + 50);
    }

    #[test]
    fn noise_is_left_alone_and_silence_is_cut() {
        let mut state = 12_345u32;
        let mut noise: Vec<i16> = (0..1_920)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 16) as i16
            })
            .collect();
        assert_eq!(accelerate(&mut noise), 0);
        let mut silence = vec![0i16; 1_920];
        assert_eq!(accelerate(&mut silence), MAX_LAG);
    }
}
