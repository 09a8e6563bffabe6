//! Adaptive jitter buffer in the manner of libwebrtc's NetEQ, sans-IO.
//!
//! Packets go in with their RTP sequence number, RTP timestamp and arrival time; every 20 ms the
//! caller pulls exactly one frame of PCM and learns how it was made ([`Playout`]). Time is
//! always passed in (microseconds on any monotonic clock), so tests replay hours of impaired
//! network in milliseconds.
//!
//! How a frame is made, in order of preference:
//! 1. the expected packet is here: decode it, and if the buffer is well above (below) its
//!    target, remove (insert) one pitch period from the decoded audio — Accelerate
//!    (PreemptiveExpand) — so the delay follows the target without audible skips;
//! 2. it is missing but its successor is here: rebuild it from the FEC copy inside the
//!    successor (Opus in-band FEC);
//! 3. it is missing and a later packet is here: it is lost, conceal it and move on;
//! 4. nothing is buffered at all (underrun, the network is late): conceal *without* moving on,
//!    so a delayed packet still plays when it comes and the buffer grows by what the spike
//!    cost; Accelerate later takes that back. Concealment already played during an underrun
//!    counts against a later gap, so a packet that arrives after an outage is not concealed
//!    twice.
//!
//! The target comes from the `delay` module: a quantile of the recent relative arrival delays,
//! plus one frame, clamped to the configured minimum and maximum.
//!
//! Robustness: sequence numbers and timestamps are unwrapped around their wrap points;
//! duplicates and packets whose turn has passed are counted and dropped; a packet too far ahead
//! for the buffer (outage longer than the buffer, sender restart) or a run of packets far
//! behind restarts the stream; the buffer never holds more than `max_packets`.

mod delay;
mod stretch;

use std::collections::BTreeMap;

use crate::{
    FRAME_SAMPLES, FRAME_US, Frame, MediaError, ReceiveStats, SAMPLE_RATE,
    codec::{FrameDecoder, MAX_DECODED_SAMPLES},
};
use delay::{DelayEstimator, DelaySettings};

/// Largest payload accepted; bigger cannot be one Opus packet of ≤ 120 ms.
pub const MAX_PAYLOAD_BYTES: usize = 1_500 * 4;
/// Packets arriving this far behind the playout point, several in a row, mean the sender
/// restarted its sequence numbers.
const RESYNC_AFTER_FAR_PACKETS: u32 = 3;
/// Timestamps that disagree with sequence numbers by more than this (100 ms) belong to a new
/// clock: the relay rebases sequence numbers when the speaker on a line changes, but each
/// speaker's timestamps are their own.
const TIMELINE_JUMP_SAMPLES: i64 = 5 * FRAME_SAMPLES as i64;
/// Samples one millisecond holds.
const SAMPLES_PER_MS: usize = SAMPLE_RATE as usize / 1_000;
/// Upper bound on decoded-but-unplayed audio, whatever packet durations the sender uses.
const MAX_QUEUED_SAMPLES: usize = MAX_DECODED_SAMPLES + 2 * FRAME_SAMPLES;
/// Packets after a (re)start during which `initial_delay_ms` is the floor of the target, while
/// the delay histogram fills.
const WARMUP_PACKETS: u32 = 50;
/// Smoothing of the buffer level the time-stretch decisions use (time constant ≈ 20 pulls).
const LEVEL_SMOOTHING: f64 = 0.95;

/// Jitter buffer settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterConfig {
    /// Floor of the target delay, ms (raise it for a wired link known to be bursty).
    pub min_delay_ms: u32,
    /// Ceiling of the target delay, ms: beyond it conversation suffers more than audio does.
    pub max_delay_ms: u32,
    /// Target floor during the first second, before the jitter estimate means anything.
    pub initial_delay_ms: u32,
    /// Share of packets that should arrive in time (NetEQ uses 0.95–0.97).
    pub quantile: f64,
    /// Per-packet forget factor of the delay histogram; 0.983 halves old evidence in ~40
    /// packets (0.8 s) once a spike has passed the 2 s window.
    pub forget_factor: f64,
    /// Window for the fastest-arrival reference, ms.
    pub history_ms: u32,
    /// Hard cap on buffered packets; also how far ahead a packet may be before the stream is
    /// restarted.
    pub max_packets: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            min_delay_ms: 20,
            max_delay_ms: 500,
            initial_delay_ms: 60,
            quantile: 0.95,
            forget_factor: 0.983,
            history_ms: 2_000,
            max_packets: 50,
        }
    }
}

impl JitterConfig {
    fn validate(&self) -> Result<(), MediaError> {
        let bad = |what: String| Err(MediaError::InvalidConfig(what));
        if self.max_delay_ms < self.min_delay_ms || self.max_delay_ms > 5_000 {
            return bad(format!(
                "delay range {}..{} ms",
                self.min_delay_ms, self.max_delay_ms
            ));
        }
        if !(0.5..1.0).contains(&self.quantile) {
            return bad(format!("quantile {}", self.quantile));
        }
        if !(0.5..1.0).contains(&self.forget_factor) {
            return bad(format!("forget factor {}", self.forget_factor));
        }
        let needed = (self.max_delay_ms as usize).div_ceil(20) + 2;
        if self.max_packets < needed || self.max_packets > 1_000 {
            return bad(format!(
                "max_packets {} (needs {needed}..=1000 for the delay range)",
                self.max_packets
            ));
        }
        Ok(())
    }
}

/// How the frame returned by [`JitterBuffer::pull`] was made. When several things happened in
/// one pull the most noticeable is reported; [`ReceiveStats`] counts each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Playout {
    /// Decoded from its packet.
    Normal,
    /// Decoded, then a pitch period was removed to shrink the delay.
    Accelerate,
    /// Decoded, then a pitch period was added to grow the delay.
    PreemptiveExpand,
    /// Rebuilt from the FEC data in the next packet.
    Fec,
    /// Invented by packet loss concealment (loss or underrun).
    Expand,
    /// Silence: playout has not started (or is re-buffering after a long outage).
    Silence,
}

/// What [`JitterBuffer::insert`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Kept for playout.
    Buffered,
    /// Its playout time had passed.
    Late,
    /// Already buffered or played.
    Duplicate,
    /// Empty, oversized, or evicted by an overflow.
    Discarded,
    /// The stream restarted on this packet (big sequence jump); the old buffer was dropped.
    Reset,
}

#[derive(Debug)]
struct Packet {
    payload: Vec<u8>,
}

/// The adaptive jitter buffer, owning the decoder so it can ask for FEC and concealment.
#[derive(Debug)]
pub struct JitterBuffer<D> {
    config: JitterConfig,
    decoder: D,
    delay: DelayEstimator,
    packets: BTreeMap<i64, Packet>,
    /// Highest unwrapped sequence number seen; the reference for unwrapping.
    highest_seq: Option<i64>,
    highest_ts: Option<i64>,
    /// Unwrapped timestamp of the packet with `highest_seq`.
    highest_seq_ts: Option<i64>,
    /// Sequence number of the next frame to play; `None` until playout starts.
    next_seq: Option<i64>,
    /// Bit i set: packet `next_seq - 1 - i` was decoded (tells duplicates from late packets).
    played: u64,
    far_behind: u32,
    first_arrival_us: Option<u64>,
    packets_since_start: u32,
    /// Concealment played during an underrun, not yet matched by a skipped sequence number.
    underrun_samples: usize,
    /// Decoded, not yet handed out.
    queue: Vec<i16>,
    filtered_level: f64,
    /// Added to the target on top of what the jitter asks for: lip sync's request when this
    /// voice's video arrives later than its audio.
    extra_delay_ms: u32,
    stats: ReceiveStats,
}

impl<D: FrameDecoder> JitterBuffer<D> {
    /// Creates an empty buffer around `decoder`.
    pub fn new(config: JitterConfig, decoder: D) -> Result<Self, MediaError> {
        config.validate()?;
        let delay = DelayEstimator::new(DelaySettings {
            quantile: config.quantile,
            forget_factor: config.forget_factor,
            window_us: u64::from(config.history_ms) * 1_000,
        });
        Ok(Self {
            config,
            decoder,
            delay,
            packets: BTreeMap::new(),
            highest_seq: None,
            highest_ts: None,
            highest_seq_ts: None,
            next_seq: None,
            played: 0,
            far_behind: 0,
            first_arrival_us: None,
            packets_since_start: 0,
            underrun_samples: 0,
            queue: Vec::with_capacity(MAX_QUEUED_SAMPLES),
            filtered_level: 0.0,
            extra_delay_ms: 0,
            stats: ReceiveStats::default(),
        })
    }

    /// Plays this much later than the jitter alone needs (still within `max_delay_ms`), so
    /// that video arriving later than the audio can be shown with it. The buffer moves to the
    /// new delay by time-stretching, as it does for jitter.
    pub fn set_extra_delay_ms(&mut self, ms: u32) {
        self.extra_delay_ms = ms;
    }

    /// The decoder, for tests that inspect what was decoded.
    pub fn decoder(&self) -> &D {
        &self.decoder
    }

    /// Packets waiting for playout (never more than `max_packets`).
    pub fn buffered_packets(&self) -> usize {
        self.packets.len()
    }

    /// RTP timestamp of the first sample the last [`pull`](Self::pull) handed out, while
    /// playout runs (`None` before it starts and while re-buffering): what is heard now, the
    /// anchor lip sync needs. Counted back from the newest packet at one 20 ms frame per
    /// sequence number, so time-stretching moves it by at most the stretched amount.
    pub fn playout_timestamp(&self) -> Option<u32> {
        let (next, highest, highest_ts) = (self.next_seq?, self.highest_seq?, self.highest_seq_ts?);
        let next_ts = highest_ts + (next - highest) * FRAME_SAMPLES as i64;
        let first = next_ts - self.queue.len() as i64 - FRAME_SAMPLES as i64;
        // Back onto the 32-bit RTP circle the timestamps were unwrapped from.
        Some(first as u32)
    }

    /// Statistics so far.
    pub fn stats(&self) -> ReceiveStats {
        let mut stats = self.stats;
        stats.target_delay_ms = self.target_samples() as f64 / SAMPLES_PER_MS as f64;
        stats.jitter_ms = self.delay.jitter_ms();
        stats
    }

    /// Buffer level the buffer aims for, in samples.
    fn target_samples(&self) -> usize {
        let mut target_ms = FRAME_US as u32 / 1_000 + self.delay.quantile_ms();
        if !self.delay.has_data() || self.packets_since_start < WARMUP_PACKETS {
            target_ms = target_ms.max(self.config.initial_delay_ms);
        }
        let target_ms = target_ms.saturating_add(self.extra_delay_ms);
        let target_ms = target_ms.clamp(self.config.min_delay_ms.max(20), self.config.max_delay_ms.max(20));
        target_ms as usize * SAMPLES_PER_MS
    }

    /// Audio available ahead of the playout point, in samples (gaps count: they will be
    /// filled by FEC or concealment when their turn comes).
    fn level_samples(&self) -> usize {
        let span = match (self.packets.first_key_value(), self.packets.last_key_value()) {
            (Some((&first, _)), Some((&last, _))) => {
                let from = self.next_seq.unwrap_or(first);
                usize::try_from(last - from + 1).unwrap_or(0) * FRAME_SAMPLES
            }
            _ => 0,
        };
        span + self.queue.len()
    }

    fn unwrap_seq(&self, seq: u16) -> i64 {
        match self.highest_seq {
            // Treat the 16-bit difference as signed: nearest interpretation wins.
            Some(h) => h + i64::from(seq.wrapping_sub(h as u16) as i16),
            None => i64::from(seq),
        }
    }

    fn unwrap_ts(&mut self, ts: u32) -> i64 {
        let ext = match self.highest_ts {
            Some(h) => h + i64::from(ts.wrapping_sub(h as u32) as i32),
            None => i64::from(ts),
        };
        if self.highest_ts.is_none_or(|h| ext > h) {
            self.highest_ts = Some(ext);
        }
        ext
    }

    /// Drops everything buffered and waits for a new start.
    fn reset(&mut self) {
        self.stats.discarded_packets += self.packets.len() as u64;
        self.stats.resets += 1;
        self.packets.clear();
        self.highest_seq = None;
        self.highest_ts = None;
        self.highest_seq_ts = None;
        self.next_seq = None;
        self.played = 0;
        self.far_behind = 0;
        self.first_arrival_us = None;
        self.packets_since_start = 0;
        self.underrun_samples = 0;
    }

    /// Hands a received packet to the buffer. `arrival_us` is on the same clock as the `now_us`
    /// given to [`pull`](Self::pull).
    pub fn insert(&mut self, seq: u16, rtp_timestamp: u32, arrival_us: u64, payload: &[u8]) -> InsertOutcome {
        self.stats.packets_received += 1;
        if payload.is_empty() || payload.len() > MAX_PAYLOAD_BYTES {
            self.stats.discarded_packets += 1;
            return InsertOutcome::Discarded;
        }
        let mut outcome = InsertOutcome::Buffered;
        let mut ext = self.unwrap_seq(seq);
        let window = self.config.max_packets as i64;

        match self.next_seq {
            Some(next) if ext >= next + window => {
                // Further ahead than the buffer can hold: an outage longer than the buffer or a
                // sender jump. Start over from this packet.
                self.reset();
                ext = i64::from(seq);
                outcome = InsertOutcome::Reset;
            }
            Some(next) if ext < next => {
                if next - ext > window {
                    self.far_behind += 1;
                    if self.far_behind >= RESYNC_AFTER_FAR_PACKETS {
                        self.reset();
                        ext = i64::from(seq);
                        outcome = InsertOutcome::Reset;
                    } else {
                        self.stats.late_packets += 1;
                        return InsertOutcome::Late;
                    }
                } else {
                    self.far_behind = 0;
                    let behind = next - ext;
                    if behind <= 64 && self.played & (1u64 << (behind - 1)) != 0 {
                        self.stats.duplicate_packets += 1;
                        return InsertOutcome::Duplicate;
                    }
                    // A late packet still tells the delay estimate that the buffer was short.
                    let ts = self.unwrap_ts(rtp_timestamp);
                    self.delay.on_packet(arrival_us, ts);
                    self.stats.late_packets += 1;
                    return InsertOutcome::Late;
                }
            }
            None => {
                if let Some(h) = self.highest_seq
                    && (ext - h).abs() >= window
                {
                    // Before playout a far packet is a straggler of an old stream or the first
                    // of a new one; a few in a row decide which.
                    self.far_behind += 1;
                    if self.far_behind < RESYNC_AFTER_FAR_PACKETS {
                        self.stats.late_packets += 1;
                        return InsertOutcome::Late;
                    }
                    self.reset();
                    ext = i64::from(seq);
                    outcome = InsertOutcome::Reset;
                }
            }
            Some(_) => {}
        }
        self.far_behind = 0;

        if self.packets.contains_key(&ext) {
            self.stats.duplicate_packets += 1;
            return InsertOutcome::Duplicate;
        }
        let ts = self.unwrap_ts(rtp_timestamp);
        if let (Some(h), Some(h_ts)) = (self.highest_seq, self.highest_seq_ts)
            && ext > h
            && (ts - h_ts - (ext - h) * FRAME_SAMPLES as i64).abs() > TIMELINE_JUMP_SAMPLES
        {
            self.delay.restart_timeline();
        }
        self.delay.on_packet(arrival_us, ts);
        self.packets_since_start = self.packets_since_start.saturating_add(1);
        self.first_arrival_us.get_or_insert(arrival_us);
        if self.highest_seq.is_none_or(|h| ext > h) {
            self.highest_seq = Some(ext);
            self.highest_seq_ts = Some(ts);
        }
        self.packets.insert(
            ext,
            Packet {
                payload: payload.to_vec(),
            },
        );
        // Before playout starts nothing else bounds the buffer: keep the newest.
        while self.packets.len() > self.config.max_packets {
            if let Some((evicted, _)) = self.packets.pop_first() {
                self.stats.discarded_packets += 1;
                if evicted == ext {
                    outcome = InsertOutcome::Discarded;
                }
            }
        }
        outcome
    }

    /// Hands out the next 20 ms of audio into `out`, at time `now_us`.
    pub fn pull(&mut self, now_us: u64, out: &mut Frame) -> Playout {
        let level = self.level_samples();
        self.stats.current_delay_ms = level as f64 / SAMPLES_PER_MS as f64;
        let target = self.target_samples();

        if self.next_seq.is_none() {
            let waited = match self.first_arrival_us {
                Some(first) => now_us.saturating_sub(first) >= (target / SAMPLES_PER_MS) as u64 * 1_000,
                None => false,
            };
            match self.packets.first_key_value() {
                Some((&first, _)) if level >= target || waited => {
                    self.next_seq = Some(first);
                    self.filtered_level = level as f64;
                }
                _ => {
                    out.fill(0);
                    self.stats.silence_frames += 1;
                    return Playout::Silence;
                }
            }
        }

        self.filtered_level = LEVEL_SMOOTHING * self.filtered_level + (1.0 - LEVEL_SMOOTHING) * level as f64;
        let mut report = Playout::Normal;
        let mut stretched = false;
        let mut guard = 0;
        while self.queue.len() < FRAME_SAMPLES {
            guard += 1;
            let step = if guard > 8 {
                self.conceal_frame()
            } else {
                self.step()
            };
            report = more_noticeable(report, step);
            if step == Playout::Normal && !stretched {
                stretched = true;
                report = more_noticeable(report, self.maybe_stretch(target));
            }
            if self.next_seq.is_none() {
                // A long underrun ended playout; the rest of this frame is silence.
                self.queue.resize(FRAME_SAMPLES.max(self.queue.len()), 0);
            }
        }
        out.copy_from_slice(&self.queue[..FRAME_SAMPLES]);
        self.queue.drain(..FRAME_SAMPLES);
        self.stats.frames_played += 1;
        self.stats.filtered_delay_ms = self.filtered_level / SAMPLES_PER_MS as f64;
        report
    }

    /// Produces some audio for the frame being built, or moves past a gap.
    fn step(&mut self) -> Playout {
        let Some(next) = self.next_seq else {
            return self.conceal_frame();
        };
        if let Some(packet) = self.packets.remove(&next) {
            self.advance(1, true);
            self.underrun_samples = 0;
            return match self.decoder.decode(&packet.payload, &mut self.queue) {
                Ok(n) if n > 0 => {
                    self.stats.normal_frames += 1;
                    self.queue.truncate(MAX_QUEUED_SAMPLES);
                    Playout::Normal
                }
                _ => {
                    self.stats.discarded_packets += 1;
                    self.conceal_frame()
                }
            };
        }
        let Some((&first, _)) = self.packets.first_key_value() else {
            // Underrun: the network is late. Conceal in place so the late packet still plays.
            let p = self.conceal_frame();
            self.underrun_samples = self.underrun_samples.saturating_add(FRAME_SAMPLES);
            if self.underrun_samples >= self.config.max_delay_ms as usize * SAMPLES_PER_MS {
                // Long enough to be an outage or a hold: re-buffer like a fresh start.
                self.next_seq = None;
                self.first_arrival_us = None;
                self.packets_since_start = 0;
                self.underrun_samples = 0;
            }
            return p;
        };
        // Frames already covered by underrun concealment are skipped, not concealed again.
        let covered = (self.underrun_samples / FRAME_SAMPLES) as i64;
        let gap = first - next;
        if covered > 0 {
            let skip = covered.min(gap);
            self.advance(skip, false);
            self.underrun_samples -= skip as usize * FRAME_SAMPLES;
            // The skip made no audio; at most one level deep, since what remains covered is
            // now either nothing or less than a frame.
            return self.step();
        }
        self.underrun_samples = 0;
        if gap == 1 {
            let fec = match self.packets.get(&first) {
                Some(p) => self
                    .decoder
                    .decode_fec(&p.payload, FRAME_SAMPLES, &mut self.queue),
                None => Ok(0),
            };
            self.advance(1, false);
            if let Ok(n) = fec
                && n > 0
            {
                self.stats.fec_frames += 1;
                return Playout::Fec;
            }
            return self.conceal_frame();
        }
        self.advance(1, false);
        self.conceal_frame()
    }

    fn conceal_frame(&mut self) -> Playout {
        let before = self.queue.len();
        if self.decoder.conceal(FRAME_SAMPLES, &mut self.queue).is_err() || self.queue.len() == before {
            self.queue.resize(before + FRAME_SAMPLES, 0);
        }
        self.stats.concealed_frames += 1;
        Playout::Expand
    }

    fn advance(&mut self, by: i64, decoded: bool) {
        if let Some(next) = self.next_seq.as_mut() {
            *next += by;
        }
        self.played = if by >= 64 { 0 } else { self.played << by };
        if decoded {
            self.played |= 1;
        }
    }

    /// Removes or adds a pitch period from freshly decoded audio when the smoothed level is
    /// off target, the way NetEQ's decision logic does (low limit ¾ of target, high limit at
    /// least a frame above that).
    fn maybe_stretch(&mut self, target: usize) -> Playout {
        let low = target * 3 / 4;
        let high = target.max(low + FRAME_SAMPLES);
        let next_ready = self.next_seq.is_some_and(|n| self.packets.contains_key(&n));
        if self.filtered_level >= high as f64 && next_ready {
            let removed = stretch::accelerate(&mut self.queue);
            if removed > 0 {
                self.filtered_level -= removed as f64;
                self.stats.accelerate_count += 1;
                self.stats.accelerate_samples += removed as u64;
                return Playout::Accelerate;
            }
        } else if self.filtered_level < low as f64 {
            let added = stretch::preemptive_expand(&mut self.queue);
            if added > 0 {
                self.filtered_level += added as f64;
                self.stats.preemptive_expand_count += 1;
                self.stats.preemptive_expand_samples += added as u64;
                return Playout::PreemptiveExpand;
            }
        }
        Playout::Normal
    }
}

fn rank(p: Playout) -> u8 {
    match p {
        Playout::Normal => 0,
        Playout::PreemptiveExpand => 1,
        Playout::Accelerate => 2,
        Playout::Fec => 3,
        Playout::Expand => 4,
        Playout::Silence => 5,
    }
}

fn more_noticeable(a: Playout, b: Playout) -> Playout {
    if rank(b) > rank(a) { b } else { a }
}
