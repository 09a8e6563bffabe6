//! H.264 over RTP (RFC 6184, packetization mode 1) for the client peer.
//!
//! Both sides run str0m in RTP mode (see the crate docs), so the peer cuts access
//! units into RTP payloads itself and puts received packets back together into
//! Annex-B access units. The relay never looks inside: it forwards packets.
//!
//! Sending uses single NAL unit packets and FU-A fragments; receiving also takes
//! STAP-A, which other senders use for SPS/PPS. Everything received is untrusted:
//! malformed payloads cost the frame they belong to, nothing more.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest RTP payload written. Leaves room under str0m's ~1150-byte datagram target
/// for the RTP header, its extensions, the relay's CSRC, the RTX prefix and the SRTP tag.
pub(crate) const MAX_PAYLOAD: usize = 1000;

const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;
const NAL_IDR: u8 = 5;
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// How long a receive slot waits for a missing packet (a NACK round trip, maybe two)
/// before it gives up on the frame and moves on.
pub(crate) const DEFAULT_HOLD: Duration = Duration::from_millis(300);
/// Longest hold, whatever the round trip: past it a keyframe is the quicker repair.
const MAX_HOLD: Duration = Duration::from_millis(1_500);

/// The hold for a path with round trip `rtt`: three of them, so a retransmission that is
/// itself lost gets a second try, and never less than [`DEFAULT_HOLD`].
pub(crate) fn hold_for_rtt(rtt: Duration) -> Duration {
    rtt.saturating_mul(3).clamp(DEFAULT_HOLD, MAX_HOLD)
}
/// Packets held per slot while waiting; past this the oldest gap is given up at once,
/// so a flood cannot grow memory.
const MAX_HELD_PACKETS: usize = 2048;
/// Largest access unit reassembled; anything bigger is dropped as hostile.
const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// The NAL units of an Annex-B byte stream, without start codes. Bytes before the
/// first start code (or all of them, if there is none) count as one NAL unit, so a
/// caller that passes a bare NAL unit still gets it sent.
pub(crate) fn nal_units(annex_b: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= annex_b.len() {
        if annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::new();
    let first_begin = starts.first().map_or(annex_b.len(), |s| s.0);
    if first_begin > 0 && annex_b[..first_begin].iter().any(|b| *b != 0) {
        units.push(&annex_b[..first_begin]);
    }
    for (n, (_, begin)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(annex_b.len(), |s| s.0);
        let mut unit = &annex_b[*begin..end];
        // Zero bytes before the next start code are its 4-byte form or trailing
        // padding, never part of the NAL unit.
        while let [rest @ .., 0] = unit {
            unit = rest;
        }
        if !unit.is_empty() {
            units.push(unit);
        }
    }
    units
}

/// RTP payloads for one access unit, in order; the last one carries the marker bit.
pub(crate) fn packetize(annex_b: &[u8], max_payload: usize) -> Vec<Arc<[u8]>> {
    let max_payload = max_payload.max(3);
    let mut out: Vec<Arc<[u8]>> = Vec::new();
    for nal in nal_units(annex_b) {
        if nal.len() <= max_payload {
            out.push(Arc::from(nal));
            continue;
        }
        let indicator = (nal[0] & 0xe0) | NAL_FU_A;
        let nal_type = nal[0] & 0x1f;
        let body = &nal[1..];
        let chunks = body.chunks(max_payload - 2);
        let last = chunks.len().saturating_sub(1);
        for (n, chunk) in chunks.enumerate() {
            let mut header = nal_type;
            if n == 0 {
                header |= 0x80;
            }
            if n == last {
                header |= 0x40;
            }
            let mut p = Vec::with_capacity(chunk.len() + 2);
            p.push(indicator);
            p.push(header);
            p.extend_from_slice(chunk);
            out.push(Arc::from(p));
        }
    }
    out
}

/// Whether an access unit holds an IDR slice.
pub(crate) fn is_keyframe(annex_b: &[u8]) -> bool {
    nal_units(annex_b).iter().any(|n| n[0] & 0x1f == NAL_IDR)
}

/// Appends the NAL units of one RTP payload to `out` in Annex-B form. `in_fu` tracks
/// an FU-A fragmented unit across packets. Returns `None` for a payload that does not
/// fit the frame so far.
fn depacketize(payload: &[u8], in_fu: &mut bool, out: &mut Vec<u8>) -> Option<()> {
    let first = *payload.first()?;
    match first & 0x1f {
        1..=23 => {
            if *in_fu {
                return None;
            }
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(payload);
        }
        NAL_STAP_A => {
            if *in_fu {
                return None;
            }
            let mut rest = &payload[1..];
            while !rest.is_empty() {
                let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
                let unit = rest.get(2..2 + len)?;
                if unit.is_empty() {
                    return None;
                }
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(unit);
                rest = &rest[2 + len..];
            }
        }
        NAL_FU_A => {
            let header = *payload.get(1)?;
            let (start, end) = (header & 0x80 != 0, header & 0x40 != 0);
            if start == *in_fu {
                // A start inside a unit, or a continuation without one.
                return None;
            }
            if start {
                out.extend_from_slice(&START_CODE);
                out.push((first & 0xe0) | (header & 0x1f));
            }
            out.extend_from_slice(&payload[2..]);
            *in_fu = !end;
        }
        // STAP-B, MTAP and FU-B belong to interleaved mode, which is not negotiated.
        _ => return None,
    }
    Some(())
}

/// One received RTP packet of a video stream.
#[derive(Debug, Clone)]
pub(crate) struct VideoPacket {
    pub seq_no: u64,
    pub rtp_timestamp: u32,
    pub marker: bool,
    pub payload: Arc<[u8]>,
    pub arrival: Instant,
    pub csrc: Option<u32>,
}

/// A reassembled access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub rtp_timestamp: u32,
    pub data: Vec<u8>,
    pub keyframe: bool,
    pub contiguous: bool,
    /// Arrival of the packet that completed it.
    pub arrival: Instant,
    pub csrc: Option<u32>,
}

/// Puts one stream's packets back into access units, in order. A missing packet
/// holds later frames back until the oldest packet waiting behind it has waited
/// [`DEFAULT_HOLD`] since it arrived (so NACK/RTX can fill the gap); then the broken
/// frame is dropped and the next one is marked not contiguous, the decoder's cue to
/// wait for a keyframe. Counting from arrival, not from when a gap reaches the head,
/// keeps gaps in a row from adding their waits up: no packet waits longer than the
/// hold, however lossy the path.
#[derive(Debug)]
pub(crate) struct FrameAssembler {
    held: BTreeMap<u64, VideoPacket>,
    /// The sequence number the next frame starts at.
    next_seq: Option<u64>,
    /// Something was lost since the last frame handed out.
    broken: bool,
    hold: Duration,
    /// Frames given up on so far.
    pub lost: u64,
    /// The source of the last frame handed out: the relay keeps a slot's sequence
    /// numbers running when another sender takes it over, but that sender's frames do
    /// not follow on from the previous one's.
    last_csrc: Option<u32>,
}

impl FrameAssembler {
    /// Waits `hold` for a retransmission before giving a gap up; see [`FrameAssembler::set_hold`].
    pub(crate) fn new(hold: Duration) -> Self {
        FrameAssembler {
            held: BTreeMap::new(),
            next_seq: None,
            broken: false,
            hold,
            lost: 0,
            last_csrc: None,
        }
    }

    /// Changes how long a gap is waited for. The transport sets it from the round trip: a
    /// retransmission cannot come sooner than one, and behind a full router queue the round
    /// trip is most of a second.
    pub(crate) fn set_hold(&mut self, hold: Duration) {
        self.hold = hold;
    }

    /// Takes one packet; duplicates and packets of frames already handed out are ignored.
    pub(crate) fn push(&mut self, packet: VideoPacket) {
        if self.next_seq.is_some_and(|n| packet.seq_no < n) {
            return;
        }
        self.held.entry(packet.seq_no).or_insert(packet);
    }

    /// When [`FrameAssembler::poll`] should run again even without new packets.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        // After a poll, whatever is held is blocked behind a gap.
        self.held.first_key_value().map(|(_, p)| p.arrival + self.hold)
    }

    /// Complete frames, oldest first.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some((&first, _)) = self.held.first_key_value() {
            let next = *self.next_seq.get_or_insert(first);
            if first > next {
                // The head of the next frame is missing.
                if !self.give_up(now) {
                    break;
                }
                self.next_seq = Some(first);
                self.broken = true;
                self.lost += 1;
                continue;
            }
            match self.take_frame(first) {
                Some(Ok(frame)) => frames.push(frame),
                // Removed but unusable: the next frame cannot follow on from it.
                Some(Err(())) => {
                    self.broken = true;
                    self.lost += 1;
                }
                None => {
                    // The frame's tail is still missing.
                    if !self.give_up(now) {
                        break;
                    }
                    self.drop_head_frame();
                    self.broken = true;
                    self.lost += 1;
                }
            }
        }
        frames
    }

    /// Whether a gap at the head has waited long enough: the oldest packet held behind
    /// it arrived a hold ago (or memory is tight).
    fn give_up(&mut self, now: Instant) -> bool {
        if self.held.len() > MAX_HELD_PACKETS {
            tracing::debug!(held = self.held.len(), "video reassembly over its packet limit");
            return true;
        }
        let expired = self
            .held
            .first_key_value()
            .is_some_and(|(_, p)| now.saturating_duration_since(p.arrival) >= self.hold);
        if expired {
            tracing::debug!(
                next = ?self.next_seq,
                first_held = ?self.held.first_key_value().map(|(s, _)| *s),
                held = self.held.len(),
                "video gap given up"
            );
        }
        expired
    }

    /// The frame starting at `first` if all its packets are in: consecutive sequence
    /// numbers with one timestamp, up to the marker bit (or the next timestamp). Its
    /// packets are removed if it is complete, usable or not.
    fn take_frame(&mut self, first: u64) -> Option<Result<Frame, ()>> {
        let timestamp = self.held.get(&first)?.rtp_timestamp;
        let mut last = first;
        loop {
            let p = self.held.get(&last)?;
            if p.marker {
                break;
            }
            match self.held.get(&(last + 1)) {
                Some(n) if n.rtp_timestamp != timestamp => break,
                Some(_) => last += 1,
                None => return None,
            }
        }
        let mut data = Vec::new();
        let mut in_fu = false;
        let mut ok = true;
        let mut arrival = None;
        let mut csrc = None;
        for seq in first..=last {
            let Some(p) = self.held.remove(&seq) else {
                ok = false;
                continue;
            };
            arrival = Some(arrival.map_or(p.arrival, |a: Instant| a.max(p.arrival)));
            csrc = csrc.or(p.csrc);
            if ok {
                ok =
                    depacketize(&p.payload, &mut in_fu, &mut data).is_some() && data.len() <= MAX_FRAME_BYTES;
            }
        }
        self.next_seq = Some(last + 1);
        let (true, false, Some(arrival)) = (ok, in_fu, arrival) else {
            return Some(Err(()));
        };
        if data.is_empty() {
            return Some(Err(()));
        }
        let new_source = self.last_csrc.is_some_and(|c| Some(c) != csrc);
        self.last_csrc = csrc.or(self.last_csrc);
        let frame = Frame {
            rtp_timestamp: timestamp,
            keyframe: is_keyframe(&data),
            data,
            contiguous: !std::mem::take(&mut self.broken) && !new_source,
            arrival,
            csrc,
        };
        Some(Ok(frame))
    }

    /// Drops the packets of the incomplete frame at the head: everything up to the
    /// first packet of a later timestamp.
    fn drop_head_frame(&mut self) {
        let Some((_, head)) = self.held.first_key_value() else {
            return;
        };
        let timestamp = head.rtp_timestamp;
        let stale: Vec<u64> = self
            .held
            .iter()
            .take_while(|(_, p)| p.rtp_timestamp == timestamp)
            .map(|(s, _)| *s)
            .collect();
        for s in stale {
            self.held.remove(&s);
        }
        self.next_seq = self.held.first_key_value().map(|(s, _)| *s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access_unit(nals: &[(u8, usize)]) -> Vec<u8> {
        let mut au = Vec::new();
        for (i, (header, len)) in nals.iter().enumerate() {
            au.extend_from_slice(&START_CODE);
            au.push(*header);
            // No 0x000001 inside: bytes count up from 1 and skip zero.
            au.extend((0..*len).map(|n| ((n + i) % 250) as u8 + 1));
        }
        au
    }

    fn packets(au: &[u8], first_seq: u64, ts: u32, t: Instant) -> Vec<VideoPacket> {
        let payloads = packetize(au, 200);
        let last = payloads.len() - 1;
        payloads
            .into_iter()
            .enumerate()
            .map(|(n, payload)| VideoPacket {
                seq_no: first_seq + n as u64,
                rtp_timestamp: ts,
                marker: n == last,
                payload,
                arrival: t,
                csrc: Some(7),
            })
            .collect()
    }

    #[test]
    fn splits_annex_b_with_both_start_code_forms() {
        let bytes = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 0,
        ];
        let units = nal_units(&bytes);
        assert_eq!(units, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5]]);
        assert_eq!(nal_units(&[0x41, 9, 9]), vec![&[0x41, 9, 9][..]]);
        assert!(nal_units(&[]).is_empty());
    }

    #[test]
    fn round_trips_fragmented_access_units() {
        let t = Instant::now();
        let key = access_unit(&[(0x67, 12), (0x68, 4), (0x65, 5000)]);
        let delta = access_unit(&[(0x41, 1500)]);
        let mut asm = FrameAssembler::new(DEFAULT_HOLD);
        let mut all = packets(&key, 100, 9000, t);
        let next = 100 + all.len() as u64;
        assert!(all.len() > 20, "the IDR slice was fragmented");
        all.extend(packets(&delta, next, 12000, t));
        // Reordered delivery.
        all.reverse();
        for p in all {
            asm.push(p);
        }
        let frames = asm.poll(t);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].data, key);
        assert!(frames[0].keyframe && frames[0].contiguous);
        assert_eq!(frames[1].data, delta);
        assert!(!frames[1].keyframe && frames[1].contiguous);
        assert_eq!(frames[1].rtp_timestamp, 12000);
        assert_eq!(frames[1].csrc, Some(7));
    }

    #[test]
    fn a_late_packet_fills_the_gap_within_the_hold() {
        let t = Instant::now();
        let au = access_unit(&[(0x41, 900)]);
        let mut ps = packets(&au, 1, 0, t);
        let missing = ps.remove(2);
        let mut asm = FrameAssembler::new(DEFAULT_HOLD);
        for p in ps {
            asm.push(p);
        }
        assert!(asm.poll(t).is_empty());
        assert!(asm.deadline().is_some());
        asm.push(missing);
        let frames = asm.poll(t + Duration::from_millis(50));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].data, au);
        assert!(frames[0].contiguous);
    }

    #[test]
    fn a_lost_packet_costs_its_frame_and_breaks_contiguity() {
        let t = Instant::now();
        let mut asm = FrameAssembler::new(DEFAULT_HOLD);
        let a = access_unit(&[(0x65, 700)]);
        let b = access_unit(&[(0x41, 700)]);
        let c = access_unit(&[(0x41, 300)]);
        let pa = packets(&a, 10, 0, t);
        let mut pb = packets(&b, 10 + pa.len() as u64, 3000, t);
        let pc = packets(&c, 10 + (pa.len() + pb.len()) as u64, 6000, t);
        pb.remove(1);
        for p in pa.into_iter().chain(pb).chain(pc) {
            asm.push(p);
        }
        let first = asm.poll(t);
        assert_eq!(first.len(), 1, "b holds c back");
        let later = asm.poll(t + DEFAULT_HOLD);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].data, c);
        assert!(!later[0].contiguous);
    }

    #[test]
    fn gaps_in_a_row_do_not_add_up_their_waits() {
        let t = Instant::now();
        let mut asm = FrameAssembler::new(DEFAULT_HOLD);
        let units: Vec<Vec<u8>> = (0..4).map(|_| access_unit(&[(0x41, 700)])).collect();
        let mut seq = 0u64;
        for (i, unit) in units.iter().enumerate() {
            let mut ps = packets(unit, seq, 3000 * i as u32, t);
            seq += ps.len() as u64;
            // The first three frames each lose a packet that never comes.
            if i < 3 {
                ps.remove(1);
            }
            for p in ps {
                asm.push(p);
            }
        }
        assert!(asm.poll(t).is_empty());
        // Everything arrived at `t`, so one hold later every gap is given up at once
        // and the whole fourth frame comes out, not three holds later.
        let frames = asm.poll(t + DEFAULT_HOLD);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].data, units[3]);
        assert!(!frames[0].contiguous);
        assert_eq!(asm.lost, 3);
    }

    #[test]
    fn a_lost_head_is_given_up_too() {
        let t = Instant::now();
        let mut asm = FrameAssembler::new(DEFAULT_HOLD);
        let a = access_unit(&[(0x41, 700)]);
        let b = access_unit(&[(0x41, 700)]);
        let pa = packets(&a, 0, 0, t);
        let pb = packets(&b, pa.len() as u64, 3000, t);
        let first_b = pb[0].clone();
        asm.push(pa[0].clone());
        assert!(asm.poll(t).is_empty());
        // The first frame's tail never comes; the next frame is whole.
        for p in pb {
            asm.push(p);
        }
        let frames = asm.poll(t + DEFAULT_HOLD);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].rtp_timestamp, first_b.rtp_timestamp);
        assert!(!frames[0].contiguous);
    }

    #[test]
    fn hostile_payloads_cost_only_their_frame() {
        let t = Instant::now();
        let mut asm = FrameAssembler::new(DEFAULT_HOLD);
        let bad: [&[u8]; 6] = [
            &[],
            &[NAL_FU_A],
            &[NAL_FU_A, 0x05, 1, 2],
            &[NAL_STAP_A, 0xff, 0xff, 1],
            &[NAL_STAP_A, 0, 0],
            &[30, 1, 2, 3],
        ];
        for (n, payload) in bad.iter().enumerate() {
            asm.push(VideoPacket {
                seq_no: n as u64,
                rtp_timestamp: n as u32,
                marker: true,
                payload: Arc::from(*payload),
                arrival: t,
                csrc: None,
            });
        }
        let good = access_unit(&[(0x41, 50)]);
        for p in packets(&good, bad.len() as u64, 99, t) {
            asm.push(p);
        }
        let frames = asm.poll(t);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].data, good);
        assert!(!frames[0].contiguous);
    }

    #[test]
    fn a_new_source_on_the_slot_is_not_contiguous() {
        let t = Instant::now();
        let mut asm = FrameAssembler::new(DEFAULT_HOLD);
        let a = access_unit(&[(0x41, 300)]);
        let pa = packets(&a, 0, 0, t);
        let mut pb = packets(&a, pa.len() as u64, 3000, t);
        for p in &mut pb {
            p.csrc = Some(8);
        }
        for p in pa.into_iter().chain(pb) {
            asm.push(p);
        }
        let frames = asm.poll(t);
        assert_eq!(frames.len(), 2);
        assert!(frames[0].contiguous);
        assert!(!frames[1].contiguous);
        assert_eq!(frames[1].csrc, Some(8));
    }

    #[test]
    fn stap_a_is_unpacked() {
        let mut out = Vec::new();
        let mut in_fu = false;
        depacketize(&[NAL_STAP_A, 0, 2, 0x67, 1, 0, 1, 0x68], &mut in_fu, &mut out).expect("valid");
        assert_eq!(out, [0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68]);
    }
}
