//! The task behind a [`super::Peer`]: owns the `Rtc` and the socket, and follows
//! str0m's contract of draining all output after every mutation.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::KeyframeRequestKind;
use str0m::media::{Direction, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{
    Command, ConnectionState, EncodedAudio, EncodedVideo, PeerConfig, PeerError, PeerEvent, ReceivedAudio,
    ReceivedVideo, SenderReport, TransportStats, VideoEvent,
};
use crate::MediaKind;
use crate::h264::{self, FrameAssembler, VideoPacket};

/// Datagrams read back to back before commands and timers get a turn.
const READ_BATCH: usize = 64;
/// Upper bound on a sleep so a quiet peer still runs its timers.
const MAX_IDLE: Duration = Duration::from_millis(500);

pub(super) struct PeerTask {
    rtc: Rtc,
    socket: UdpSocket,
    local_addr: SocketAddr,
    /// The host candidate announced: the bound address, or for a wildcard bind the
    /// interface address that routes to the relay.
    candidate: Option<SocketAddr>,
    recv_only_audio: usize,
    video: bool,
    recv_only_video: usize,
    pending: Option<SdpPendingOffer>,
    offered: bool,
    send_audio: Option<Mid>,
    recv_slots: Vec<Mid>,
    send_video: Option<Mid>,
    video_slots: Vec<Mid>,
    assemblers: HashMap<Mid, FrameAssembler>,
    /// The source id last seen on each receive line, for sender reports.
    last_source: HashMap<Mid, u32>,
    next_seq: HashMap<Mid, SeqNo>,
    events: mpsc::Sender<PeerEvent>,
    video_events: Option<mpsc::Sender<VideoEvent>>,
    connected: Arc<AtomicBool>,
    ice_disconnected: bool,
    timeout: Instant,
    stats: TransportStats,
    last_bytes: Option<(Instant, u64, u64)>,
    jitter: HashMap<Mid, Duration>,
    packets_in: HashMap<Mid, u64>,
    packets_out: HashMap<Mid, u64>,
    closed: bool,
}

impl PeerTask {
    pub(super) fn new(
        socket: UdpSocket,
        local_addr: SocketAddr,
        config: &PeerConfig,
        events: mpsc::Sender<PeerEvent>,
        video_events: Option<mpsc::Sender<VideoEvent>>,
        connected: Arc<AtomicBool>,
    ) -> Self {
        let now = Instant::now();
        let mut rtc_config = crate::rtc_config();
        if config.video {
            // The estimate is what the application should size its encoder to; str0m
            // also paces video to it so a keyframe does not leave as one burst.
            rtc_config = rtc_config.enable_bwe(Some(Bitrate::bps(config.video_start_bitrate.max(1))));
        }
        let mut rtc = rtc_config.build(now);
        if config.video {
            rtc.bwe()
                .set_bitrate(Bitrate::ZERO, Bitrate::bps(config.video_max_bitrate.max(1)));
        }
        PeerTask {
            rtc,
            socket,
            local_addr,
            candidate: None,
            recv_only_audio: config.recv_only_audio,
            video: config.video,
            recv_only_video: config.recv_only_video,
            pending: None,
            offered: false,
            send_audio: None,
            recv_slots: Vec::new(),
            send_video: None,
            video_slots: Vec::new(),
            assemblers: HashMap::new(),
            last_source: HashMap::new(),
            next_seq: HashMap::new(),
            events,
            video_events,
            connected,
            ice_disconnected: false,
            timeout: now,
            stats: TransportStats::default(),
            last_bytes: None,
            jitter: HashMap::new(),
            packets_in: HashMap::new(),
            packets_out: HashMap::new(),
            closed: false,
        }
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut media: mpsc::Receiver<EncodedAudio>,
        mut video: Option<mpsc::Receiver<EncodedVideo>>,
    ) {
        let mut buf = vec![0u8; crate::MAX_DATAGRAM + 1];
        self.drain();
        while !self.closed {
            let mut deadline = self.timeout.min(Instant::now() + MAX_IDLE);
            if let Some(t) = self.assemblers.values().filter_map(|a| a.deadline()).min() {
                deadline = deadline.min(t);
            }
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Close) => self.close(),
                    Some(cmd) => self.handle_command(cmd),
                },
                Some(frame) = media.recv() => self.write_audio(frame),
                Some(frame) = next_video(&mut video) => self.write_video(frame),
                readable = self.socket.readable() => {
                    if readable.is_err() {
                        break;
                    }
                    self.read_datagrams(&mut buf);
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        tracing::debug!(error = %e, "peer timer failed");
                    }
                    self.drain();
                    self.poll_frames();
                }
            }
        }
        self.connected.store(false, Ordering::Release);
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::CreateOffer { reply } => {
                let _ = reply.send(self.create_offer());
            }
            Command::AcceptAnswer { sdp, reply } => {
                let _ = reply.send(self.accept_answer(&sdp));
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats.clone());
            }
            Command::RequestKeyframe { slot } => self.request_keyframe(slot),
            Command::Close => self.close(),
        }
    }

    fn create_offer(&mut self) -> Result<String, PeerError> {
        if self.offered {
            return Err(PeerError::AlreadyOffered);
        }
        if !self.local_addr.ip().is_unspecified() {
            self.add_candidate(self.local_addr)?;
        }
        let mut change = self.rtc.sdp_api();
        let send = change.add_media(
            str0m::media::MediaKind::Audio,
            Direction::SendRecv,
            None,
            None,
            None,
        );
        let mut slots = vec![send];
        for _ in 0..self.recv_only_audio {
            slots.push(change.add_media(
                str0m::media::MediaKind::Audio,
                Direction::RecvOnly,
                None,
                None,
                None,
            ));
        }
        let mut video_slots = Vec::new();
        if self.video {
            video_slots.push(change.add_media(
                str0m::media::MediaKind::Video,
                Direction::SendRecv,
                None,
                None,
                None,
            ));
        }
        for _ in 0..self.recv_only_video {
            video_slots.push(change.add_media(
                str0m::media::MediaKind::Video,
                Direction::RecvOnly,
                None,
                None,
                None,
            ));
        }
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| PeerError::Internal("offer had no changes".to_owned()))?;
        self.drain();
        self.offered = true;
        self.pending = Some(pending);
        self.send_audio = Some(send);
        self.recv_slots = slots;
        self.send_video = self.video.then(|| video_slots.first().copied()).flatten();
        self.video_slots = video_slots;
        Ok(offer.to_sdp_string())
    }

    fn accept_answer(&mut self, sdp: &str) -> Result<(), PeerError> {
        let Some(pending) = self.pending.take() else {
            return Err(PeerError::NoPendingOffer);
        };
        let answer = match SdpAnswer::from_sdp_string(sdp) {
            Ok(a) => a,
            Err(e) => {
                // Keep the offer: a corrected answer may still come.
                self.pending = Some(pending);
                return Err(PeerError::MalformedSdp(e.to_string()));
            }
        };
        if self.candidate.is_none() {
            let remote = answer
                .session
                .ice_candidates()
                .chain(answer.media_lines.iter().flat_map(|m| m.ice_candidates()))
                .map(|c| c.addr())
                .next();
            if let Some(remote) = remote {
                let ip = route_to(self.local_addr, remote)?;
                self.add_candidate(SocketAddr::new(ip, self.local_addr.port()))?;
            }
        }
        let result = self.rtc.sdp_api().accept_answer(pending, answer);
        if let Some(mid) = self.send_video {
            crate::tune_video_send_stream(&mut self.rtc, mid);
        }
        self.drain();
        result.map_err(|e| PeerError::RejectedSdp(e.to_string()))
    }

    fn add_candidate(&mut self, addr: SocketAddr) -> Result<(), PeerError> {
        let candidate = Candidate::host(addr, "udp").map_err(|e| PeerError::Internal(e.to_string()))?;
        self.rtc.add_local_candidate(candidate);
        self.drain();
        self.candidate = Some(addr);
        Ok(())
    }

    fn write_audio(&mut self, frame: EncodedAudio) {
        let Some(mid) = self.send_audio else {
            return;
        };
        if !self.rtc.is_connected() {
            return;
        }
        let Some(pt) = self.negotiated_pt(mid, Codec::Opus) else {
            return;
        };
        let this_seq = self.take_seq_no(mid);
        let mut direct = self.rtc.direct_api();
        let Some(stream) = direct.stream_tx_by_mid(mid, None) else {
            return;
        };
        let payload: Arc<[u8]> = Arc::from(&frame.payload[..]);
        let captured = frame.captured_at.unwrap_or_else(Instant::now);
        stream.write_rtp(
            RtpWrite::new(pt, this_seq, frame.rtp_timestamp, captured, payload).marker(frame.marker),
        );
        self.drain();
    }

    /// Cuts one access unit into RTP packets; all but the last carry no marker.
    /// Video packets are kept for retransmission (NACK/RTX), unlike audio.
    fn write_video(&mut self, frame: EncodedVideo) {
        let Some(mid) = self.send_video else {
            return;
        };
        if !self.rtc.is_connected() {
            return;
        }
        let Some(pt) = self.negotiated_pt(mid, Codec::H264) else {
            return;
        };
        let payloads = h264::packetize(&frame.data, h264::MAX_PAYLOAD);
        let last = payloads.len().saturating_sub(1);
        let captured = frame.captured_at.unwrap_or_else(Instant::now);
        for (n, payload) in payloads.into_iter().enumerate() {
            let this_seq = self.take_seq_no(mid);
            let mut direct = self.rtc.direct_api();
            let Some(stream) = direct.stream_tx_by_mid(mid, None) else {
                return;
            };
            stream.write_rtp(
                RtpWrite::new(pt, this_seq, frame.rtp_timestamp, captured, payload)
                    .marker(n == last)
                    .nackable(true),
            );
            self.drain();
        }
    }

    /// The next sequence number of `mid`'s outgoing stream, which starts at a random point.
    fn take_seq_no(&mut self, mid: Mid) -> SeqNo {
        let seq = self
            .next_seq
            .entry(mid)
            .or_insert_with(|| SeqNo::from(crate::first_seq_no()));
        let this = *seq;
        *seq = SeqNo::from(*this + 1);
        this
    }

    /// How long frame reassembly waits for a retransmission on this path now.
    fn video_hold(&self) -> Duration {
        self.stats.rtt.map_or(h264::DEFAULT_HOLD, h264::hold_for_rtt)
    }

    /// The payload type the answer accepted for `codec` on `mid`.
    fn negotiated_pt(&mut self, mid: Mid, codec: Codec) -> Option<str0m::media::Pt> {
        let remote = self.rtc.media(mid)?.remote_pts().to_vec();
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == codec && remote.contains(&p.pt()))
            .map(|p| p.pt())
    }

    fn request_keyframe(&mut self, slot: usize) {
        let Some(mid) = self.video_slots.get(slot).copied() else {
            return;
        };
        let mut direct = self.rtc.direct_api();
        // No stream yet means nothing arrived yet: the first frame will be a keyframe.
        let Some(stream) = direct.stream_rx_by_mid(mid, None) else {
            return;
        };
        stream.request_keyframe(KeyframeRequestKind::Pli);
        self.drain();
    }

    fn read_datagrams(&mut self, buf: &mut [u8]) {
        for _ in 0..READ_BATCH {
            let (n, source) = match self.socket.try_recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors (port unreachable) land here on some platforms.
                    tracing::debug!(error = %e, "peer receive error");
                    return;
                }
            };
            if n > crate::MAX_DATAGRAM {
                continue;
            }
            let Ok(contents) = buf[..n].try_into() else {
                continue;
            };
            let destination = self.candidate.unwrap_or(self.local_addr);
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination,
                    contents,
                },
            );
            // Only the relay ICE agreed on gets in; anything else is dropped here.
            if !self.rtc.accepts(&input) {
                continue;
            }
            if let Err(e) = self.rtc.handle_input(input) {
                tracing::debug!(error = %e, "peer input rejected");
            }
            self.drain();
        }
    }

    fn close(&mut self) {
        if self.rtc.close().is_ok() {
            self.drain();
        }
        self.closed = true;
        self.connected.store(false, Ordering::Release);
        self.emit(PeerEvent::State(ConnectionState::Closed));
    }

    /// Sends what str0m wants sent and handles its events, until it asks for a timeout.
    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    // UDP is lossy anyway: a full socket buffer drops like the network would.
                    if let Err(e) = self.socket.try_send_to(&t.contents, t.destination) {
                        tracing::trace!(error = %e, "peer send dropped");
                    }
                }
                Ok(Output::Event(e)) => self.handle_event(e),
                Err(e) => {
                    tracing::debug!(error = %e, "peer connection failed");
                    self.rtc.disconnect();
                    self.timeout = Instant::now() + MAX_IDLE;
                    return;
                }
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.connected.store(true, Ordering::Release);
                self.emit(PeerEvent::State(ConnectionState::Connected));
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.ice_disconnected = true;
                self.connected.store(false, Ordering::Release);
                self.emit(PeerEvent::State(ConnectionState::Disconnected));
            }
            Event::IceConnectionStateChange(
                IceConnectionState::Connected | IceConnectionState::Completed,
            ) if self.ice_disconnected && self.rtc.is_connected() => {
                self.ice_disconnected = false;
                self.connected.store(true, Ordering::Release);
                self.emit(PeerEvent::State(ConnectionState::Connected));
            }
            Event::Closed => {
                self.connected.store(false, Ordering::Release);
                self.emit(PeerEvent::State(ConnectionState::Closed));
            }
            Event::RtpPacket(packet) => self.deliver(packet),
            Event::PeerStats(s) => {
                let now = s.timestamp;
                if let Some((then, rx, tx)) = self.last_bytes {
                    let secs = now.saturating_duration_since(then).as_secs_f64();
                    if secs > 0.0 {
                        self.stats.bitrate_in =
                            (s.peer_bytes_rx.saturating_sub(rx) as f64 * 8.0 / secs) as u64;
                        self.stats.bitrate_out =
                            (s.peer_bytes_tx.saturating_sub(tx) as f64 * 8.0 / secs) as u64;
                    }
                }
                self.last_bytes = Some((now, s.peer_bytes_rx, s.peer_bytes_tx));
                self.stats.rtt = s.rtt.or(self.stats.rtt);
                let hold = self.video_hold();
                for asm in self.assemblers.values_mut() {
                    asm.set_hold(hold);
                }
                self.stats.loss_in = s.ingress_loss_fraction;
                self.stats.loss_out = s.egress_loss_fraction;
                self.stats.jitter_in = self.jitter.values().max().copied();
                self.stats.packets_in = self.packets_in.values().sum();
                self.stats.packets_out = self.packets_out.values().sum();
                self.emit(PeerEvent::Stats(self.stats.clone()));
            }
            Event::MediaIngressStats(s) => {
                let clock = self.kind_of(s.mid).map_or(48_000, MediaKind::clock_rate);
                self.jitter.insert(
                    s.mid,
                    Duration::from_secs_f64(f64::from(s.jitter) / f64::from(clock)),
                );
                self.packets_in.insert(s.mid, s.packets);
                if s.rtt.is_some() {
                    self.stats.rtt = s.rtt;
                }
            }
            Event::MediaEgressStats(s) => {
                self.packets_out.insert(s.mid, s.packets);
                if s.rtt.is_some() {
                    self.stats.rtt = s.rtt;
                }
            }
            Event::KeyframeRequest(req) if Some(req.mid) == self.send_video => {
                self.emit_video(VideoEvent::KeyframeRequested);
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. }) => {
                let bps = estimate.as_u64();
                self.stats.bandwidth_estimate = Some(bps);
                self.emit_video(VideoEvent::BandwidthEstimate(bps));
            }
            Event::SenderFeedback(fb) => {
                let slot = match self.recv_slots.iter().position(|m| *m == fb.mid) {
                    Some(slot) => Some((MediaKind::Audio, slot)),
                    None => self
                        .video_slots
                        .iter()
                        .position(|m| *m == fb.mid)
                        .map(|slot| (MediaKind::Video, slot)),
                };
                if let Some((kind, slot)) = slot {
                    let report = SenderReport {
                        kind,
                        slot,
                        source_id: self.last_source.get(&fb.mid).copied(),
                        ntp_time: fb.sender_info.ntp_time,
                        // str0m extends RTP time past 32 bits; the wire value is the low part.
                        rtp_timestamp: fb.sender_info.rtp_time.numer() as u32,
                        received_at: fb.received_at,
                    };
                    self.emit_video(VideoEvent::SenderReport(report));
                }
            }
            _ => {}
        }
    }

    fn kind_of(&self, mid: Mid) -> Option<MediaKind> {
        self.rtc.media(mid).map(|m| MediaKind::from_str0m(m.kind()))
    }

    fn deliver(&mut self, packet: RtpPacket) {
        let Some(mid) = crate::mid_of(&mut self.rtc, &packet) else {
            return;
        };
        let header = &packet.header;
        let source_id = (header.csrc_count > 0).then_some(header.csrc[0]);
        if let Some(source) = source_id {
            self.last_source.insert(mid, source);
        }
        if self.video_slots.contains(&mid) {
            let hold = self.video_hold();
            self.assemblers
                .entry(mid)
                .or_insert_with(|| FrameAssembler::new(hold))
                .push(VideoPacket {
                    seq_no: *packet.seq_no,
                    rtp_timestamp: header.timestamp,
                    marker: header.marker,
                    payload: packet.payload.clone(),
                    arrival: packet.timestamp,
                    csrc: source_id,
                });
            self.poll_frames();
            return;
        }
        let Some(slot) = self.recv_slots.iter().position(|m| *m == mid) else {
            return;
        };
        if self.kind_of(mid) != Some(MediaKind::Audio) {
            return;
        }
        let audio = ReceivedAudio {
            slot,
            ssrc: *header.ssrc,
            source_id,
            seq_no: *packet.seq_no,
            rtp_timestamp: header.timestamp,
            marker: header.marker,
            arrival: packet.timestamp,
            payload: Bytes::copy_from_slice(&packet.payload),
        };
        self.emit(PeerEvent::Audio(audio));
    }

    /// Hands out every frame the assemblers have completed (or given up waiting for).
    fn poll_frames(&mut self) {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut lost = 0;
        for (slot, mid) in self.video_slots.iter().enumerate() {
            let Some(asm) = self.assemblers.get_mut(mid) else {
                continue;
            };
            for frame in asm.poll(now) {
                out.push(ReceivedVideo {
                    slot,
                    source_id: frame.csrc,
                    rtp_timestamp: frame.rtp_timestamp,
                    data: Bytes::from(frame.data),
                    keyframe: frame.keyframe,
                    contiguous: frame.contiguous,
                    arrival: frame.arrival,
                });
            }
            lost += asm.lost;
        }
        self.stats.video_frames_lost = lost;
        self.stats.video_frames_in += out.len() as u64;
        for frame in out {
            self.emit_video(VideoEvent::Frame(frame));
        }
    }

    fn emit_video(&mut self, event: VideoEvent) {
        let Some(tx) = &self.video_events else {
            return;
        };
        if tx.try_send(event).is_err() {
            self.stats.dropped_video_events += 1;
        }
    }

    fn emit(&mut self, event: PeerEvent) {
        if self.events.try_send(event).is_err() {
            self.stats.dropped_events += 1;
        }
    }
}

/// The next access unit to send, or never when video is off.
async fn next_video(rx: &mut Option<mpsc::Receiver<EncodedVideo>>) -> Option<EncodedVideo> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The local address that routes to `remote`, found by connecting a throwaway UDP
/// socket (connecting sends nothing).
fn route_to(local: SocketAddr, remote: SocketAddr) -> io::Result<std::net::IpAddr> {
    let any = if remote.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    if !local.ip().is_unspecified() {
        return Ok(local.ip());
    }
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(remote)?;
    Ok(probe.local_addr()?.ip())
}
