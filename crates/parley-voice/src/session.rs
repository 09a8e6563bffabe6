//! [`VoiceCall`]: one call on one device, from the signalling request to the hang-up.
//!
//! Placing and answering share one shape: make the peer's SDP offer, send it with the
//! signalling request, apply the relay's answer from the response, start the audio task and
//! wait for the media leg to connect. A watcher task follows the call's events on the SDK's
//! event stream (subscribed before the request, so an answer that comes at once is not
//! missed) and publishes the call's [`CallPhase`].
//!
//! A video call differs only in its peer (a `sendrecv` video line besides the audio ones and
//! a second event stream), the media kind it is signalled with, and the video tasks the audio
//! task is started with.

use std::time::Duration;

use parley_client::{Client, ClientEvent, pb};
use parley_media::pipeline::MAX_GROUP_SLOTS;
use parley_media::{AudioSender, AudioSink, AudioSource, GroupReceiver, LossAdapter};
use parley_rtc::peer::{Peer, PeerConfig, PeerEvent};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::engine::{EngineHandle, VideoParts};
use crate::{CallOptions, CallStats, VideoMedia, VoiceError};

/// How long [`VoiceCall::hang_up`] waits for the server to confirm the end of the call.
const END_CONFIRM_WAIT: Duration = Duration::from_secs(3);

/// How an ended call ended, as the server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEnd {
    /// Completed, missed, declined, cancelled or busy.
    pub outcome: pb::CallOutcome,
    /// Connected time.
    pub duration: Duration,
    /// A participant's connection was lost and did not come back in time.
    pub connection_lost: bool,
}

impl From<pb::CallEnded> for CallEnd {
    fn from(e: pb::CallEnded) -> Self {
        CallEnd {
            outcome: e.outcome(),
            duration: Duration::from_millis(e.duration_ms),
            connection_lost: e.connection_lost,
        }
    }
}

/// Where the call stands in signalling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    /// The callee's devices ring.
    Ringing,
    /// Someone answered.
    Connected,
    /// The call is over.
    Ended(CallEnd),
}

/// What a call leaves behind: the sink (to finish a recording or analyse it) and the last
/// statistics.
#[derive(Debug)]
pub struct Finished<K> {
    /// The sink the received audio was played into.
    pub sink: K,
    /// Statistics at the end.
    pub stats: CallStats,
    /// How the call ended, if the server said so before the media stopped.
    pub end: Option<CallEnd>,
}

/// A voice call in progress on this device, with its media running.
pub struct VoiceCall<K> {
    client: Client,
    info: pb::CallInfo,
    phase: watch::Receiver<CallPhase>,
    watcher: JoinHandle<()>,
    engine: EngineHandle<K>,
}

impl<K: AudioSink + Send + 'static> VoiceCall<K> {
    /// Calls the other member of direct conversation `conv_id`, or the other members of group
    /// conversation `conv_id` (or joins the call already active there), sending `source` and
    /// playing what the others say, mixed, into `sink`. Returns once the media leg is
    /// connected; the callee may still be ringing.
    pub async fn place<S: AudioSource + Send + 'static>(
        client: &Client,
        conv_id: i64,
        source: S,
        sink: K,
        options: CallOptions,
    ) -> Result<VoiceCall<K>, VoiceError> {
        Self::place_with(client, conv_id, source, sink, None, options).await
    }

    /// Like [`VoiceCall::place`], as a video call: `video`'s source is sent beside the audio
    /// and what the others send is shown in its sink, with [`CallOptions::video`]'s settings.
    pub async fn place_video<S: AudioSource + Send + 'static>(
        client: &Client,
        conv_id: i64,
        source: S,
        sink: K,
        video: VideoMedia,
        options: CallOptions,
    ) -> Result<VoiceCall<K>, VoiceError> {
        Self::place_with(client, conv_id, source, sink, Some(video), options).await
    }

    async fn place_with<S: AudioSource + Send + 'static>(
        client: &Client,
        conv_id: i64,
        source: S,
        sink: K,
        video: Option<VideoMedia>,
        options: CallOptions,
    ) -> Result<VoiceCall<K>, VoiceError> {
        let group = match options.group {
            Some(group) => group,
            None => conversation_is_group(client, conv_id).await?,
        };
        let (peer, offer) = new_peer(&options, group, video).await?;
        let kind = if peer.video.is_some() {
            pb::MediaKind::Video
        } else {
            pb::MediaKind::Audio
        };
        let rx = client.events();
        let joined = client.start_call(conv_id, kind, &offer).await?;
        Self::start(client, joined, rx, peer, source, sink, options).await
    }

    /// Accepts incoming call `call_id` on this device.
    pub async fn answer<S: AudioSource + Send + 'static>(
        client: &Client,
        call_id: i64,
        source: S,
        sink: K,
        options: CallOptions,
    ) -> Result<VoiceCall<K>, VoiceError> {
        Self::answer_with(client, call_id, source, sink, None, options).await
    }

    /// Like [`VoiceCall::answer`], with video both ways (see [`VoiceCall::place_video`]).
    /// Answering an audio call this way works too; the relay then has no one's pictures to
    /// forward until someone sends some.
    pub async fn answer_video<S: AudioSource + Send + 'static>(
        client: &Client,
        call_id: i64,
        source: S,
        sink: K,
        video: VideoMedia,
        options: CallOptions,
    ) -> Result<VoiceCall<K>, VoiceError> {
        Self::answer_with(client, call_id, source, sink, Some(video), options).await
    }

    async fn answer_with<S: AudioSource + Send + 'static>(
        client: &Client,
        call_id: i64,
        source: S,
        sink: K,
        video: Option<VideoMedia>,
        options: CallOptions,
    ) -> Result<VoiceCall<K>, VoiceError> {
        let group = match options.group {
            Some(group) => group,
            None => call_is_group(client, call_id).await?,
        };
        let (peer, offer) = new_peer(&options, group, video).await?;
        let rx = client.events();
        let joined = client.answer_call(call_id, true, &offer).await?;
        // Accepting always answers with the call; `None` only comes back for a decline.
        let joined = joined.ok_or(VoiceError::NoMedia)?;
        Self::start(client, joined, rx, peer, source, sink, options).await
    }

    async fn start<S: AudioSource + Send + 'static>(
        client: &Client,
        joined: pb::CallJoined,
        rx: broadcast::Receiver<ClientEvent>,
        peer: CallPeer,
        source: S,
        sink: K,
        options: CallOptions,
    ) -> Result<VoiceCall<K>, VoiceError> {
        let CallPeer {
            peer,
            slots,
            events,
            video,
        } = peer;
        let info = joined.call.unwrap_or_default();
        let call_id = info.call_id;
        if info.group && slots < 2 {
            tracing::warn!(
                call_id,
                "a group call joined with one receive slot: only one voice is heard"
            );
        }
        let setup = async {
            if joined.sdp_answer.is_empty() {
                return Err(VoiceError::NoMedia);
            }
            peer.accept_answer(&joined.sdp_answer).await?;
            let adapter = options
                .loss_adaptation
                .map(|bounds| LossAdapter::new(options.encoder, bounds))
                .transpose()?;
            let encoder = adapter.as_ref().map_or(options.encoder, LossAdapter::current);
            // WebRTC starts each stream's RTP clock at a random point.
            let sender = AudioSender::new(source, encoder, rand::random())?;
            let receiver = GroupReceiver::new(options.jitter, slots, sink)?;
            Ok((sender, receiver, adapter))
        };
        let (sender, receiver, adapter) = match setup.await {
            Ok(parts) => parts,
            Err(e) => {
                let _ = client.hang_up(call_id).await;
                return Err(e);
            }
        };
        let initial = match info.state() {
            pb::CallState::Connected => CallPhase::Connected,
            _ => CallPhase::Ringing,
        };
        let (phase_tx, phase) = watch::channel(initial);
        let watcher = tokio::spawn(watch_call(rx, call_id, phase_tx));
        let call = VoiceCall {
            client: client.clone(),
            info,
            phase,
            watcher,
            engine: EngineHandle::spawn(peer, events, sender, receiver, adapter, video),
        };
        if let Err(e) = call.wait_media(options.connect_timeout).await {
            let _ = call.hang_up().await;
            return Err(e);
        }
        Ok(call)
    }

    /// The call's id.
    pub fn call_id(&self) -> i64 {
        self.info.call_id
    }

    /// The call as the server described it when this device joined.
    pub fn info(&self) -> &pb::CallInfo {
        &self.info
    }

    /// Where the call stands now.
    pub fn phase(&self) -> CallPhase {
        *self.phase.borrow()
    }

    /// A receiver of phase changes.
    pub fn phases(&self) -> watch::Receiver<CallPhase> {
        self.phase.clone()
    }

    /// The latest statistics.
    pub fn stats(&self) -> CallStats {
        self.engine.stats().borrow().clone()
    }

    /// A receiver of statistics, updated every 20 ms.
    pub fn stats_watch(&self) -> watch::Receiver<CallStats> {
        self.engine.stats()
    }

    /// Mutes or unmutes this device's microphone side (encoded silence keeps flowing).
    pub fn set_muted(&self, muted: bool) {
        self.engine.set_muted(muted);
    }

    /// Turns this device's camera side off or back on: no pictures are sent while off, but
    /// the video stream stays, so turning it on again needs no renegotiation. Returns false
    /// (and does nothing) in a call without video.
    pub fn set_camera(&self, on: bool) -> bool {
        self.engine.set_camera(on)
    }

    /// Waits until the media leg is connected.
    pub async fn wait_media(&self, within: Duration) -> Result<(), VoiceError> {
        let mut stats = self.engine.stats();
        let connected = tokio::time::timeout(within, stats.wait_for(|s| s.connected)).await;
        match connected {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(VoiceError::EngineStopped),
            Err(_) => Err(VoiceError::ConnectTimeout(within)),
        }
    }

    /// Waits until someone answers; `Err` with how it ended if it ends first.
    pub async fn wait_answered(&mut self) -> Result<(), CallEnd> {
        match self.phase.wait_for(|p| *p != CallPhase::Ringing).await {
            Ok(p) => match *p {
                CallPhase::Ended(end) => Err(end),
                _ => Ok(()),
            },
            // The watcher only stops after an end (or with the client), so treat it as lost.
            Err(_) => Err(lost()),
        }
    }

    /// Waits until the call ends (the other side hangs up, the call is missed …).
    pub async fn ended(&mut self) -> CallEnd {
        match self.phase.wait_for(|p| matches!(p, CallPhase::Ended(_))).await {
            Ok(p) => match *p {
                CallPhase::Ended(end) => end,
                _ => lost(),
            },
            Err(_) => lost(),
        }
    }

    /// Hangs up (cancels a call still ringing, leaves a group call), stops the media and gives
    /// back the sink.
    pub async fn hang_up(mut self) -> Result<Finished<K>, VoiceError> {
        if !matches!(self.phase(), CallPhase::Ended(_)) {
            // Subscribed before the request, so a confirmation that comes at once is not missed.
            let mut events = self.client.events();
            match self.client.hang_up(self.info.call_id).await {
                Ok(()) => {}
                // Ended meanwhile by the other side: nothing left to hang up.
                Err(e) if e.code() == Some(pb::ErrorCode::NotFound) => {}
                Err(e) => {
                    let _ = self.finish().await;
                    return Err(e.into());
                }
            }
            // A 1:1 call ends with the hang-up, and the confirmation carries the outcome. A
            // group call goes on without this device unless it was the last but one, so either
            // confirmation will do.
            let me = self.client.user().map(|u| u.id);
            let call_id = self.info.call_id;
            let confirmed = async {
                tokio::select! {
                    _ = self.ended() => {}
                    () = left(&mut events, call_id, me) => {}
                }
            };
            let _ = tokio::time::timeout(END_CONFIRM_WAIT, confirmed).await;
        }
        self.finish().await
    }

    /// Stops the media without signalling (for a call that has already ended) and gives back
    /// the sink.
    pub async fn finish(self) -> Result<Finished<K>, VoiceError> {
        let end = match *self.phase.borrow() {
            CallPhase::Ended(end) => Some(end),
            _ => None,
        };
        self.watcher.abort();
        let stopped = self.engine.stop().await?;
        Ok(Finished {
            sink: stopped.sink,
            stats: stopped.stats,
            end,
        })
    }
}

/// Waits for the server to confirm that user `me` left call `call_id` (a group call that goes
/// on); never returns if the stream ends first.
async fn left(events: &mut broadcast::Receiver<ClientEvent>, call_id: i64, me: Option<i64>) {
    loop {
        match events.recv().await {
            Ok(ClientEvent::Server(pb::event::Kind::CallLeft(l)))
                if l.call_id == call_id && Some(l.user_id) == me =>
            {
                return;
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// An end for a call whose event stream went away (the client closed).
fn lost() -> CallEnd {
    CallEnd {
        outcome: pb::CallOutcome::Unspecified,
        duration: Duration::ZERO,
        connection_lost: true,
    }
}

/// A peer shaped for a call, before the audio task takes it over.
struct CallPeer {
    peer: Peer,
    /// Audio receive slots offered.
    slots: usize,
    events: mpsc::Receiver<PeerEvent>,
    /// The video half, in a video call.
    video: Option<VideoParts>,
}

/// A peer shaped for the call, and its offer.
async fn new_peer(
    options: &CallOptions,
    group: bool,
    video: Option<VideoMedia>,
) -> Result<(CallPeer, String), VoiceError> {
    // A 1:1 call's one sendrecv line carries both directions. A group call needs a line for
    // every other participant up front, since the relay fills slots without renegotiating:
    // the sendrecv one plus receive-only ones.
    let slots = if group {
        options
            .max_participants
            .saturating_sub(1)
            .clamp(1, MAX_GROUP_SLOTS)
    } else {
        1
    };
    let config = PeerConfig {
        bind: options.bind,
        recv_only_audio: slots - 1,
        ..PeerConfig::default()
    };
    let (peer, events, video) = match video {
        None => {
            let (peer, events) = Peer::new(config)?;
            (peer, events, None)
        }
        Some(media) => {
            let (peer, events, video_events) = Peer::new_with_video(PeerConfig {
                video: true,
                // Every other participant's pictures need a line of their own, as their
                // voices do.
                recv_only_video: slots - 1,
                video_start_bitrate: options.video.start_bitrate_bps,
                // Video at the top of its range, plus Opus at its most.
                video_max_bitrate: u64::from(options.video.rate.max_bitrate_bps) + 64_000,
                ..config
            })?;
            let parts = VideoParts {
                events: video_events,
                media,
                options: options.video,
            };
            (peer, events, Some(parts))
        }
    };
    let offer = peer.create_offer().await?;
    Ok((
        CallPeer {
            peer,
            slots,
            events,
            video,
        },
        offer,
    ))
}

/// Whether `conv_id` is a group conversation of the user's. An unknown one counts as direct:
/// the server refuses the call on it anyway.
async fn conversation_is_group(client: &Client, conv_id: i64) -> Result<bool, VoiceError> {
    let conversations = client.conversations().await?;
    Ok(conversations
        .iter()
        .any(|c| c.id == conv_id && c.kind() == pb::ConversationKind::Group))
}

/// Whether call `call_id` is a group call. A call the server does not list for the user (a
/// group call they were not rung for) gets the group shape, which plays a 1:1 call just as well.
async fn call_is_group(client: &Client, call_id: i64) -> Result<bool, VoiceError> {
    let calls = client.calls().await?;
    Ok(calls
        .iter()
        .find(|c| c.call_id == call_id)
        .is_none_or(|c| c.group))
}

/// Follows one call's events and publishes its phase until it ends.
async fn watch_call(mut rx: broadcast::Receiver<ClientEvent>, call_id: i64, phase: watch::Sender<CallPhase>) {
    use pb::event::Kind as Ev;
    loop {
        let event = match rx.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "call watcher fell behind the event stream");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match event {
            ClientEvent::Server(Ev::CallAccepted(a)) if a.call_id == call_id => {
                phase.send_if_modified(|p| {
                    let ringing = *p == CallPhase::Ringing;
                    if ringing {
                        *p = CallPhase::Connected;
                    }
                    ringing
                });
            }
            ClientEvent::Server(Ev::CallEnded(e)) if e.call_id == call_id => {
                phase.send_replace(CallPhase::Ended(e.into()));
                return;
            }
            _ => {}
        }
    }
}

/// Waits on `events` for the next incoming call; `None` when the stream ends.
pub async fn next_incoming_call(events: &mut broadcast::Receiver<ClientEvent>) -> Option<pb::CallInfo> {
    loop {
        match events.recv().await {
            Ok(ClientEvent::Server(pb::event::Kind::CallIncoming(call))) => return Some(call),
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}
