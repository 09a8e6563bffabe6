//! `call USER` and `answer --auto`: headless voice calls.
//!
//! Audio comes from a synthetic tone or a WAV file and goes to a WAV recording (or nowhere),
//! so calls run on machines without sound devices: bots, CI, a server over SSH. Call state
//! changes print as they happen, and a statistics line once a second.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use parley_client::pb;
use parley_media::{
    AudioSink, AudioSource, Frame, MediaError, NullSink, SourceStatus, ToneSource, WavSink, WavSource,
};
use parley_voice::{CallEnd, CallOptions, CallPhase, VoiceCall, next_incoming_call};

use crate::context::{Context, Lifetime};
use crate::messages::conversation_for;

/// Where the call's outgoing audio comes from and where the incoming audio goes.
#[derive(Debug, Clone)]
pub struct MediaArgs {
    /// Play this WAV file instead of a tone.
    pub audio_file: Option<PathBuf>,
    /// Tone frequency when no file is given.
    pub tone_hz: f64,
    /// Record what is heard to this WAV file.
    pub record: Option<PathBuf>,
    /// Hang up after this long connected (`None`: wait for the other side).
    pub seconds: Option<u64>,
}

impl From<crate::args::CallMediaArgs> for MediaArgs {
    fn from(a: crate::args::CallMediaArgs) -> Self {
        MediaArgs {
            audio_file: a.audio_file,
            tone_hz: a.tone,
            record: a.record,
            seconds: a.seconds,
        }
    }
}

/// Places a call to `target` and runs it.
pub async fn call(ctx: &Context, target: String, media: MediaArgs) -> Result<()> {
    let authed = ctx.connect_resumed_for(Lifetime::Sending).await?;
    let client = authed.client;
    let conversation = conversation_for(&client, &target).await?;
    let (source, sink) = open_media(&media)?;
    println!("calling {target}");
    let call = VoiceCall::place(&client, conversation.id, source, sink, CallOptions::default())
        .await
        .with_context(|| format!("calling {target}"))?;
    println!("ringing");
    let result = run(call, media.seconds).await;
    client.close().await;
    result
}

/// Waits for the next incoming call, answers it, and runs it until it ends.
pub async fn answer(ctx: &Context, media: MediaArgs) -> Result<()> {
    let authed = ctx.connect_resumed_for(Lifetime::Sending).await?;
    let client = authed.client;
    let mut events = client.events();
    println!("waiting for a call as {}", authed.me.username);
    let incoming = next_incoming_call(&mut events)
        .await
        .ok_or_else(|| anyhow::anyhow!("the connection closed while waiting for a call"))?;
    let caller = match client.profile(incoming.caller_id).await {
        Ok(user) => user.username,
        Err(_) => format!("user {}", incoming.caller_id),
    };
    println!("incoming call from {caller}; answering");
    let (source, sink) = open_media(&media)?;
    let call = VoiceCall::answer(&client, incoming.call_id, source, sink, CallOptions::default())
        .await
        .context("answering the call")?;
    let result = run(call, media.seconds).await;
    client.close().await;
    result
}

/// Prints phases and stats until the call ends, `seconds` of connected time pass, or Ctrl-C.
async fn run(call: VoiceCall<Speaker>, seconds: Option<u64>) -> Result<()> {
    let mut phases = call.phases();
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    stats_tick.tick().await;
    let mut deadline: Option<tokio::time::Instant> = None;
    let start_timer = |deadline: &mut Option<tokio::time::Instant>| {
        if deadline.is_none() {
            *deadline = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
        }
    };
    if call.phase() == CallPhase::Connected {
        println!("connected");
        start_timer(&mut deadline);
    }
    let hang_up = loop {
        let timer = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = phases.changed() => {
                if changed.is_err() {
                    break false;
                }
                let phase = *phases.borrow_and_update();
                match phase {
                    CallPhase::Ringing => {}
                    CallPhase::Connected => {
                        println!("connected");
                        start_timer(&mut deadline);
                    }
                    CallPhase::Ended(_) => break false,
                }
            }
            _ = stats_tick.tick() => println!("{}", call.stats().summary()),
            _ = timer => break true,
            _ = tokio::signal::ctrl_c() => break true,
        }
    };
    let finished = if hang_up {
        call.hang_up().await.context("hanging up")?
    } else {
        call.finish().await.context("stopping the media")?
    };
    match finished.end {
        Some(end) => println!("ended: {}", end_text(&end)),
        None => println!("ended"),
    }
    println!("final: {}", finished.stats.summary());
    finished.sink.finish()?;
    Ok(())
}

fn end_text(end: &CallEnd) -> String {
    let outcome = match end.outcome {
        pb::CallOutcome::Completed => "completed",
        pb::CallOutcome::Missed => "missed",
        pb::CallOutcome::Declined => "declined",
        pb::CallOutcome::Cancelled => "cancelled",
        pb::CallOutcome::CallBusy => "busy",
        pb::CallOutcome::Unspecified => "connection lost",
    };
    let secs = end.duration.as_secs();
    format!("{outcome} {:02}:{:02}", secs / 60, secs % 60)
}

fn open_media(media: &MediaArgs) -> Result<(Microphone, Speaker)> {
    let source = match &media.audio_file {
        Some(path) => Microphone::File(
            WavSource::open(path, false).with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Microphone::Tone(ToneSource::new(media.tone_hz, 0.3).context("--tone")?),
    };
    let sink = match &media.record {
        Some(path) => {
            Speaker::Wav(WavSink::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => Speaker::Null(NullSink::default()),
    };
    Ok((source, sink))
}

/// The synthetic sources the CLI offers.
enum Microphone {
    Tone(ToneSource),
    File(WavSource),
}

impl AudioSource for Microphone {
    fn read_frame(&mut self, frame: &mut Frame) -> Result<SourceStatus, MediaError> {
        match self {
            Microphone::Tone(s) => s.read_frame(frame),
            Microphone::File(s) => s.read_frame(frame),
        }
    }
}

/// A recording, or nowhere.
enum Speaker {
    Wav(WavSink),
    Null(NullSink),
}

impl Speaker {
    fn finish(self) -> Result<()> {
        if let Speaker::Wav(sink) = self {
            sink.finish().context("finishing the recording")?;
        }
        Ok(())
    }
}

impl AudioSink for Speaker {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), MediaError> {
        match self {
            Speaker::Wav(s) => s.write_frame(frame),
            Speaker::Null(s) => s.write_frame(frame),
        }
    }
}
