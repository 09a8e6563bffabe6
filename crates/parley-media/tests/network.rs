//! Tone → Opus → simulated network → jitter buffer → analysis, in simulated time.
//!
//! The network model is small and seeded: a base latency plus uniform jitter (which reorders
//! packets once it exceeds the 20 ms packet spacing), random or bursty (Gilbert–Elliott) loss,
//! and duplication. Every scenario is deterministic.

use std::{cmp::Reverse, collections::BinaryHeap};

use parley_media::{
    AudioReceiver, AudioSender, EncoderConfig, FRAME_US, JitterConfig, MemorySink, Playout, ReceiveStats,
    ToneSource,
    analysis::{dominant_frequency, find_gaps},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

const TONE_HZ: f64 = 440.0;
const BASE_LATENCY_US: u64 = 40_000;

#[derive(Debug, Clone, Copy)]
enum Loss {
    None,
    Random(f64),
    /// Gilbert–Elliott: chance to enter the bad state per packet, to leave it, loss while bad.
    Bursty {
        enter: f64,
        leave: f64,
        loss_in_bad: f64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Phase {
    seconds: u64,
    jitter_us: u64,
    loss: Loss,
    duplicate: f64,
}

impl Phase {
    fn new(seconds: u64, jitter_ms: u64, loss: Loss) -> Self {
        Self {
            seconds,
            jitter_us: jitter_ms * 1_000,
            loss,
            duplicate: 0.0,
        }
    }
}

struct Network {
    rng: StdRng,
    bad_state: bool,
}

impl Network {
    fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            bad_state: false,
        }
    }

    /// Delivery times for one packet sent at `sent_us` (empty if lost).
    fn deliver(&mut self, phase: &Phase, sent_us: u64) -> Vec<u64> {
        let lost = match phase.loss {
            Loss::None => false,
            Loss::Random(p) => self.rng.random_bool(p),
            Loss::Bursty {
                enter,
                leave,
                loss_in_bad,
            } => {
                self.bad_state = if self.bad_state {
                    !self.rng.random_bool(leave)
                } else {
                    self.rng.random_bool(enter)
                };
                self.bad_state && self.rng.random_bool(loss_in_bad)
            }
        };
        if lost {
            return Vec::new();
        }
        let copies = if self.rng.random_bool(phase.duplicate) {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let jitter = if phase.jitter_us == 0 {
                    0
                } else {
                    self.rng.random_range(0..=2 * phase.jitter_us)
                };
                // Centre the jitter on the base latency: ±jitter.
                sent_us + BASE_LATENCY_US - phase.jitter_us.min(BASE_LATENCY_US) + jitter
            })
            .collect()
    }
}

/// (delivery µs, sequence number, RTP timestamp, payload)
type InFlight = (u64, u16, u32, Vec<u8>);

struct Outcome {
    stats: ReceiveStats,
    /// Per pull after playout started: the jitter buffer level (ms).
    delays_ms: Vec<f64>,
    /// Stats snapshot at the end of each phase.
    phase_stats: Vec<ReceiveStats>,
    recording: Vec<i16>,
    /// Concealed frames after the first `settle_s` seconds (start-up excluded).
    playouts: Vec<Playout>,
}

fn run(seed: u64, expected_loss: u8, phases: &[Phase]) -> Outcome {
    let tone = ToneSource::new(TONE_HZ, 0.5).unwrap();
    let config = EncoderConfig {
        expected_loss_percent: expected_loss,
        ..EncoderConfig::default()
    };
    // Start near both wrap points so every run crosses them.
    let mut sender = AudioSender::new(tone, config, u32::MAX - 48_000).unwrap();
    let mut seq: u16 = 65_500;
    let mut receiver = AudioReceiver::new(JitterConfig::default(), MemorySink::new(600)).unwrap();
    let mut net = Network::new(seed);
    let mut in_flight: BinaryHeap<Reverse<InFlight>> = BinaryHeap::new();
    let mut out = Outcome {
        stats: ReceiveStats::default(),
        delays_ms: Vec::new(),
        phase_stats: Vec::new(),
        recording: Vec::new(),
        playouts: Vec::new(),
    };
    let mut now_us = 0u64;
    for phase in phases {
        for _ in 0..phase.seconds * 50 {
            let frame = sender.next_frame().unwrap().unwrap();
            for at in net.deliver(phase, now_us) {
                in_flight.push(Reverse((at, seq, frame.rtp_timestamp, frame.payload.clone())));
            }
            seq = seq.wrapping_add(1);
            // The receiver's playout clock runs 7 ms out of phase with the sender's.
            let pull_at = now_us + 7_000;
            while in_flight.peek().is_some_and(|Reverse((at, ..))| *at <= pull_at) {
                let Some(Reverse((at, s, ts, payload))) = in_flight.pop() else {
                    break;
                };
                receiver.insert(s, ts, at, &payload);
            }
            let playout = receiver.pull(pull_at).unwrap();
            if playout != Playout::Silence {
                out.delays_ms.push(receiver.stats().current_delay_ms);
            }
            out.playouts.push(playout);
            now_us += FRAME_US;
        }
        out.phase_stats.push(receiver.stats());
    }
    out.stats = receiver.stats();
    out.recording = receiver.into_sink().samples().to_vec();
    out
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

fn report(name: &str, o: &Outcome) {
    let s = &o.stats;
    println!(
        "{name}: played {} concealed {} ({:.2} %) fec {} accel {} ({} samples) expand {} late {} dup {} \
         discarded {} | delay p50 {:.0} p95 {:.0} max {:.0} ms, target {:.0} ms, jitter {:.1} ms",
        s.frames_played,
        s.concealed_frames,
        100.0 * s.concealed_ratio(),
        s.fec_frames,
        s.accelerate_count,
        s.accelerate_samples,
        s.preemptive_expand_count,
        s.late_packets,
        s.duplicate_packets,
        s.discarded_packets,
        percentile(&o.delays_ms, 0.5),
        percentile(&o.delays_ms, 0.95),
        percentile(&o.delays_ms, 1.0),
        s.target_delay_ms,
        s.jitter_ms,
    );
}

fn assert_tone(o: &Outcome) {
    let f = dominant_frequency(&o.recording).unwrap();
    assert!((f - TONE_HZ).abs() < 2.0, "played tone at {f} Hz");
}

#[test]
fn clean_network_plays_every_frame() {
    let o = run(1, 0, &[Phase::new(20, 0, Loss::None)]);
    report("clean", &o);
    assert_eq!(o.stats.concealed_frames, 0);
    assert_eq!(o.stats.fec_frames, 0);
    assert_eq!(o.stats.late_packets, 0);
    assert!(o.stats.frames_played >= 995, "{}", o.stats.frames_played);
    assert!(
        o.stats.silence_frames <= 5,
        "start-up took {} frames",
        o.stats.silence_frames
    );
    assert_tone(&o);
    assert_eq!(find_gaps(&o.recording, 480, 0.1), vec![]);
}

#[test]
fn ten_percent_loss_with_20ms_jitter_is_mostly_repaired_by_fec() {
    let o = run(2, 10, &[Phase::new(60, 20, Loss::Random(0.10))]);
    report("10 % loss ±20 ms", &o);
    assert!(
        o.stats.concealed_ratio() <= 0.02,
        "concealed {:.2} %",
        100.0 * o.stats.concealed_ratio()
    );
    assert!(
        o.stats.fec_frames > 200,
        "FEC repaired only {}",
        o.stats.fec_frames
    );
    // ±20 ms of jitter needs ~40 ms of buffer on top of the frame being played.
    assert!(percentile(&o.delays_ms, 0.95) <= 120.0);
    assert!(o.stats.target_delay_ms <= 100.0);
    assert_tone(&o);
    // Only three losses in a row (p = 0.1 %) outlast Opus's concealment, which fades within
    // ~30 ms: expect a few short dips a minute, never a long dropout.
    let gaps = find_gaps(&o.recording, 480, 0.1);
    assert!(gaps.len() <= 5, "{} audible gaps: {gaps:?}", gaps.len());
    assert!(gaps.iter().all(|g| g.len_samples <= 1_920), "{gaps:?}");
}

#[test]
fn loss_sweep_stays_within_bounds() {
    for (seed, loss, max_concealed) in [(3, 0.05, 0.01), (4, 0.10, 0.02), (5, 0.20, 0.10)] {
        let o = run(
            seed,
            (loss * 100.0) as u8,
            &[Phase::new(60, 20, Loss::Random(loss))],
        );
        report(&format!("{:.0} % loss ±20 ms", loss * 100.0), &o);
        assert!(
            o.stats.concealed_ratio() <= max_concealed,
            "concealed {:.2} %",
            100.0 * o.stats.concealed_ratio()
        );
        assert_tone(&o);
    }
}

#[test]
fn bursty_loss_is_concealed_without_derailing_playout() {
    // Mean burst of 4 packets, ~5 % loss overall.
    let loss = Loss::Bursty {
        enter: 0.0125,
        leave: 0.25,
        loss_in_bad: 1.0,
    };
    let o = run(6, 10, &[Phase::new(60, 20, loss)]);
    report("bursty ±20 ms", &o);
    assert!(o.stats.concealed_frames > 0);
    assert!(o.stats.concealed_ratio() <= 0.06);
    assert!(percentile(&o.delays_ms, 0.95) <= 150.0);
    assert_tone(&o);
}

#[test]
fn target_follows_jitter_up_and_back_down() {
    let o = run(
        7,
        10,
        &[Phase::new(20, 50, Loss::None), Phase::new(30, 0, Loss::None)],
    );
    report("±50 ms then calm", &o);
    let jittery = o.phase_stats[0];
    assert!(
        jittery.target_delay_ms >= 80.0,
        "target under ±50 ms jitter {}",
        jittery.target_delay_ms
    );
    assert!(
        o.stats.target_delay_ms <= 40.0,
        "target after calm {}",
        o.stats.target_delay_ms
    );
    assert!(
        o.stats.accelerate_count > jittery.accelerate_count,
        "never shrank"
    );
    // The last five seconds run near the calm target.
    let tail = &o.delays_ms[o.delays_ms.len() - 250..];
    assert!(
        percentile(tail, 0.5) <= 60.0,
        "delay after calm {}",
        percentile(tail, 0.5)
    );
    assert!(
        jittery.concealed_ratio() <= 0.03,
        "concealed {:.2} %",
        100.0 * jittery.concealed_ratio()
    );
    assert_tone(&o);
}

#[test]
fn duplicates_and_wraps_cost_nothing() {
    let mut phase = Phase::new(20, 5, Loss::None);
    phase.duplicate = 0.05;
    let o = run(8, 0, &[phase]);
    report("duplicates", &o);
    assert!(o.stats.duplicate_packets > 20);
    assert_eq!(o.stats.concealed_frames, 0);
    assert_eq!(o.stats.resets, 0);
    assert_tone(&o);
}
