//! One measured video call: the caller sends a test pattern (every picture carries its frame
//! counter and capture time in its pixels) and speech; the callee shows and records. The
//! callee's downlink gets the loss and jitter; the caller's uplink can get a bandwidth step
//! (a rate-limited link whose rate changes during the call), which is the path the sender's
//! bandwidth estimate sees.
//!
//! * **Delivered fps, freezes** come from the pictures the callee's sink was shown: a freeze
//!   is an interframe gap of at least max(3 × mean, mean + 150 ms) (webrtc-stats), the mean
//!   over the last 30 gaps.
//! * **Glass-to-glass** is the instant a picture was shown minus the instant its frame was
//!   captured (looked up by the capture time read from its pixels), network delay excluded.
//! * **A/V skew** is, for every shown picture, its glass-to-glass latency minus the
//!   mouth-to-ear latency of the audio played at the same moment: positive when the picture
//!   is late against its sound. Audio and video are captured on the same clock, so this is
//!   the lip-sync error of each picture, not only of marker frames.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use parley_media::{NullSink, SilenceSource, WavSource};
use parley_video::marks::TIMESTAMP_MASK;
use parley_video::{CapturedFrame, I420Frame, TestPatternSource, VideoError, VideoSource, read_marks};
use parley_voice::{
    CallOptions, ShownFrame, VideoMedia, VideoOptions, VideoSink, VoiceCall, next_incoming_call,
};
use serde::Serialize;
use str0m_netem::{Bitrate, DataSize, NetemConfig};

use crate::analysis::{self, AlignConfig};
use crate::call::{Network, Testbed};
use crate::relay::Impairment;
use crate::timeline::{RecordingSink, RecordingSource, snapshot};

/// The caller's media leaves from here, the callee's from [`CALLEE_IP`]: the relay impairs
/// each by its address.
const CALLER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const CALLEE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// Queue of the rate-limited uplink: about 0.8 s at 300 kbit/s, a small home router's.
const LINK_BUFFER_BYTES: i64 = 30_000;

/// A change of the caller's uplink capacity during the call.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BandwidthStep {
    /// Capacity before the step and after the recovery, bits per second.
    pub high_bps: u64,
    /// Capacity during the step.
    pub low_bps: u64,
    /// When the capacity drops, from the start of the measured part.
    pub down_at: Duration,
    /// When it comes back.
    pub up_at: Duration,
}

impl BandwidthStep {
    /// 2 Mbit/s → 300 kbit/s → 2 Mbit/s, 10 s at each.
    pub fn standard() -> Self {
        BandwidthStep {
            high_bps: 2_000_000,
            low_bps: 300_000,
            down_at: Duration::from_secs(10),
            up_at: Duration::from_secs(20),
        }
    }
}

/// How a video call is run.
#[derive(Debug, Clone)]
pub struct VideoRunOptions {
    /// Length of the call after the answer.
    pub seconds: u32,
    /// Start left out of the figures.
    pub warmup: Duration,
    /// What the caller says (48 kHz mono), looped.
    pub speech: Arc<Vec<i16>>,
    /// Test pattern size and rate.
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Seed of the emulators.
    pub seed: u64,
}

/// The figures of one video call.
#[derive(Debug, Clone, Serialize)]
pub struct VideoResult {
    pub network: Network,
    pub step: Option<BandwidthStep>,
    /// Length of the measured part, s.
    pub measured_s: f64,
    /// Pictures shown per second over the measured part.
    pub delivered_fps: f64,
    /// Pictures the source produced per second.
    pub captured_fps: f64,
    /// Freezes and their total and longest duration, ms.
    pub freezes: u32,
    pub freeze_total_ms: f64,
    pub longest_gap_ms: f64,
    /// Shown pictures whose marks did not read back (a corrupted picture would not).
    pub unreadable: u64,
    /// Glass-to-glass latency, network delay excluded, ms.
    pub glass_p50_ms: Option<f64>,
    pub glass_p95_ms: Option<f64>,
    /// A/V skew (video minus audio latency), ms: median and 95th percentile of its size.
    pub skew_p50_ms: Option<f64>,
    pub skew_abs_p95_ms: Option<f64>,
    /// Keyframe requests that reached the sender, and keyframes it sent.
    pub keyframe_requests: u64,
    pub keyframes_sent: u64,
    /// With a step: seconds from the drop until the encoder target stays under the low rate,
    /// and from the recovery until it is back above half the high rate.
    pub settle_down_s: Option<f64>,
    pub recover_s: Option<f64>,
    /// Mean encoder target, kbit/s, before / during / after the step (or over the call).
    pub target_kbps: Vec<f64>,
    /// Resolution at the end of the call.
    pub final_resolution: (u32, u32),
}

#[derive(Default)]
struct Captures {
    /// Capture time (µs, masked as in the pixels) → when the source handed the picture out.
    at: HashMap<u64, Instant>,
}

/// A video source that notes when each picture was captured.
struct RecordingVideoSource {
    inner: TestPatternSource,
    log: Arc<Mutex<Captures>>,
}

impl VideoSource for RecordingVideoSource {
    fn next_frame(&mut self, now_us: u64) -> Result<Option<CapturedFrame>, VideoError> {
        let frame = self.inner.next_frame(now_us)?;
        if let Some(f) = &frame {
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            log.at.insert(f.capture_us & TIMESTAMP_MASK, Instant::now());
        }
        Ok(frame)
    }
}

/// One picture as the callee saw it.
#[derive(Debug, Clone, Copy)]
struct Shown {
    at: Instant,
    capture_us: Option<u64>,
}

/// A video sink that reads each picture's marks and notes when it was shown.
struct RecordingVideoSink {
    log: Arc<Mutex<Vec<Shown>>>,
}

impl VideoSink for RecordingVideoSink {
    fn show(&mut self, picture: &I420Frame, _info: ShownFrame) {
        let marks = read_marks(picture);
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Shown {
                at: Instant::now(),
                capture_us: marks.map(|m| m.timestamp_us),
            });
    }
}

/// Shows nothing (the caller does not look at the callee's pictures here).
struct Blind;

impl VideoSink for Blind {
    fn show(&mut self, _: &I420Frame, _: ShownFrame) {}
}

fn link(bps: u64) -> NetemConfig {
    NetemConfig::new().link(Bitrate::bps(bps), DataSize::bytes(LINK_BUFFER_BYTES))
}

/// Runs one video call over `network` (the callee's downlink) with an optional bandwidth
/// `step` (the caller's uplink) and measures it.
pub async fn run(
    network: Network,
    step: Option<BandwidthStep>,
    options: &VideoRunOptions,
) -> anyhow::Result<VideoResult> {
    let bed = Testbed::start(options.seed).await?;
    bed.relay.set(
        IpAddr::V4(CALLEE_IP),
        Impairment {
            uplink: None,
            downlink: Some(network.netem()),
        },
    );
    bed.relay.set(
        IpAddr::V4(CALLER_IP),
        Impairment {
            uplink: step.map(|s| link(s.high_bps)),
            downlink: None,
        },
    );
    let (caller, callee, conv) = bed.friends().await?;

    let video = VideoOptions {
        max_width: options.width,
        max_height: options.height,
        max_fps: options.fps,
        ..VideoOptions::default()
    };
    let caller_options = CallOptions {
        bind: SocketAddr::new(IpAddr::V4(CALLER_IP), 0),
        video,
        ..CallOptions::default()
    };
    let callee_options = CallOptions {
        bind: SocketAddr::new(IpAddr::V4(CALLEE_IP), 0),
        // The callee's own pictures are small: the measured direction is the caller's.
        video: VideoOptions {
            max_width: 160,
            max_height: 90,
            max_fps: 15,
            ..VideoOptions::default()
        },
        ..CallOptions::default()
    };

    let captures = Arc::new(Mutex::new(Captures::default()));
    let shown = Arc::new(Mutex::new(Vec::new()));
    let pattern = TestPatternSource::new(options.width, options.height, options.fps)?;
    let caller_video = VideoMedia::new(
        RecordingVideoSource {
            inner: pattern,
            log: captures.clone(),
        },
        Blind,
    );
    let callee_video = VideoMedia::new(
        TestPatternSource::new(160, 90, 15)?,
        RecordingVideoSink { log: shown.clone() },
    );
    let (speech, sent_log) = RecordingSource::new(WavSource::from_samples(options.speech.to_vec(), true));
    let (heard, heard_log) = RecordingSink::new();

    let mut events = callee.events();
    let caller_call = VoiceCall::place_video(
        &caller,
        conv,
        speech,
        NullSink::default(),
        caller_video,
        caller_options,
    )
    .await?;
    let incoming = tokio::time::timeout(Duration::from_secs(15), next_incoming_call(&mut events))
        .await
        .context("the call did not ring")?
        .context("the callee's connection closed")?;
    let callee_call = VoiceCall::answer_video(
        &callee,
        incoming.call_id,
        SilenceSource,
        heard,
        callee_video,
        callee_options,
    )
    .await?;

    // Observe: the sender's target every 100 ms, the receiver's stats at the edges.
    let began = Instant::now();
    let total = Duration::from_secs(u64::from(options.seconds));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut start_stats = None;
    let mut targets: Vec<(Duration, u32)> = Vec::new();
    let mut stepped_down = false;
    let mut stepped_up = false;
    while began.elapsed() < total {
        tick.tick().await;
        let elapsed = began.elapsed();
        if elapsed < options.warmup {
            continue;
        }
        let measured = elapsed - options.warmup;
        if start_stats.is_none() {
            start_stats = Some((callee_call.stats(), caller_call.stats(), Instant::now()));
        }
        if let Some(s) = step {
            if !stepped_down && measured >= s.down_at {
                stepped_down = true;
                bed.relay.set(
                    IpAddr::V4(CALLER_IP),
                    Impairment {
                        uplink: Some(link(s.low_bps)),
                        downlink: None,
                    },
                );
            }
            if !stepped_up && measured >= s.up_at {
                stepped_up = true;
                bed.relay.set(
                    IpAddr::V4(CALLER_IP),
                    Impairment {
                        uplink: Some(link(s.high_bps)),
                        downlink: None,
                    },
                );
            }
        }
        let send = caller_call.stats().video.unwrap_or_default().send;
        targets.push((measured, send.target_bitrate_bps));
        if targets.len().is_multiple_of(10) {
            let rx = callee_call.stats();
            let video = rx.video.unwrap_or_default().receive;
            tracing::debug!(
                t = measured.as_secs_f64(),
                target = send.target_bitrate_bps,
                estimate = ?send.bandwidth_estimate_bps,
                size = ?(send.width, send.height),
                rx_rtt = ?rx.transport.rtt,
                rx_lost = rx.transport.video_frames_lost,
                rx_in = rx.transport.video_frames_in,
                sync = video.sync_delay_ms,
                audio_delay = video.audio_delay_ms,
                keyframes = video.video.keyframes_requested,
                freezes = video.video.freeze_count,
                "video timeline"
            );
        }
    }
    let end_callee = callee_call.stats();
    let end_caller = caller_call.stats();
    let ended = Instant::now();
    let _ = caller_call.hang_up().await;
    drop(callee_call.finish().await?);
    let (start_callee, start_caller, from) = start_stats.context("the call was shorter than its warm-up")?;

    let shown = shown.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let captures = std::mem::take(&mut *captures.lock().unwrap_or_else(PoisonError::into_inner));
    let window: Vec<Shown> = shown
        .into_iter()
        .filter(|s| s.at >= from && s.at <= ended)
        .collect();
    let measured_s = ended.duration_since(from).as_secs_f64();
    let captured = captures
        .at
        .values()
        .filter(|t| **t >= from && **t <= ended)
        .count();

    // Audio latency over the call, to set each picture against.
    let sent = snapshot(&sent_log);
    let heard = snapshot(&heard_log);
    let located = analysis::locate(&sent, &heard, 0, AlignConfig::default());
    let audio: Vec<(Instant, Duration)> = located
        .iter()
        .filter_map(|w| {
            let frame = heard.instants.get(w.played_at / parley_media::FRAME_SAMPLES)?;
            Some((*frame, w.latency))
        })
        .collect();

    let excluded = network.mean_delay();
    let mut glass = Vec::new();
    let mut skews = Vec::new();
    let mut unreadable = 0u64;
    for s in &window {
        let Some(capture) = s.capture_us.and_then(|c| captures.at.get(&c)) else {
            unreadable += 1;
            continue;
        };
        let latency = s.at.saturating_duration_since(*capture);
        glass.push(latency.saturating_sub(excluded));
        if let Some((_, audio_latency)) = nearest(&audio, s.at) {
            skews.push(latency.as_secs_f64() * 1000.0 - audio_latency.as_secs_f64() * 1000.0);
        }
    }
    let (freezes, freeze_total, longest) = freezes(&window);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    skews.sort_by(f64::total_cmp);
    let abs: Vec<f64> = skews.iter().map(|s| s.abs()).collect();

    let (settle_down_s, recover_s, target_kbps) = match step {
        Some(s) => adaptation(&targets, s),
        None => (None, None, vec![mean_kbps(targets.iter().map(|t| t.1))]),
    };
    let send_start = start_caller.video.unwrap_or_default().send;
    let send_end = end_caller.video.unwrap_or_default().send;
    let _ = (start_callee, end_callee);
    let result = VideoResult {
        network,
        step,
        measured_s,
        delivered_fps: window.len() as f64 / measured_s,
        captured_fps: captured as f64 / measured_s,
        freezes,
        freeze_total_ms: ms(freeze_total),
        longest_gap_ms: ms(longest),
        unreadable,
        glass_p50_ms: analysis::quantile(&glass, 0.5).map(ms),
        glass_p95_ms: analysis::quantile(&glass, 0.95).map(ms),
        skew_p50_ms: skews.get(skews.len() / 2).copied(),
        skew_abs_p95_ms: analysis::quantile_f64(&abs, 0.95),
        keyframe_requests: send_end.keyframe_requests - send_start.keyframe_requests,
        keyframes_sent: send_end.keyframes_sent - send_start.keyframes_sent,
        settle_down_s,
        recover_s,
        target_kbps,
        final_resolution: (send_end.width, send_end.height),
    };
    bed.stop().await;
    Ok(result)
}

/// The audio latency measured nearest in time to `at`.
fn nearest(audio: &[(Instant, Duration)], at: Instant) -> Option<(Instant, Duration)> {
    audio
        .iter()
        .min_by_key(|(t, _)| if *t > at { *t - at } else { at - *t })
        .copied()
}

/// Freezes by the webrtc-stats rule over the shown pictures: count, total, longest gap.
fn freezes(shown: &[Shown]) -> (u32, Duration, Duration) {
    let mut gaps: Vec<Duration> = Vec::new();
    let mut count = 0;
    let mut total = Duration::ZERO;
    let mut longest = Duration::ZERO;
    for pair in shown.windows(2) {
        let gap = pair[1].at.saturating_duration_since(pair[0].at);
        longest = longest.max(gap);
        let recent = &gaps[gaps.len().saturating_sub(30)..];
        if recent.len() >= 5 {
            let mean = recent.iter().sum::<Duration>() / recent.len() as u32;
            if gap >= (mean * 3).max(mean + Duration::from_millis(150)) {
                count += 1;
                total += gap;
            }
        }
        gaps.push(gap);
    }
    (count, total, longest)
}

/// Seconds until the target stays under the low rate after the drop, and until it is back
/// above half the high rate after the recovery; mean target before / during / after.
fn adaptation(targets: &[(Duration, u32)], step: BandwidthStep) -> (Option<f64>, Option<f64>, Vec<f64>) {
    let during: Vec<&(Duration, u32)> = targets
        .iter()
        .filter(|(t, _)| *t >= step.down_at && *t < step.up_at)
        .collect();
    // The last moment in the low phase the target was still over the capacity.
    let settle = during
        .iter()
        .rev()
        .find(|(_, bps)| u64::from(*bps) > step.low_bps)
        .map_or(Some(0.0), |(t, _)| Some((*t - step.down_at).as_secs_f64() + 0.1));
    let settle = settle.filter(|s| *s < (step.up_at - step.down_at).as_secs_f64());
    let recover = targets
        .iter()
        .find(|(t, bps)| *t >= step.up_at && u64::from(*bps) >= step.high_bps / 2)
        .map(|(t, _)| (*t - step.up_at).as_secs_f64());
    let phase = |lo: Duration, hi: Duration| {
        mean_kbps(targets.iter().filter(|(t, _)| *t >= lo && *t < hi).map(|t| t.1))
    };
    let means = vec![
        phase(Duration::ZERO, step.down_at),
        phase(step.down_at, step.up_at),
        phase(step.up_at, Duration::MAX),
    ];
    (settle, recover, means)
}

fn mean_kbps(values: impl Iterator<Item = u32>) -> f64 {
    let (sum, n) = values.fold((0u64, 0u64), |(s, n), v| (s + u64::from(v), n + 1));
    if n == 0 {
        0.0
    } else {
        sum as f64 / n as f64 / 1000.0
    }
}

/// The video results as a Markdown table.
pub fn table(results: &[VideoResult]) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.0}"));
    let mut out = String::from(
        "| network | fps shown / captured | freezes (total ms, % of call) | longest gap (ms) | glass-to-glass p50 / p95 (ms) | A/V skew p50 / \\|p95\\| (ms) | keyframes req / sent | unreadable |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {} | {:.1} / {:.1} | {} ({:.0}, {:.2} %) | {:.0} | {} / {} | {} / {} | {} / {} | {} |\n",
            r.network.label(),
            r.delivered_fps,
            r.captured_fps,
            r.freezes,
            r.freeze_total_ms,
            r.freeze_total_ms / (r.measured_s * 10.0),
            r.longest_gap_ms,
            opt(r.glass_p50_ms),
            opt(r.glass_p95_ms),
            opt(r.skew_p50_ms),
            opt(r.skew_abs_p95_ms),
            r.keyframe_requests,
            r.keyframes_sent,
            r.unreadable,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown_every(gaps_ms: &[u64]) -> Vec<Shown> {
        let t0 = Instant::now();
        let mut at = t0;
        let mut out = vec![Shown { at, capture_us: None }];
        for g in gaps_ms {
            at += Duration::from_millis(*g);
            out.push(Shown { at, capture_us: None });
        }
        out
    }

    #[test]
    fn a_steady_stream_has_no_freezes_and_a_long_gap_is_one() {
        let steady = shown_every(&[33; 60]);
        assert_eq!(freezes(&steady).0, 0);
        let mut gaps = vec![33; 30];
        gaps.push(300);
        gaps.extend([33; 30]);
        let (count, total, longest) = freezes(&shown_every(&gaps));
        assert_eq!(
            (count, total, longest),
            (1, Duration::from_millis(300), Duration::from_millis(300))
        );
        // Below max(3 × 33, 33 + 150) = 183 ms a gap is a stutter, not a freeze.
        let mut gaps = vec![33; 30];
        gaps.push(170);
        assert_eq!(freezes(&shown_every(&gaps)).0, 0);
    }

    #[test]
    fn adaptation_times_are_read_from_the_target_series() {
        let step = BandwidthStep::standard();
        let targets: Vec<(Duration, u32)> = (0..300)
            .map(|i| {
                let t = Duration::from_millis(100 * i);
                let bps = match t.as_millis() {
                    0..10_000 => 1_800_000,
                    10_000..12_500 => 600_000,
                    12_500..20_000 => 250_000,
                    20_000..23_000 => 600_000,
                    _ => 1_500_000,
                };
                (t, bps)
            })
            .collect();
        let (settle, recover, means) = adaptation(&targets, step);
        assert!((settle.unwrap() - 2.5).abs() < 0.01, "{settle:?}");
        assert!((recover.unwrap() - 3.0).abs() < 0.01, "{recover:?}");
        assert_eq!(means.len(), 3);
        assert!((means[0] - 1800.0).abs() < 0.01);
    }
}
