//! Shared reporting pieces: latency histograms and their summaries, the
//! server's Prometheus text, and the once-a-second progress line.

use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// A histogram of microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Records `us`, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, h.high()));
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Summarises `h` (microsecond values).
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={:.2}ms p99={:.2}ms p999={:.2}ms max={:.2}ms",
            self.count, self.p50_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}

/// The Prometheus text of the server's `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    text: String,
}

impl Metrics {
    /// Wraps rendered Prometheus text.
    pub fn new(text: String) -> Metrics {
        Metrics { text }
    }

    /// The value of the series written exactly `series` (name plus labels, if any).
    pub fn value(&self, series: &str) -> Option<f64> {
        self.text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    }

    /// `(sum, count)` of a summary or histogram.
    pub fn sum_count(&self, name: &str) -> (f64, f64) {
        (
            self.value(&format!("{name}_sum")).unwrap_or(0.0),
            self.value(&format!("{name}_count")).unwrap_or(0.0),
        )
    }

    /// A summary's quantile as rendered (e.g. `"0.99"`).
    pub fn quantile(&self, name: &str, q: &str) -> Option<f64> {
        self.value(&format!("{name}{{quantile=\"{q}\"}}"))
    }
}

/// One summary metric between two scrapes: how many observations, their
/// mean, and the quantiles the server reports over its recent window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SummaryDelta {
    pub count: f64,
    pub mean: f64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl SummaryDelta {
    /// `name` between `before` and `after`.
    pub fn between(before: &Metrics, after: &Metrics, name: &str) -> SummaryDelta {
        let (s0, c0) = before.sum_count(name);
        let (s1, c1) = after.sum_count(name);
        let count = c1 - c0;
        SummaryDelta {
            count,
            mean: if count > 0.0 { (s1 - s0) / count } else { 0.0 },
            p50: after.quantile(name, "0.5"),
            p99: after.quantile(name, "0.99"),
            max: after.quantile(name, "1"),
        }
    }
}

/// Prints `line()` to stderr once a second until `stop` is cancelled.
pub fn progress<F>(stop: CancellationToken, label: &'static str, mut line: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> String + Send + 'static,
{
    tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    eprintln!("[{label} {:>4.0}s] {}", started.elapsed().as_secs_f64(), line());
                }
            }
        }
    })
}

/// Runs `f` and returns its output with the wall time it took.
pub async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

/// Rounds to `digits` decimals for readable JSON.
pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_summaries() {
        let m = Metrics::new(
            "# TYPE x summary\nx{quantile=\"0.5\"} 3\nx{quantile=\"1\"} 9\nx_sum 40\nx_count 10\ny 2\n"
                .into(),
        );
        assert_eq!(m.value("y"), Some(2.0));
        assert_eq!(m.sum_count("x"), (40.0, 10.0));
        assert_eq!(m.quantile("x", "0.5"), Some(3.0));
        let before = Metrics::new("x_sum 10\nx_count 5\n".into());
        let d = SummaryDelta::between(&before, &m, "x");
        assert_eq!(d.count, 5.0);
        assert_eq!(d.mean, 6.0);
        assert_eq!(d.max, Some(9.0));
    }

    #[test]
    fn summarises_latency() {
        let mut h = histogram();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50_ms - 0.5).abs() < 0.01);
        assert!(l.max_ms >= 0.999);
    }
}
