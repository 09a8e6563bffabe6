//! One participant's connection to the relay: its `Rtc`, the tracks it sends, and
//! the receive slots (m-lines) it offered, each fed by at most one other
//! participant's track.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::format::PayloadParams;
use str0m::media::{Direction, KeyframeRequestKind, Mid};
use str0m::net::Transmit;
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Event, Output, Rtc};

use super::{CallId, ParticipantId};
use crate::MediaKind;
use crate::limits::TokenBucket;

/// Handle of a leg inside [`super::SfuCore`]; never reused.
pub(crate) type LegId = u64;

/// Addresses remembered per leg for routing non-STUN traffic. A client has one
/// path to the relay; a few more cover NAT rebinding during ICE checks.
const MAX_ADDRS_PER_LEG: usize = 4;

/// Keyframe requests forwarded to one sender at most this often, however many
/// receivers ask: one fresh keyframe serves them all.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// A track the participant sends to the relay.
#[derive(Debug)]
pub(crate) struct Track {
    pub mid: Mid,
    pub kind: MediaKind,
    last_keyframe_request: Option<Instant>,
}

/// Where a receive slot's packets come from, and how their sequence numbers are
/// rebased so that the slot's outgoing stream stays continuous when its source
/// changes (a participant leaves, another takes the slot).
#[derive(Debug)]
pub(crate) struct Feed {
    pub from: LegId,
    pub from_mid: Mid,
    pub from_participant: ParticipantId,
    /// First incoming extended sequence number, mapped to `base_out`.
    base_in: Option<u64>,
    base_out: u64,
}

/// An m-line on which the relay sends to this participant.
#[derive(Debug)]
pub(crate) struct Slot {
    pub mid: Mid,
    pub kind: MediaKind,
    pub feed: Option<Feed>,
    /// Next free outgoing sequence number (extended).
    next_out: u64,
}

impl Slot {
    /// The outgoing sequence number for an incoming one, or `None` for packets older
    /// than the feed's first (they would run the stream backwards).
    fn map_seq(&mut self, seq_in: u64) -> Option<u64> {
        let feed = self.feed.as_mut()?;
        let base_in = *feed.base_in.get_or_insert(seq_in);
        let out = feed.base_out.checked_add(seq_in.checked_sub(base_in)?)?;
        self.next_out = self.next_out.max(out + 1);
        Some(out)
    }

    pub(crate) fn attach(&mut self, from: LegId, from_mid: Mid, from_participant: ParticipantId) {
        self.feed = Some(Feed {
            from,
            from_mid,
            from_participant,
            base_in: None,
            base_out: self.next_out,
        });
    }
}

/// Counters a leg keeps for [`super::ParticipantStats`].
#[derive(Debug, Default, Clone)]
pub(crate) struct LegCounters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rate_limited: u64,
    pub video_rate_limited: u64,
    pub keyframe_requests_forwarded: u64,
    pub rtt: Option<Duration>,
    pub loss_in: Option<f32>,
    pub loss_out: Option<f32>,
}

pub(crate) struct Leg {
    pub call: CallId,
    pub participant: ParticipantId,
    pub source_id: u32,
    pub rtc: Rtc,
    pub ufrag: String,
    pub addrs: VecDeque<SocketAddr>,
    pub joined_at: Instant,
    pub connected: bool,
    /// Since when ICE has reported the client gone; it may come back within a grace period.
    pub disconnected_at: Option<Instant>,
    pub timeout: Instant,
    pub tracks: Vec<Track>,
    pub slots: Vec<Slot>,
    pub budget: TokenBucket,
    pub video_budget: TokenBucket,
    /// Payload types (main and RTX) that carry video on this leg.
    pub video_pts: Vec<u8>,
    pub counters: LegCounters,
    sync: SyncClock,
}

/// Maps a sender's media times onto the relay's clock for the wall-clock times of
/// forwarded packets, which str0m turns into the sender reports of each receiving leg.
///
/// Arrival times alone would put each stream's network jitter into its reports. The
/// sender's own reports give every packet a capture time on the sender's clock, shared
/// by its audio and video; capture time plus the smallest delay seen so far is then an
/// arrival time without jitter, on the relay's clock, and never in the future.
#[derive(Debug, Default)]
struct SyncClock {
    /// An arrival and the capture time (seconds, sender's clock) it is measured from.
    anchor: Option<(Instant, f64)>,
    /// Smallest delay seen relative to the anchor, in seconds.
    floor: Option<f64>,
}

impl SyncClock {
    fn wallclock(&mut self, packet: &RtpPacket, clock_rate: u32) -> Instant {
        let arrival = packet.timestamp;
        let Some(sr) = packet.last_sender_info else {
            return arrival;
        };
        let Ok(sr_ntp) = sr.ntp_time.duration_since(std::time::UNIX_EPOCH) else {
            return arrival;
        };
        if clock_rate == 0 {
            return arrival;
        }
        // Packets after the report are ahead of its RTP time, packets before behind.
        let ticks = packet.header.timestamp.wrapping_sub(sr.rtp_time.numer() as u32) as i32;
        let capture = sr_ntp.as_secs_f64() + f64::from(ticks) / f64::from(clock_rate);
        let (anchor_arrival, anchor_capture) = *self.anchor.get_or_insert((arrival, capture));
        let since = if arrival >= anchor_arrival {
            arrival.duration_since(anchor_arrival).as_secs_f64()
        } else {
            -anchor_arrival.duration_since(arrival).as_secs_f64()
        };
        let delay = since - (capture - anchor_capture);
        let floor = self.floor.map_or(delay, |f| f.min(delay));
        self.floor = Some(floor);
        let excess = delay - floor;
        // A sender whose clock jumps is not worth following; arrival time will do.
        if !excess.is_finite() || excess > MAX_SYNC_EXCESS {
            return arrival;
        }
        Duration::try_from_secs_f64(excess)
            .ok()
            .and_then(|d| arrival.checked_sub(d))
            .unwrap_or(arrival)
    }
}

/// Delay beyond the best seen past which a packet's arrival is used as is.
const MAX_SYNC_EXCESS: f64 = 2.0;

impl Leg {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        call: CallId,
        participant: ParticipantId,
        source_id: u32,
        rtc: Rtc,
        ufrag: String,
        budget: TokenBucket,
        video_budget: TokenBucket,
        now: Instant,
    ) -> Self {
        let video_pts = rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| p.spec().codec.is_video())
            .flat_map(|p| std::iter::once(p.pt()).chain(p.resend()))
            .map(|pt| *pt)
            .collect();
        Leg {
            call,
            participant,
            source_id,
            rtc,
            ufrag,
            addrs: VecDeque::new(),
            joined_at: now,
            connected: false,
            disconnected_at: None,
            timeout: now,
            tracks: Vec::new(),
            slots: Vec::new(),
            budget,
            video_budget,
            video_pts,
            counters: LegCounters::default(),
            sync: SyncClock::default(),
        }
    }

    /// Records an m-line the offer declared, as a sending track, a receive slot, or both.
    pub(crate) fn add_media(&mut self, mid: Mid, kind: MediaKind, local_direction: Direction) {
        if local_direction.is_receiving() && !self.tracks.iter().any(|t| t.mid == mid) {
            self.tracks.push(Track {
                mid,
                kind,
                last_keyframe_request: None,
            });
        }
        if local_direction.is_sending() && !self.slots.iter().any(|s| s.mid == mid) {
            if kind == MediaKind::Video {
                crate::tune_video_send_stream(&mut self.rtc, mid);
            }
            let next_out = crate::first_seq_no();
            let slot = Slot {
                mid,
                kind,
                feed: None,
                next_out,
            };
            // A sendrecv line is the client's first choice for receiving: 1:1 calls use
            // only that one.
            if local_direction == Direction::SendRecv {
                self.slots.insert(0, slot);
            } else {
                self.slots.push(slot);
            }
        }
    }

    /// Which participant feeds each receive slot of one kind, numbered within the kind
    /// the way the client numbers them.
    pub(crate) fn feeds(&self, kind: MediaKind) -> Vec<(usize, ParticipantId)> {
        self.slots
            .iter()
            .filter(|s| s.kind == kind)
            .enumerate()
            .filter_map(|(i, s)| s.feed.as_ref().map(|f| (i, f.from_participant)))
            .collect()
    }

    /// Remembers an address that passed ICE, evicting the oldest past the cap.
    /// Returns the evicted address.
    pub(crate) fn remember_addr(&mut self, addr: SocketAddr) -> Option<SocketAddr> {
        if self.addrs.contains(&addr) {
            return None;
        }
        self.addrs.push_back(addr);
        if self.addrs.len() > MAX_ADDRS_PER_LEG {
            self.addrs.pop_front()
        } else {
            None
        }
    }

    /// Whether a datagram from this participant is video RTP, judged by the payload
    /// type in its (unencrypted) RTP header. A sender that mislabels its packets only
    /// moves them into its own other budget; str0m still authenticates them.
    pub(crate) fn is_video_rtp(&self, datagram: &[u8]) -> bool {
        let (Some(first), Some(second)) = (datagram.first(), datagram.get(1)) else {
            return false;
        };
        // RTP version 2, and not RTCP (packet types 192..=223 in the same byte).
        (128..=191).contains(first)
            && !(192..=223).contains(second)
            && datagram.len() >= 12
            && self.video_pts.contains(&(second & 0x7f))
    }

    /// The wall-clock time to forward this participant's packet with.
    pub(crate) fn media_wallclock(&mut self, packet: &RtpPacket, clock_rate: u32) -> Instant {
        self.sync.wallclock(packet, clock_rate)
    }

    /// Writes a packet from another leg into the slot it feeds. Returns whether it was
    /// queued (the caller must then drain this leg).
    pub(crate) fn write_forwarded(
        &mut self,
        from: LegId,
        from_mid: Mid,
        params: &PayloadParams,
        source_id: u32,
        packet: &RtpPacket,
        wallclock: Instant,
    ) -> bool {
        if !self.rtc.is_connected() {
            return false;
        }
        let Some(slot) = self.slots.iter_mut().find(|s| {
            s.feed
                .as_ref()
                .is_some_and(|f| f.from == from && f.from_mid == from_mid)
        }) else {
            return false;
        };
        let (slot_mid, kind) = (slot.mid, slot.kind);
        let Some(seq_out) = slot.map_seq(*packet.seq_no) else {
            return false;
        };
        // Payload type numbers are per leg: find this leg's number for the same codec.
        let Some(pt) = self.rtc.codec_config().match_params(*params).map(|p| p.pt()) else {
            return false;
        };
        if !self
            .rtc
            .media(slot_mid)
            .is_some_and(|m| m.remote_pts().contains(&pt))
        {
            return false;
        }
        // Only the extensions that describe the media travel on; transport ones
        // (mid, twcc, abs-send-time) belong to each leg and str0m writes its own.
        let ext = ExtensionValues {
            audio_level: packet.header.ext_vals.audio_level,
            voice_activity: packet.header.ext_vals.voice_activity,
            video_orientation: packet.header.ext_vals.video_orientation,
            ..Default::default()
        };
        let mut direct = self.rtc.direct_api();
        let Some(stream) = direct.stream_tx_by_mid(slot_mid, None) else {
            return false;
        };
        let write = RtpWrite::new(
            pt,
            SeqNo::from(seq_out),
            packet.header.timestamp,
            wallclock,
            packet.payload.clone(),
        )
        .marker(packet.header.marker)
        .ext_vals(ext)
        // Audio is never retransmitted (a late audio packet is a lost one); video is.
        .nackable(kind == MediaKind::Video)
        .csrc(&[source_id]);
        stream.write_rtp(write);
        self.counters.packets_out += 1;
        self.counters.bytes_out += packet.payload.len() as u64;
        true
    }

    /// Asks this participant for a keyframe on one of its tracks, throttled.
    /// Returns whether a request was queued (the caller must then drain).
    pub(crate) fn request_keyframe(&mut self, mid: Mid, kind: KeyframeRequestKind, now: Instant) -> bool {
        let Some(track) = self.tracks.iter_mut().find(|t| t.mid == mid) else {
            return false;
        };
        if track
            .last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return false;
        }
        let mut direct = self.rtc.direct_api();
        let Some(stream) = direct.stream_rx_by_mid(mid, None) else {
            return false;
        };
        stream.request_keyframe(kind);
        track.last_keyframe_request = Some(now);
        true
    }

    /// Drains str0m's output until it asks for the next timeout, as str0m requires
    /// after every mutation.
    pub(crate) fn drain(
        &mut self,
        id: LegId,
        transmits: &mut VecDeque<Transmit>,
        work: &mut VecDeque<(LegId, Event)>,
    ) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => transmits.push_back(t),
                Ok(Output::Event(e)) => work.push_back((id, e)),
                Err(e) => {
                    tracing::debug!(call = self.call, participant = self.participant, error = %e, "leg failed");
                    self.rtc.disconnect();
                    return;
                }
            }
        }
    }
}
