//! Voice and video calls on the runtime. Each call is one task that owns its
//! [`VoiceCall`]: it opens the audio (and the camera), places or answers the
//! call, reports the phase and the statistics to the UI thread, and obeys
//! the commands the window sends through [`CallControl`]. Dropping the control hangs up, so a
//! call cannot outlive the window (or the app) that shows it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parley_client::Client;
use parley_voice::{CallEnd, CallOptions, CallPhase, CallStats, VideoMedia, VoiceCall, VoiceError};
use tokio::sync::mpsc;

use super::{Bridge, to_ui};
use crate::audio::{CallAudio, OpenedAudio, Speaker};
use crate::video::{CallVideo, OpenedVideo, VideoPipe};

/// How often the window's statistics are refreshed.
const STATS_EVERY: Duration = Duration::from_millis(500);

/// How a call begins on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStart {
    /// Call the other member of this direct conversation.
    Place {
        /// The conversation.
        conv_id: i64,
    },
    /// Accept this incoming call here.
    Answer {
        /// The call.
        call_id: i64,
    },
}

/// What a call task tells the UI thread.
#[derive(Debug, Clone)]
pub enum CallUpdate {
    /// The call exists and its media is up: the other side rings (`Ringing`)
    /// or talks (`Connected`).
    Started {
        /// The server's id of the call.
        call_id: i64,
        /// Where it stands.
        phase: CallPhase,
        /// Why the audio is silent, when it is.
        note: Option<String>,
        /// Why the other side sees no camera, when it does not.
        video_note: Option<String>,
    },
    /// Someone answered.
    Connected,
    /// Fresh figures.
    Stats(Box<CallStats>),
    /// The call is over; `None` when the connection went away before the
    /// server said how it ended.
    Ended(Option<CallEnd>),
    /// The call could not be placed, answered or hung up.
    Failed(String),
}

enum Command {
    Mute(bool),
    Camera(bool),
    HangUp,
}

/// The picture side of a video call: where this device's pictures come from
/// and the pipe that carries both pictures to the window.
pub struct CallVideoSetup {
    /// Opens the camera (or what stands in for it).
    pub video: Arc<dyn CallVideo>,
    /// Carries the pictures to the window.
    pub pipe: VideoPipe,
}

/// The window's handle on a running call task.
#[derive(Debug)]
pub struct CallControl {
    commands: mpsc::UnboundedSender<Command>,
}

impl CallControl {
    /// Mutes or unmutes the microphone side.
    pub fn set_muted(&self, muted: bool) {
        // The task may be finishing; a command it cannot take no longer matters.
        let _ = self.commands.send(Command::Mute(muted));
    }

    /// Turns the camera off (no pictures are sent, the preview stops) or
    /// back on.
    pub fn set_camera(&self, on: bool) {
        let _ = self.commands.send(Command::Camera(on));
    }

    /// Hangs up (or cancels while it rings). The task reports the end.
    pub fn hang_up(&self) {
        let _ = self.commands.send(Command::HangUp);
    }
}

impl Bridge {
    /// Starts a call task, a video call when `video` is given; `on_update`
    /// runs on the UI thread with each of its reports, the last one being
    /// `Ended` or `Failed`.
    pub fn start_call(
        &self,
        start: CallStart,
        audio: Arc<dyn CallAudio>,
        video: Option<CallVideoSetup>,
        on_update: impl Fn(CallUpdate) + Send + Sync + 'static,
    ) -> CallControl {
        let (commands, rx) = mpsc::unbounded_channel();
        let on_update = Arc::new(on_update);
        let report = move |update: CallUpdate| {
            let on_update = on_update.clone();
            to_ui(move || on_update(update));
        };
        let client = self.current();
        self.runtime.spawn(async move {
            match client {
                Some(client) => run_call(client, start, audio, video, rx, report).await,
                None => report(CallUpdate::Failed("not connected".into())),
            }
        });
        CallControl { commands }
    }
}

async fn run_call(
    client: Client,
    start: CallStart,
    audio: Arc<dyn CallAudio>,
    video: Option<CallVideoSetup>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    report: impl Fn(CallUpdate),
) {
    let opened = tokio::task::spawn_blocking(move || audio.open()).await;
    let Ok(OpenedAudio {
        microphone,
        speaker,
        note,
    }) = opened
    else {
        return report(CallUpdate::Failed("the audio devices could not be opened".into()));
    };
    let camera = Arc::new(AtomicBool::new(true));
    let pipe = video.as_ref().map(|v| v.pipe.clone());
    let (media, video_note) = match video {
        Some(CallVideoSetup { video, pipe }) => {
            let Ok(OpenedVideo { source, note }) = tokio::task::spawn_blocking(move || video.open()).await
            else {
                return report(CallUpdate::Failed("the camera could not be opened".into()));
            };
            let source = pipe.preview(source, camera.clone());
            (Some(VideoMedia::new(source, pipe.sink())), note)
        }
        None => (None, None),
    };
    let options = CallOptions::default();
    let setup = async {
        match (start, media) {
            (CallStart::Place { conv_id }, None) => {
                VoiceCall::place(&client, conv_id, microphone, speaker, options).await
            }
            (CallStart::Place { conv_id }, Some(media)) => {
                VoiceCall::place_video(&client, conv_id, microphone, speaker, media, options).await
            }
            (CallStart::Answer { call_id }, None) => {
                VoiceCall::answer(&client, call_id, microphone, speaker, options).await
            }
            (CallStart::Answer { call_id }, Some(media)) => {
                VoiceCall::answer_video(&client, call_id, microphone, speaker, media, options).await
            }
        }
    };
    tokio::pin!(setup);
    // Commands that arrive while the call is being set up wait for it: a
    // cancel cannot reach the server before the call has an id.
    let mut muted = false;
    let mut camera_on = true;
    let mut hang_up = false;
    let mut listening = true;
    let outcome = loop {
        tokio::select! {
            result = &mut setup => break result,
            command = commands.recv(), if listening => match command {
                Some(Command::Mute(m)) => muted = m,
                Some(Command::Camera(on)) => {
                    // The preview obeys at once; the call, once it exists.
                    camera_on = on;
                    camera.store(on, Ordering::Relaxed);
                }
                Some(Command::HangUp) => hang_up = true,
                None => {
                    listening = false;
                    hang_up = true;
                }
            },
        }
    };
    let call = match outcome {
        Ok(call) => call,
        Err(e) => {
            close(pipe.as_ref());
            return report(CallUpdate::Failed(failure(&e)));
        }
    };
    call.set_muted(muted);
    set_camera(&call, &camera, camera_on);
    if !hang_up {
        report(CallUpdate::Started {
            call_id: call.call_id(),
            phase: call.phase(),
            note,
            video_note,
        });
        hang_up = follow(&call, &camera, &mut commands, &report).await;
    }
    close(pipe.as_ref());
    let finished = if hang_up {
        call.hang_up().await
    } else {
        call.finish().await
    };
    match finished {
        Ok(finished) => report(CallUpdate::Ended(finished.end)),
        Err(e) => report(CallUpdate::Failed(failure(&e))),
    }
}

/// Pictures still on their way once the call is over are not shown.
fn close(pipe: Option<&VideoPipe>) {
    if let Some(pipe) = pipe {
        pipe.close();
    }
}

/// The camera side of the call and the preview go off and on together.
fn set_camera(call: &VoiceCall<Speaker>, preview: &AtomicBool, on: bool) {
    preview.store(on, Ordering::Relaxed);
    // False in a voice call, which has no camera to switch.
    let _ = call.set_camera(on);
}

/// A short sentence for the call window.
fn failure(error: &VoiceError) -> String {
    match error {
        VoiceError::Signalling(e) => crate::app::describe(e),
        VoiceError::ConnectTimeout(_) => "no audio connection to the server".into(),
        VoiceError::NoMedia => "the server does not relay calls".into(),
        other => other.to_string(),
    }
}

/// Reports phases and statistics until the call ends (false) or the window
/// hangs up (true).
async fn follow(
    call: &VoiceCall<Speaker>,
    camera: &AtomicBool,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    report: &impl Fn(CallUpdate),
) -> bool {
    let mut phases = call.phases();
    let mut tick = tokio::time::interval(STATS_EVERY);
    loop {
        tokio::select! {
            changed = phases.changed() => {
                if changed.is_err() {
                    // The client closed: the call cannot go on.
                    return false;
                }
                let phase = *phases.borrow_and_update();
                match phase {
                    CallPhase::Ringing => {}
                    CallPhase::Connected => report(CallUpdate::Connected),
                    CallPhase::Ended(_) => return false,
                }
            }
            _ = tick.tick() => report(CallUpdate::Stats(Box::new(call.stats()))),
            command = commands.recv() => match command {
                Some(Command::Mute(muted)) => call.set_muted(muted),
                Some(Command::Camera(on)) => set_camera(call, camera, on),
                Some(Command::HangUp) | None => return true,
            },
        }
    }
}
