//! Receive-side frame gate: decides, frame by frame, whether a received access unit may go to
//! the decoder, and when to ask the sender for a keyframe (RTCP PLI).
//!
//! H.264 P frames reference the frame before them. After a lost packet, feeding the decoder
//! the following P frames would only produce smeared pictures (or errors) until the next IDR,
//! so the gate drops everything up to a keyframe and asks for one. The transport (str0m's
//! frame-level API) reports for every assembled frame whether it is `contiguous` with the
//! previous one, which is exactly the loss signal needed here; retransmissions (NACK/RTX) have
//! already been tried by the time a frame arrives non-contiguous.
//!
//! Requests are rate-limited to one per `max(RTT, 200 ms)`: a PLI in flight will be answered
//! within about one RTT, and a sender flooded with requests would send keyframe after keyframe
//! into an already congested link. If no keyframe arrives in that time the request is repeated,
//! since the PLI or the keyframe itself may have been lost.

/// Gate settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateConfig {
    /// Least time between two keyframe requests, in µs; the effective gap is the larger of
    /// this and the current RTT.
    pub min_request_interval_us: u64,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            min_request_interval_us: 200_000,
        }
    }
}

/// What the transport knows about one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// The access unit holds an IDR picture ([`crate::codec::is_keyframe`]).
    pub keyframe: bool,
    /// No packet was lost between the previous frame and this one.
    pub contiguous: bool,
}

/// The gate's verdict on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Hand the frame to the decoder.
    Decode,
    /// Discard it: the decoder lacks the frames it depends on.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing received yet; the sender's first frame is normally a keyframe, so no request
    /// until a delta frame shows we joined mid-stream.
    Starting,
    /// The decoder has everything it needs.
    Flowing,
    /// A gap or decode error happened; waiting for an IDR.
    AwaitingKeyframe,
}

/// Decides which received frames reach the decoder and when to request a keyframe.
#[derive(Debug, Clone)]
pub struct FrameGate {
    config: GateConfig,
    state: State,
    rtt_us: u64,
    last_request_us: Option<u64>,
    requests: u64,
    dropped: u64,
    admitted: u64,
}

impl FrameGate {
    /// A gate waiting for the first frame.
    pub fn new(config: GateConfig) -> Self {
        Self {
            config,
            state: State::Starting,
            rtt_us: 0,
            last_request_us: None,
            requests: 0,
            dropped: 0,
            admitted: 0,
        }
    }

    /// Updates the round-trip time (from RTCP), which widens the request interval.
    pub fn set_rtt(&mut self, rtt_us: u64) {
        self.rtt_us = rtt_us;
    }

    fn interval_us(&self) -> u64 {
        self.config.min_request_interval_us.max(self.rtt_us)
    }

    /// Judges one received frame.
    pub fn on_frame(&mut self, info: FrameInfo) -> Admission {
        // An IDR resets every reference, so it is decodable whatever was lost before it.
        let admit = info.keyframe || (self.state == State::Flowing && info.contiguous);
        if admit {
            self.state = State::Flowing;
            self.admitted += 1;
            Admission::Decode
        } else {
            self.state = State::AwaitingKeyframe;
            self.dropped += 1;
            Admission::Drop
        }
    }

    /// Reports that the decoder rejected an admitted frame: its state is now unusable until
    /// the next keyframe.
    pub fn on_decode_error(&mut self) {
        self.state = State::AwaitingKeyframe;
    }

    /// True when a keyframe request should be sent now. Call after every frame and whenever
    /// [`FrameGate::next_timeout`] passes.
    pub fn poll_keyframe_request(&mut self, now_us: u64) -> bool {
        if self.state != State::AwaitingKeyframe {
            return false;
        }
        let due = self
            .last_request_us
            .is_none_or(|last| now_us.saturating_sub(last) >= self.interval_us());
        if due {
            self.last_request_us = Some(now_us);
            self.requests += 1;
        }
        due
    }

    /// When the next repeated request could be due, if the gate is waiting for a keyframe.
    pub fn next_timeout(&self) -> Option<u64> {
        if self.state != State::AwaitingKeyframe {
            return None;
        }
        Some(self.last_request_us.map_or(0, |last| last + self.interval_us()))
    }

    /// True while frames are being dropped for want of a keyframe.
    pub fn awaiting_keyframe(&self) -> bool {
        self.state == State::AwaitingKeyframe
    }

    /// Keyframe requests issued so far.
    pub fn keyframes_requested(&self) -> u64 {
        self.requests
    }

    /// Frames dropped so far.
    pub fn frames_dropped(&self) -> u64 {
        self.dropped
    }

    /// Frames admitted to the decoder so far.
    pub fn frames_admitted(&self) -> u64 {
        self.admitted
    }
}

impl Default for FrameGate {
    fn default() -> Self {
        Self::new(GateConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_US: u64 = 33_333;

    fn key() -> FrameInfo {
        FrameInfo {
            keyframe: true,
            contiguous: true,
        }
    }

    fn delta(contiguous: bool) -> FrameInfo {
        FrameInfo {
            keyframe: false,
            contiguous,
        }
    }

    /// Feeds frames at 30 fps, polling for requests after each; returns admissions and the
    /// times requests went out.
    fn run(gate: &mut FrameGate, frames: &[FrameInfo]) -> (Vec<Admission>, Vec<u64>) {
        let mut admissions = Vec::new();
        let mut requests = Vec::new();
        for (i, &f) in frames.iter().enumerate() {
            let now = i as u64 * FRAME_US;
            admissions.push(gate.on_frame(f));
            if gate.poll_keyframe_request(now) {
                requests.push(now);
            }
        }
        (admissions, requests)
    }

    #[test]
    fn clean_stream_passes_everything_without_requests() {
        let mut gate = FrameGate::default();
        let mut frames = vec![key()];
        frames.extend(std::iter::repeat_n(delta(true), 100));
        let (adm, req) = run(&mut gate, &frames);
        assert!(adm.iter().all(|a| *a == Admission::Decode));
        assert!(req.is_empty());
        assert_eq!(gate.next_timeout(), None);
    }

    #[test]
    fn loss_mid_gop_drops_until_keyframe_with_one_request() {
        let mut gate = FrameGate::default();
        // Frame 10 arrives after a gap; the keyframe answering the request is frame 14
        // (four frames, ~133 ms, inside one request interval).
        let mut frames = vec![key()];
        frames.extend(std::iter::repeat_n(delta(true), 9));
        frames.push(delta(false));
        frames.extend(std::iter::repeat_n(delta(true), 3));
        frames.push(key());
        frames.extend(std::iter::repeat_n(delta(true), 5));
        let (adm, req) = run(&mut gate, &frames);
        for (i, a) in adm.iter().enumerate() {
            let expected = if (10..14).contains(&i) {
                Admission::Drop
            } else {
                Admission::Decode
            };
            assert_eq!(*a, expected, "frame {i}");
        }
        assert_eq!(req, vec![10 * FRAME_US]);
        assert_eq!(gate.keyframes_requested(), 1);
        assert_eq!(gate.frames_dropped(), 4);
    }

    #[test]
    fn requests_repeat_once_per_interval_while_no_keyframe_comes() {
        let mut gate = FrameGate::default();
        let mut frames = vec![key(), delta(false)];
        // One second of undecodable frames.
        frames.extend(std::iter::repeat_n(delta(true), 29));
        let (_, req) = run(&mut gate, &frames);
        // At 33 ms, then at the first frame ≥ 200 ms after each request.
        assert_eq!(req.len(), 5, "{req:?}");
        for pair in req.windows(2) {
            assert!(pair[1] - pair[0] >= 200_000);
            assert!(pair[1] - pair[0] < 200_000 + FRAME_US);
        }
    }

    #[test]
    fn long_rtt_widens_the_interval() {
        let mut gate = FrameGate::default();
        gate.set_rtt(500_000);
        let mut frames = vec![key(), delta(false)];
        frames.extend(std::iter::repeat_n(delta(true), 29));
        let (_, req) = run(&mut gate, &frames);
        assert_eq!(req.len(), 2, "{req:?}");
        assert_eq!(gate.next_timeout(), req.last().map(|t| t + 500_000));
    }

    #[test]
    fn timeouts_drive_requests_without_frames() {
        let mut gate = FrameGate::default();
        gate.on_frame(key());
        gate.on_frame(delta(false));
        assert_eq!(gate.next_timeout(), Some(0));
        assert!(gate.poll_keyframe_request(1_000));
        assert!(!gate.poll_keyframe_request(100_000));
        assert_eq!(gate.next_timeout(), Some(201_000));
        assert!(gate.poll_keyframe_request(201_000));
        assert_eq!(gate.keyframes_requested(), 2);
    }

    #[test]
    fn joining_mid_stream_requests_and_decode_errors_resync() {
        let mut gate = FrameGate::default();
        // First thing seen is a delta frame: we joined late.
        assert_eq!(gate.on_frame(delta(true)), Admission::Drop);
        assert!(gate.poll_keyframe_request(0));
        assert_eq!(gate.on_frame(key()), Admission::Decode);
        assert_eq!(gate.on_frame(delta(true)), Admission::Decode);
        // The decoder choked on an admitted frame.
        gate.on_decode_error();
        assert!(gate.awaiting_keyframe());
        assert_eq!(gate.on_frame(delta(true)), Admission::Drop);
        assert!(gate.poll_keyframe_request(300_000));
        assert_eq!(gate.on_frame(key()), Admission::Decode);
        assert!(!gate.poll_keyframe_request(900_000));
        assert_eq!(gate.frames_admitted(), 3);
    }

    #[test]
    fn keyframe_after_a_gap_is_decodable() {
        let mut gate = FrameGate::default();
        gate.on_frame(key());
        let k = FrameInfo {
            keyframe: true,
            contiguous: false,
        };
        assert_eq!(gate.on_frame(k), Admission::Decode);
        assert!(!gate.poll_keyframe_request(0));
    }
}
