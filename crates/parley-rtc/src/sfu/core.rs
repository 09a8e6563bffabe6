//! The relay's routing state, without I/O: calls, legs, and the packet path.
//!
//! Inputs are datagrams and the passing of time, each stamped by the caller; outputs
//! are datagrams to send and [`SfuEvent`]s. Every str0m mutation is followed by a full
//! drain of that leg (str0m's contract), and events that touch other legs (media to
//! forward, keyframe requests) go through one work queue instead of recursion.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::net::{DatagramRecv, Protocol, Receive, Transmit};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input};

use super::leg::{Leg, LegId};
use super::stun;
use super::{
    CallId, Joined, LeaveReason, ParticipantId, ParticipantStats, SfuConfig, SfuError, SfuEvent, SfuStats,
};
use crate::MediaKind;
use crate::limits::TokenBucket;

/// A datagram for the driver to send.
#[derive(Debug)]
pub struct Outgoing {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
}

#[derive(Debug, Default)]
struct Call {
    /// Legs in join order, which is also the order slots are filled in.
    legs: Vec<LegId>,
    next_source_id: u32,
}

/// The relay's state machine. [`super::Sfu::start`] drives one on a UDP socket; tests
/// may drive it directly.
pub struct SfuCore {
    config: SfuConfig,
    /// Host candidates advertised in every answer (the public addresses).
    candidates: Vec<SocketAddr>,
    calls: HashMap<CallId, Call>,
    legs: HashMap<LegId, Leg>,
    by_ufrag: HashMap<String, LegId>,
    by_addr: HashMap<SocketAddr, LegId>,
    next_leg: LegId,
    transmits: VecDeque<Transmit>,
    work: VecDeque<(LegId, Event)>,
    events: VecDeque<SfuEvent>,
    stats: SfuStats,
    /// Video tracks (leg, m-line) asked for a keyframe on the next pass.
    keyframes_wanted: Vec<(LegId, str0m::media::Mid)>,
}

impl SfuCore {
    /// A relay that advertises `candidates` (its public `ip:port`s) to clients.
    pub fn new(config: SfuConfig, candidates: Vec<SocketAddr>) -> Self {
        SfuCore {
            config,
            candidates,
            calls: HashMap::new(),
            legs: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            next_leg: 1,
            transmits: VecDeque::new(),
            work: VecDeque::new(),
            events: VecDeque::new(),
            stats: SfuStats::default(),
            keyframes_wanted: Vec::new(),
        }
    }

    /// Admits a participant to a call with its SDP offer and returns the answer. The
    /// answer's ICE credentials are the leg's only key: nothing else reaches it.
    /// A participant that joins again replaces its previous leg.
    pub fn join(
        &mut self,
        now: Instant,
        call: CallId,
        participant: ParticipantId,
        offer_sdp: &str,
    ) -> Result<Joined, SfuError> {
        let offer = parse_offer(
            offer_sdp,
            self.config.max_offer_bytes,
            self.config.max_media_lines,
        )?;
        let rejoining = self.find_leg(call, participant);
        match self.calls.get(&call) {
            None if self.calls.len() >= self.config.max_calls => {
                return Err(SfuError::TooManyCalls {
                    limit: self.config.max_calls,
                });
            }
            Some(c) if rejoining.is_none() && c.legs.len() >= self.config.max_participants => {
                return Err(SfuError::CallFull {
                    limit: self.config.max_participants,
                });
            }
            _ => {}
        }

        let creds = IceCreds::new();
        let mut rtc = crate::rtc_config()
            .set_ice_lite(true)
            .set_local_ice_credentials(creds.clone())
            .build(now);
        for addr in &self.candidates {
            let candidate = Candidate::host(*addr, "udp").map_err(|e| SfuError::Internal(e.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::RejectedSdp(e.to_string()))?;

        if let Some(old) = rejoining {
            self.remove_leg(old, LeaveReason::Replaced);
        }
        let call_state = self.calls.entry(call).or_default();
        call_state.next_source_id += 1;
        let source_id = call_state.next_source_id;
        let id = self.next_leg;
        self.next_leg += 1;
        call_state.legs.push(id);

        let budget = TokenBucket::new(self.config.max_packets_per_sec, self.config.packet_burst, now);
        let video_budget = TokenBucket::new(
            self.config.max_video_packets_per_sec,
            self.config.video_packet_burst,
            now,
        );
        let mut leg = Leg::new(
            call,
            participant,
            source_id,
            rtc,
            creds.ufrag.clone(),
            budget,
            video_budget,
            now,
        );
        leg.drain(id, &mut self.transmits, &mut self.work);
        self.by_ufrag.insert(creds.ufrag, id);
        self.legs.insert(id, leg);
        self.process_work(now);
        self.assign_slots(call);
        self.process_work(now);

        Ok(Joined {
            answer_sdp: answer.to_sdp_string(),
            source_id,
        })
    }

    /// Removes a participant from a call. Returns whether it was there.
    pub fn leave(&mut self, call: CallId, participant: ParticipantId) -> bool {
        match self.find_leg(call, participant) {
            Some(id) => {
                self.remove_leg(id, LeaveReason::Left);
                true
            }
            None => false,
        }
    }

    /// Ends a call for everyone in it. Returns whether it existed.
    pub fn close_call(&mut self, call: CallId) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        for id in c.legs.clone() {
            self.remove_leg(id, LeaveReason::CallClosed);
        }
        true
    }

    /// Ends every call (relay shutdown).
    pub fn close_all(&mut self) {
        let calls: Vec<CallId> = self.calls.keys().copied().collect();
        for call in calls {
            self.close_call(call);
        }
    }

    /// Feeds one datagram received from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        self.stats.datagrams += 1;
        if datagram.len() > crate::MAX_DATAGRAM {
            self.stats.dropped_oversized += 1;
            return;
        }
        let is_stun = stun::is_stun(datagram);
        let leg_id = if is_stun {
            stun::local_ufrag(datagram)
                .and_then(|u| self.by_ufrag.get(u))
                .copied()
        } else {
            self.by_addr.get(&source).copied()
        };
        let Some(leg_id) = leg_id else {
            self.stats.dropped_unknown += 1;
            return;
        };
        let Ok(contents) = DatagramRecv::try_from(datagram) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let Some(destination) = self.candidate_for(source) else {
            self.stats.dropped_unknown += 1;
            return;
        };
        let Some(leg) = self.legs.get_mut(&leg_id) else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        // str0m checks STUN integrity against the leg's password, and other traffic
        // against the addresses ICE validated.
        if !leg.rtc.accepts(&input) {
            self.stats.dropped_unknown += 1;
            return;
        }
        let allowed = if !is_stun && leg.is_video_rtp(datagram) {
            let ok = leg.video_budget.try_take(now);
            if !ok {
                leg.counters.video_rate_limited += 1;
            }
            ok
        } else {
            leg.budget.try_take(now)
        };
        if !allowed {
            leg.counters.rate_limited += 1;
            self.stats.dropped_rate_limited += 1;
            return;
        }
        if is_stun {
            if let Some(evicted) = leg.remember_addr(source) {
                self.by_addr.remove(&evicted);
            }
            self.by_addr.insert(source, leg_id);
        }
        if let Err(e) = leg.rtc.handle_input(input) {
            tracing::debug!(call = leg.call, participant = leg.participant, error = %e, "bad input on leg");
        }
        leg.drain(leg_id, &mut self.transmits, &mut self.work);
        self.process_work(now);
        self.reap(now);
    }

    /// Advances time: str0m's timers (RTCP, ICE consent, DTLS retransmits) and the
    /// connect deadline of legs that never showed up.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<LegId> = self
            .legs
            .iter()
            .filter(|(_, l)| l.timeout <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(leg) = self.legs.get_mut(&id) {
                if let Err(e) = leg.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(call = leg.call, participant = leg.participant, error = %e, "leg timer failed");
                }
                leg.drain(id, &mut self.transmits, &mut self.work);
            }
        }
        self.process_work(now);
        self.reap(now);
    }

    /// When [`SfuCore::handle_timeout`] should next be called.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.legs
            .values()
            .map(|l| {
                let mut t = l.timeout;
                if !l.connected {
                    t = t.min(l.joined_at + self.config.connect_timeout);
                }
                if let Some(since) = l.disconnected_at {
                    t = t.min(since + DISCONNECT_GRACE);
                }
                t
            })
            .min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.transmits.pop_front().map(|t| Outgoing {
            destination: t.destination,
            contents: t.contents.into(),
        })
    }

    /// The next event for the signalling layer.
    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    /// Relay-wide counters.
    pub fn stats(&self) -> SfuStats {
        SfuStats {
            calls: self.calls.len(),
            legs: self.legs.len(),
            ..self.stats.clone()
        }
    }

    /// One participant's transport figures.
    pub fn participant_stats(&self, call: CallId, participant: ParticipantId) -> Option<ParticipantStats> {
        let leg = self.legs.get(&self.find_leg(call, participant)?)?;
        let c = &leg.counters;
        Some(ParticipantStats {
            connected: leg.connected,
            source_id: leg.source_id,
            packets_in: c.packets_in,
            bytes_in: c.bytes_in,
            packets_out: c.packets_out,
            bytes_out: c.bytes_out,
            dropped_rate_limited: c.rate_limited,
            dropped_video_rate_limited: c.video_rate_limited,
            rtt: c.rtt,
            loss_in: c.loss_in,
            loss_out: c.loss_out,
            receiving_from: leg.feeds(MediaKind::Audio),
            receiving_video_from: leg.feeds(MediaKind::Video),
            keyframe_requests_forwarded: c.keyframe_requests_forwarded,
        })
    }

    fn find_leg(&self, call: CallId, participant: ParticipantId) -> Option<LegId> {
        let c = self.calls.get(&call)?;
        c.legs
            .iter()
            .copied()
            .find(|id| self.legs.get(id).is_some_and(|l| l.participant == participant))
    }

    /// The advertised address of the same family as `source`: str0m pairs candidates
    /// by the address a packet was sent to, which behind NAT is not the socket's own.
    fn candidate_for(&self, source: SocketAddr) -> Option<SocketAddr> {
        self.candidates
            .iter()
            .copied()
            .find(|c| c.is_ipv4() == source.is_ipv4())
    }

    fn process_work(&mut self, now: Instant) {
        loop {
            self.request_wanted_keyframes(now);
            let Some((id, event)) = self.work.pop_front() else {
                break;
            };
            match event {
                Event::RtpPacket(packet) => self.forward(id, packet),
                Event::KeyframeRequest(req) => self.forward_keyframe_request(id, req, now),
                // str0m announces the offer's m-lines once the leg connects; only then
                // can its tracks and slots be wired to the rest of the call.
                Event::MediaAdded(added) => {
                    if let Some(leg) = self.legs.get_mut(&id) {
                        leg.add_media(added.mid, MediaKind::from_str0m(added.kind), added.direction);
                        let call = leg.call;
                        self.assign_slots(call);
                    }
                }
                Event::Connected => {
                    if let Some(leg) = self.legs.get_mut(&id) {
                        leg.connected = true;
                        self.events.push_back(SfuEvent::Connected {
                            call: leg.call,
                            participant: leg.participant,
                        });
                    }
                }
                Event::IceConnectionStateChange(state) => {
                    if let Some(leg) = self.legs.get_mut(&id) {
                        leg.disconnected_at = match state {
                            IceConnectionState::Disconnected => leg.disconnected_at.or(Some(now)),
                            _ => None,
                        };
                    }
                }
                Event::PeerStats(s) => {
                    if let Some(leg) = self.legs.get_mut(&id) {
                        leg.counters.rtt = s.rtt.or(leg.counters.rtt);
                        leg.counters.loss_in = s.ingress_loss_fraction;
                        leg.counters.loss_out = s.egress_loss_fraction;
                    }
                }
                _ => {}
            }
        }
    }

    /// Sends one participant's packet to every other participant whose slot it feeds.
    fn forward(&mut self, from: LegId, packet: str0m::rtp::RtpPacket) {
        let Some(src) = self.legs.get_mut(&from) else {
            return;
        };
        src.counters.packets_in += 1;
        src.counters.bytes_in += packet.payload.len() as u64;
        let Some(mid) = crate::mid_of(&mut src.rtc, &packet) else {
            return;
        };
        let Some(params) = src
            .rtc
            .codec_config()
            .find(|p| p.pt() == packet.header.payload_type)
            .copied()
        else {
            return;
        };
        let wallclock = src.media_wallclock(&packet, params.spec().clock_rate.get());
        let (call, source_id) = (src.call, src.source_id);
        let Some(targets) = self.calls.get(&call).map(|c| c.legs.clone()) else {
            return;
        };
        for to in targets.into_iter().filter(|t| *t != from) {
            if let Some(dst) = self.legs.get_mut(&to)
                && dst.write_forwarded(from, mid, &params, source_id, &packet, wallclock)
            {
                dst.drain(to, &mut self.transmits, &mut self.work);
            }
        }
    }

    /// A receiver lost a picture: ask the participant feeding that slot for a keyframe.
    fn forward_keyframe_request(&mut self, at: LegId, req: str0m::media::KeyframeRequest, now: Instant) {
        let Some(feed) = self
            .legs
            .get(&at)
            .and_then(|l| l.slots.iter().find(|s| s.mid == req.mid))
            .and_then(|s| s.feed.as_ref())
            .map(|f| (f.from, f.from_mid))
        else {
            return;
        };
        if let Some(src) = self.legs.get_mut(&feed.0)
            && src.request_keyframe(feed.1, req.kind, now)
        {
            src.drain(feed.0, &mut self.transmits, &mut self.work);
            if let Some(receiver) = self.legs.get_mut(&at) {
                receiver.counters.keyframe_requests_forwarded += 1;
            }
        }
    }

    /// A receiver that just got a video slot needs a keyframe to start decoding.
    fn request_wanted_keyframes(&mut self, now: Instant) {
        for (from, mid) in std::mem::take(&mut self.keyframes_wanted) {
            if let Some(src) = self.legs.get_mut(&from)
                && src.request_keyframe(mid, str0m::media::KeyframeRequestKind::Pli, now)
            {
                src.drain(from, &mut self.transmits, &mut self.work);
            }
        }
    }

    /// Gives every participant's tracks a free slot of the same kind at every other
    /// participant, earliest joiners first. Tracks left over (a receiver offered fewer
    /// slots than the call has senders) wait until a slot frees up.
    fn assign_slots(&mut self, call: CallId) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let order = c.legs.clone();
        let sources: Vec<(LegId, ParticipantId, str0m::media::Mid, MediaKind)> = order
            .iter()
            .filter_map(|id| self.legs.get(id).map(|l| (id, l)))
            .flat_map(|(id, l)| l.tracks.iter().map(move |t| (*id, l.participant, t.mid, t.kind)))
            .collect();
        for to in &order {
            let Some(dst) = self.legs.get_mut(to) else {
                continue;
            };
            for (from, participant, mid, kind) in &sources {
                if from == to
                    || dst.slots.iter().any(|s| {
                        s.feed
                            .as_ref()
                            .is_some_and(|f| f.from == *from && f.from_mid == *mid)
                    })
                {
                    continue;
                }
                if let Some(slot) = dst.slots.iter_mut().find(|s| s.feed.is_none() && s.kind == *kind) {
                    slot.attach(*from, *mid, *participant);
                    if *kind == MediaKind::Video {
                        self.keyframes_wanted.push((*from, *mid));
                    }
                }
            }
        }
    }

    /// Drops legs whose `Rtc` died (ICE timeout, DTLS failure) or that never
    /// connected in time.
    fn reap(&mut self, now: Instant) {
        let connect_timeout = self.config.connect_timeout;
        let dead: Vec<(LegId, LeaveReason)> = self
            .legs
            .iter()
            .filter_map(|(id, l)| {
                let gone = l
                    .disconnected_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= DISCONNECT_GRACE);
                if !l.rtc.is_alive() || gone {
                    Some((*id, LeaveReason::Disconnected))
                } else if !l.connected && now.saturating_duration_since(l.joined_at) >= connect_timeout {
                    Some((*id, LeaveReason::ConnectTimeout))
                } else {
                    None
                }
            })
            .collect();
        for (id, reason) in dead {
            self.remove_leg(id, reason);
        }
    }

    fn remove_leg(&mut self, id: LegId, reason: LeaveReason) {
        let Some(mut leg) = self.legs.remove(&id) else {
            return;
        };
        // Say goodbye (RTCP BYE, DTLS close_notify) so the client learns at once.
        if leg.rtc.is_alive() && leg.rtc.close().is_ok() {
            let mut ignored = VecDeque::new();
            leg.drain(id, &mut self.transmits, &mut ignored);
        }
        self.by_ufrag.remove(&leg.ufrag);
        for addr in &leg.addrs {
            if self.by_addr.get(addr) == Some(&id) {
                self.by_addr.remove(addr);
            }
        }
        if let Some(c) = self.calls.get_mut(&leg.call) {
            c.legs.retain(|l| *l != id);
            if c.legs.is_empty() {
                self.calls.remove(&leg.call);
            }
        }
        for other in self.legs.values_mut().filter(|l| l.call == leg.call) {
            for slot in &mut other.slots {
                if slot.feed.as_ref().is_some_and(|f| f.from == id) {
                    slot.feed = None;
                }
            }
        }
        self.work.retain(|(l, _)| *l != id);
        self.assign_slots(leg.call);
        self.events.push_back(SfuEvent::Left {
            call: leg.call,
            participant: leg.participant,
            reason,
        });
    }
}

/// How long a client may stay silent on ICE (after str0m declares it disconnected)
/// before its leg is dropped; a brief outage or a NAT rebinding recovers within it.
const DISCONNECT_GRACE: Duration = Duration::from_secs(10);

/// How long a leg may take from join to a working DTLS-SRTP connection.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Parses a client's offer within the relay's limits: size first, so a huge offer is never
/// parsed, then the SDP grammar, then the number of m-lines.
pub(crate) fn parse_offer(
    offer_sdp: &str,
    max_offer_bytes: usize,
    max_media_lines: usize,
) -> Result<SdpOffer, SfuError> {
    if offer_sdp.len() > max_offer_bytes {
        return Err(SfuError::OfferTooLarge {
            limit: max_offer_bytes,
        });
    }
    let offer = SdpOffer::from_sdp_string(offer_sdp).map_err(|e| SfuError::MalformedSdp(e.to_string()))?;
    if offer.media_lines.len() > max_media_lines {
        return Err(SfuError::TooManyMediaLines {
            limit: max_media_lines,
        });
    }
    Ok(offer)
}
