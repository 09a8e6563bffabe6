//! Voice and video calls: the call buttons in a direct chat, the incoming
//! ring, and the call window through its stages (calling, incoming,
//! joining, connected, ended). The call itself runs on the runtime
//! (`bridge::call`); this side only shows what it reports, the pictures the
//! video pipe hands over, and forwards the user's buttons.

use std::time::{Duration, Instant};

use parley_client::pb;
use slint::{ComponentHandle, Image, ModelRc};

use super::{App, with_app};
use crate::bridge::{CallControl, CallStart, CallUpdate, CallVideoSetup};
use crate::video::{Picture, PipeCounts, Stream, VideoPipe};
use crate::{CallFigures, Main, Theme, VideoFigures, calls, format};

/// How long the outcome stays on screen before the window closes.
const ENDED_SHOWN: Duration = Duration::from_secs(2);

/// The call window's size when a call begins (logical pixels), like a phone
/// held upright.
const CALL_WINDOW_SIZE: slint::LogicalSize = slint::LogicalSize {
    width: 360.0,
    height: 560.0,
};

/// The video call window's size, and its width with the chat beside the
/// picture.
const VIDEO_WINDOW_SIZE: slint::LogicalSize = slint::LogicalSize {
    width: 978.0,
    height: 642.0,
};
const VIDEO_WITH_CHAT_WIDTH: f32 = 1316.0;

/// No picture from the other side for this long: their camera is off (or
/// the pictures stall), and their avatar shows instead of a frozen picture.
const PICTURE_GONE: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Calling,
    Incoming,
    Joining,
    Connected,
    Ended,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Calling => "calling",
            Stage::Incoming => "incoming",
            Stage::Joining => "joining",
            Stage::Connected => "connected",
            Stage::Ended => "ended",
        }
    }
}

/// The call this device shows (at most one).
pub(crate) struct ActiveCall {
    /// Local number of this call: reports of an earlier call are ignored.
    serial: u64,
    /// The server's id (0 while an outgoing call is being placed).
    call_id: i64,
    peer_id: i64,
    outgoing: bool,
    stage: Stage,
    control: Option<CallControl>,
    connected_at: Option<Instant>,
    muted: bool,
    /// The call's conversation (for the chat beside the picture).
    conv_id: i64,
    /// A video call (an incoming one answered as voice only is not).
    video: bool,
    camera_on: bool,
    /// Carries the pictures of a video call to the window.
    pipe: Option<VideoPipe>,
    /// When the other side's last picture was shown.
    last_picture: Option<Instant>,
    /// Pictures sent by the previous statistics snapshot, and when it came.
    sent: Option<(u64, Instant)>,
}

impl App {
    pub(crate) fn bind_call_callbacks(&self) {
        let main = self.ui.global::<Main>();
        main.on_start_call(|| with_app(|app| app.start_call(false)));
        main.on_start_video_call(|| with_app(|app| app.start_call(true)));
        main.on_show_call(|| with_app(|app| app.show_call_window()));
        main.on_choose_devices(|| with_app(|app| app.choose_devices()));
        let window = &self.call_window;
        window.on_accept(|| with_app(|app| app.accept_call()));
        window.on_decline(|| with_app(|app| app.decline_call()));
        window.on_hang_up(|| with_app(|app| app.hang_up_call()));
        window.on_toggle_mute(|| with_app(|app| app.toggle_mute()));
        window.on_accept_voice(|| with_app(|app| app.accept_as_voice()));
        window.on_toggle_camera(|| with_app(|app| app.toggle_camera()));
        window.on_toggle_fullscreen(|| with_app(|app| app.toggle_fullscreen()));
        window.on_toggle_chat(|| with_app(|app| app.toggle_call_chat()));
        window.on_send_chat(|| with_app(|app| app.send_call_chat()));
        window.on_show_call_chat(|| with_app(|app| app.open_call_conversation()));
        window.set_messages(ModelRc::from(self.messages.clone()));
        window.window().on_close_requested(|| {
            with_app(|app| app.call_window_closed());
            slint::CloseRequestResponse::HideWindow
        });
    }

    /// Whether the open chat's call button can be used.
    pub(crate) fn refresh_call_button(&self) {
        let enabled = !self.in_call() && self.open_peer().is_some();
        self.ui.global::<Main>().set_call_enabled(enabled);
    }

    /// Whether a call is ringing or running (one that has ended and only
    /// shows its outcome does not count).
    fn in_call(&self) -> bool {
        self.state
            .borrow()
            .call
            .as_ref()
            .is_some_and(|c| c.stage != Stage::Ended)
    }

    /// The other member of the open chat, if it is a direct chat with
    /// someone not blocked.
    fn open_peer(&self) -> Option<(i64, i64)> {
        let state = self.state.borrow();
        let id = state.open?;
        let c = state.conversations.get(id)?;
        let peer = c.info.peer_id;
        let direct = c.info.kind() == pb::ConversationKind::Direct;
        (direct && peer != 0 && !self.people.borrow().is_blocked(peer)).then_some((id, peer))
    }

    /// Calls the other member of the open chat, with video or without.
    pub(crate) fn start_call(&self, video: bool) {
        if self.in_call() {
            return self.show_call_window();
        }
        let Some((conv_id, peer_id)) = self.open_peer() else {
            return;
        };
        let serial = self.new_call(0, peer_id, conv_id, true, video, Stage::Calling);
        let setup = self.video_setup(serial);
        let control = self.bridge.start_call(
            CallStart::Place { conv_id },
            self.call_audio(),
            setup,
            move |update| with_app(|app| app.call_update(serial, update)),
        );
        self.with_call(serial, |call| call.control = Some(control));
        self.set_call_status("Calling…");
    }

    /// The picture side of call `serial`, if it is a video call: a pipe
    /// whose pictures land in this window while the call is the one shown.
    fn video_setup(&self, serial: u64) -> Option<CallVideoSetup> {
        let video = self.state.borrow().call.as_ref().is_some_and(|c| c.video);
        if !video {
            return None;
        }
        let pipe = VideoPipe::new(self.bridge.runtime(), move |stream, picture| {
            with_app(|app| app.show_picture(serial, stream, picture))
        });
        self.with_call(serial, |call| call.pipe = Some(pipe.clone()));
        Some(CallVideoSetup {
            video: self.call_video(),
            pipe,
        })
    }

    fn show_picture(&self, serial: u64, stream: Stream, picture: Picture) {
        let mut state = self.state.borrow_mut();
        let Some(call) = state.call.as_mut().filter(|c| c.serial == serial) else {
            return;
        };
        if call.stage == Stage::Ended {
            return;
        }
        let image = Image::from_rgba8(picture);
        let window = &self.call_window;
        match stream {
            Stream::Remote => {
                call.last_picture = Some(Instant::now());
                window.set_remote_frame(image);
                window.set_remote_live(true);
            }
            Stream::Preview if call.camera_on => {
                window.set_preview_frame(image);
                window.set_preview_live(true);
            }
            Stream::Preview => {}
        }
    }

    /// How many pictures the shown call's pipe carried (for tests).
    pub fn video_counts(&self) -> Option<PipeCounts> {
        let state = self.state.borrow();
        state.call.as_ref()?.pipe.as_ref().map(VideoPipe::counts)
    }

    /// Someone calls: ring, unless a call is already on screen (the server
    /// does not ring a user who is in a call; a second ring while one is
    /// shown simply goes unanswered).
    pub(crate) fn on_call_incoming(&self, info: pb::CallInfo) {
        if self.in_call() {
            return;
        }
        let caller = info.caller_id;
        let video = info.kind() == pb::MediaKind::Video;
        self.want_profiles([caller]);
        self.want_avatar(caller);
        self.new_call(info.call_id, caller, info.conv_id, false, video, Stage::Incoming);
        self.set_call_status(if video {
            "Incoming video call"
        } else {
            "is calling you…"
        });
        let name = self.people.borrow().name(caller);
        crate::notify::incoming_call(&self.bridge, &name, video);
    }

    /// The server's word on a call this window shows but no call task
    /// follows (a ring not yet answered here).
    pub(crate) fn on_call_ended(&self, ended: pb::CallEnded) {
        let serial = {
            let state = self.state.borrow();
            match &state.call {
                Some(call)
                    if call.call_id == ended.call_id
                        && matches!(call.stage, Stage::Incoming | Stage::Joining) =>
                {
                    call.serial
                }
                _ => return,
            }
        };
        let end = parley_voice::CallEnd::from(ended);
        self.end_call(serial, calls::outcome_text(Some(&end), false));
    }

    /// Another of the user's devices took (or declined) the ring.
    pub(crate) fn on_call_answered_elsewhere(&self, answered: pb::CallAnsweredElsewhere) {
        let serial = match &self.state.borrow().call {
            Some(call) if call.call_id == answered.call_id && call.stage == Stage::Incoming => call.serial,
            _ => return,
        };
        let text = if answered.accepted {
            "Answered on another device"
        } else {
            "Declined on another device"
        };
        self.end_call(serial, text.into());
    }

    /// Answers a video call without sending or showing pictures.
    fn accept_as_voice(&self) {
        let serial = match &self.state.borrow().call {
            Some(call) if call.stage == Stage::Incoming => call.serial,
            _ => return,
        };
        self.with_call(serial, |call| call.video = false);
        self.call_window.set_video(false);
        self.call_window.window().set_size(CALL_WINDOW_SIZE);
        self.accept_call();
    }

    fn accept_call(&self) {
        let (serial, call_id) = match &self.state.borrow().call {
            Some(call) if call.stage == Stage::Incoming => (call.serial, call.call_id),
            _ => return,
        };
        let setup = self.video_setup(serial);
        let control = self.bridge.start_call(
            CallStart::Answer { call_id },
            self.call_audio(),
            setup,
            move |update| with_app(|app| app.call_update(serial, update)),
        );
        self.with_call(serial, |call| {
            call.control = Some(control);
            call.stage = Stage::Joining;
        });
        self.set_call_stage(Stage::Joining);
        self.set_call_status("Connecting…");
    }

    fn decline_call(&self) {
        let (serial, call_id) = match &self.state.borrow().call {
            Some(call) if call.stage == Stage::Incoming => (call.serial, call.call_id),
            _ => return,
        };
        self.bridge.fire("declining a call", move |client| async move {
            client.answer_call(call_id, false, "").await.map(|_| ())
        });
        self.end_call(serial, "Declined".into());
    }

    /// Cancel while it rings, hang up once connected. The call task reports
    /// the end; until then the buttons wait.
    fn hang_up_call(&self) {
        let state = self.state.borrow();
        let Some(call) = &state.call else { return };
        match &call.control {
            Some(control) if call.stage != Stage::Ended => {
                control.hang_up();
                self.call_window.set_busy(true);
                self.call_window.set_status("Hanging up…".into());
            }
            _ => {}
        }
    }

    fn toggle_mute(&self) {
        let mut state = self.state.borrow_mut();
        let Some(call) = state.call.as_mut() else {
            return;
        };
        call.muted = !call.muted;
        if let Some(control) = &call.control {
            control.set_muted(call.muted);
        }
        self.call_window.set_muted(call.muted);
    }

    fn toggle_camera(&self) {
        let mut state = self.state.borrow_mut();
        let Some(call) = state.call.as_mut().filter(|c| c.video) else {
            return;
        };
        call.camera_on = !call.camera_on;
        if let Some(control) = &call.control {
            control.set_camera(call.camera_on);
        }
        self.call_window.set_camera_on(call.camera_on);
        // The next preview picture shows it is back; until then the corner
        // says the camera is starting rather than showing a stale picture.
        self.call_window.set_preview_live(false);
    }

    fn toggle_fullscreen(&self) {
        let fullscreen = !self.call_window.get_fullscreen();
        self.set_call_fullscreen(fullscreen);
    }

    fn set_call_fullscreen(&self, fullscreen: bool) {
        self.call_window.window().set_fullscreen(fullscreen);
        self.call_window.set_fullscreen(fullscreen);
    }

    /// Shows or hides the call's chat beside the picture. The panel shows
    /// the main window's open chat, so opening it opens the call's
    /// conversation there.
    fn toggle_call_chat(&self) {
        let show = !self.call_window.get_show_chat();
        if show {
            self.open_call_conversation();
        }
        self.call_window.set_show_chat(show);
        if !self.call_window.get_fullscreen() {
            let size = self.call_window.window().size();
            let scale = self.call_window.window().scale_factor();
            let width = if show {
                VIDEO_WITH_CHAT_WIDTH
            } else {
                VIDEO_WINDOW_SIZE.width
            };
            let height = size.height as f32 / scale;
            self.call_window.window().set_size(slint::LogicalSize::new(
                width,
                height.max(VIDEO_WINDOW_SIZE.height),
            ));
        }
    }

    /// Whether the main window shows another chat than the call's: the
    /// panel beside the picture then offers to go back to the call's
    /// instead of showing someone else's messages.
    pub(crate) fn refresh_call_chat(&self) {
        let elsewhere = {
            let state = self.state.borrow();
            state.call.as_ref().is_some_and(|c| state.open != Some(c.conv_id))
        };
        self.call_window.set_chat_elsewhere(elsewhere);
    }

    /// Opens the call's conversation in the main window, unless it is open.
    fn open_call_conversation(&self) {
        let conv_id = self.state.borrow().call.as_ref().map(|c| c.conv_id);
        if let Some(conv_id) = conv_id
            && self.state.borrow().open != Some(conv_id)
        {
            self.open_conversation(conv_id);
        }
    }

    /// Sends the call chat's draft to the call's conversation, through the
    /// main window's composer so it shows as pending like any message.
    fn send_call_chat(&self) {
        let text = self.call_window.get_draft();
        if text.trim().is_empty() {
            return;
        }
        self.open_call_conversation();
        // The call chat only ever sends: an edit under way in the main
        // window is left there as a plain draft.
        self.state.borrow_mut().editing = None;
        let main = self.ui.global::<Main>();
        main.set_editing(-1);
        let kept = main.get_draft();
        main.set_draft(text);
        self.send();
        main.set_draft(kept);
        self.call_window.set_draft("".into());
    }

    /// The window's close button: decline a ring, hang up a call.
    fn call_window_closed(&self) {
        let stage = self.state.borrow().call.as_ref().map(|c| c.stage);
        match stage {
            Some(Stage::Incoming) => self.decline_call(),
            Some(Stage::Ended) | None => self.clear_call(),
            Some(_) => self.hang_up_call(),
        }
    }

    fn call_update(&self, serial: u64, update: CallUpdate) {
        let stage = match &self.state.borrow().call {
            Some(call) if call.serial == serial => call.stage,
            _ => return,
        };
        if stage == Stage::Ended {
            return;
        }
        match update {
            CallUpdate::Started {
                call_id,
                phase,
                note,
                video_note,
            } => {
                self.with_call(serial, |call| call.call_id = call_id);
                self.call_window.set_note(note.unwrap_or_default().into());
                self.call_window
                    .set_video_note(video_note.unwrap_or_default().into());
                match phase {
                    parley_voice::CallPhase::Connected => self.call_connected(serial),
                    parley_voice::CallPhase::Ringing => self.set_call_status("Ringing…"),
                    // Ended before it began; the task's last report says how.
                    parley_voice::CallPhase::Ended(_) => {}
                }
            }
            CallUpdate::Connected => self.call_connected(serial),
            CallUpdate::Stats(stats) => {
                if stage == Stage::Connected {
                    self.call_window.set_figures(calls::figures(&stats));
                    let sent_fps = self.sent_fps(serial, &stats);
                    self.call_window
                        .set_video_figures(calls::video_figures(&stats, sent_fps));
                }
            }
            CallUpdate::Ended(end) => {
                let outgoing = self.state.borrow().call.as_ref().is_some_and(|c| c.outgoing);
                self.end_call(serial, calls::outcome_text(end.as_ref(), outgoing));
            }
            CallUpdate::Failed(reason) => {
                tracing::debug!("call failed: {reason}");
                self.end_call(serial, format!("Call failed: {reason}"));
            }
        }
    }

    /// Pictures per second sent since the previous snapshot.
    fn sent_fps(&self, serial: u64, stats: &parley_voice::CallStats) -> f64 {
        let Some(video) = stats.video else { return 0.0 };
        let now = Instant::now();
        let sent = video.send.frames_sent;
        let mut fps = 0.0;
        self.with_call(serial, |call| {
            if let Some((before, at)) = call.sent.replace((sent, now)) {
                let secs = now.duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    fps = sent.saturating_sub(before) as f64 / secs;
                }
            }
        });
        fps
    }

    fn call_connected(&self, serial: u64) {
        let mut first = false;
        self.with_call(serial, |call| {
            if call.stage != Stage::Connected {
                call.stage = Stage::Connected;
                call.connected_at = Some(Instant::now());
                first = true;
            }
        });
        if !first {
            return;
        }
        self.set_call_stage(Stage::Connected);
        self.call_window.set_figures(CallFigures::default());
        self.tick_call();
        self.call_timer
            .start(slint::TimerMode::Repeated, Duration::from_millis(250), || {
                with_app(|app| app.tick_call());
            });
    }

    /// Redraws the connected time (window and strip).
    fn tick_call(&self) {
        let (elapsed, peer, picture_gone) = {
            let state = self.state.borrow();
            let Some(call) = &state.call else { return };
            let Some(at) = call.connected_at else { return };
            let gone = call.last_picture.is_none_or(|t| t.elapsed() > PICTURE_GONE);
            (at.elapsed(), call.peer_id, gone)
        };
        if picture_gone && self.call_window.get_remote_live() {
            self.call_window.set_remote_live(false);
        }
        let timer = calls::timer_text(elapsed);
        let name = self.people.borrow().name(peer);
        self.ui
            .global::<Main>()
            .set_call_strip(format!("{name} · {timer} — back to the call").into());
        if self.call_window.get_status() != timer.as_str() && !self.call_window.get_busy() {
            self.call_window.set_status(timer.into());
        }
    }

    fn end_call(&self, serial: u64, outcome: String) {
        self.with_call(serial, |call| {
            call.stage = Stage::Ended;
            // The task has finished, or will hang up now that nobody steers it.
            call.control = None;
            if let Some(pipe) = call.pipe.take() {
                pipe.close();
            }
        });
        self.call_timer.stop();
        if self.call_window.get_fullscreen() {
            self.set_call_fullscreen(false);
        }
        self.call_window.set_remote_live(false);
        self.set_call_stage(Stage::Ended);
        self.call_window.set_busy(false);
        self.call_window.set_status(outcome.into());
        self.ui.global::<Main>().set_call_strip("".into());
        self.refresh_call_button();
        self.call_close_timer
            .start(slint::TimerMode::SingleShot, ENDED_SHOWN, move || {
                with_app(|app| {
                    let current = app.state.borrow().call.as_ref().map(|c| c.serial);
                    if current == Some(serial) {
                        app.clear_call();
                    }
                });
            });
    }

    /// Forgets the call and hides its window (hanging up if it still runs).
    pub(crate) fn clear_call(&self) {
        if let Some(pipe) = self.state.borrow_mut().call.take().and_then(|c| c.pipe) {
            pipe.close();
        }
        // The last pictures are not kept in memory until the next call.
        self.call_window.set_remote_frame(Image::default());
        self.call_window.set_preview_frame(Image::default());
        if self.call_window.get_fullscreen() {
            self.set_call_fullscreen(false);
        }
        self.call_timer.stop();
        self.call_close_timer.stop();
        self.ui.global::<Main>().set_call_strip("".into());
        if let Err(e) = self.call_window.hide() {
            tracing::debug!("hiding the call window: {e}");
        }
        self.refresh_call_button();
    }

    /// Brings the call window back (from the strip or the call button).
    fn show_call_window(&self) {
        if self.state.borrow().call.is_none() {
            return;
        }
        self.call_window
            .global::<Theme>()
            .set_dark(self.ui.global::<Theme>().get_dark());
        if let Err(e) = self.call_window.show() {
            tracing::warn!("cannot show the call window: {e}");
        }
    }

    /// Starts showing a new call in the window; returns its serial.
    fn new_call(
        &self,
        call_id: i64,
        peer_id: i64,
        conv_id: i64,
        outgoing: bool,
        video: bool,
        stage: Stage,
    ) -> u64 {
        let serial = {
            let mut state = self.state.borrow_mut();
            state.call_serial += 1;
            let serial = state.call_serial;
            state.call = Some(ActiveCall {
                serial,
                call_id,
                peer_id,
                outgoing,
                stage,
                control: None,
                connected_at: None,
                muted: false,
                conv_id,
                video,
                camera_on: true,
                pipe: None,
                last_picture: None,
                sent: None,
            });
            serial
        };
        self.call_close_timer.stop();
        let window = &self.call_window;
        window.set_muted(false);
        window.set_busy(false);
        window.set_note("".into());
        window.set_figures(CallFigures::default());
        window.set_video(video);
        window.set_camera_on(true);
        window.set_remote_live(false);
        window.set_preview_live(false);
        window.set_show_chat(false);
        window.set_show_stats(false);
        window.set_video_note("".into());
        window.set_video_figures(VideoFigures::default());
        window.set_draft("".into());
        self.refresh_call_chat();
        self.set_call_stage(stage);
        self.refresh_call_peer();
        self.refresh_call_button();
        window.window().set_size(if video {
            VIDEO_WINDOW_SIZE
        } else {
            CALL_WINDOW_SIZE
        });
        self.show_call_window();
        serial
    }

    /// Name and avatar of the other side (again once a profile or avatar
    /// arrives).
    pub(crate) fn refresh_call_peer(&self) {
        let Some(peer) = self.state.borrow().call.as_ref().map(|c| c.peer_id) else {
            return;
        };
        let name = self.people.borrow().name(peer);
        let avatar = self.state.borrow().avatars.get(&peer).cloned();
        let window = &self.call_window;
        window.set_peer_initials(format::initials(&name).into());
        window.set_peer_name(name.into());
        window.set_peer_tint(format::tint(peer));
        window.set_peer_has_picture(avatar.is_some());
        window.set_peer_picture(avatar.unwrap_or_default());
    }

    /// Lists the sound devices (on a worker thread: the sound system may be
    /// slow to answer) for the choice in the profile window.
    pub(crate) fn load_devices(&self) {
        self.bridge
            .blocking(crate::audio::device_names, |(microphones, speakers)| {
                with_app(|app| app.show_devices(microphones, speakers))
            });
    }

    fn show_devices(&self, microphones: Vec<String>, speakers: Vec<String>) {
        let main = self.ui.global::<Main>();
        let (microphone, speaker) = {
            let prefs = &self.state.borrow().prefs;
            (prefs.microphone.clone(), prefs.speaker.clone())
        };
        let (list, index) = device_choice(microphones, microphone.as_deref());
        main.set_microphones(list);
        main.set_microphone(index);
        let (list, index) = device_choice(speakers, speaker.as_deref());
        main.set_speakers(list);
        main.set_speaker(index);
    }

    /// Remembers the devices picked in the profile window for the next call.
    fn choose_devices(&self) {
        let main = self.ui.global::<Main>();
        let pick = |list: slint::ModelRc<slint::SharedString>, index: i32| {
            usize::try_from(index)
                .ok()
                .filter(|i| *i > 0)
                .and_then(|i| slint::Model::row_data(&list, i))
                .map(|name| name.to_string())
        };
        let microphone = pick(main.get_microphones(), main.get_microphone());
        let speaker = pick(main.get_speakers(), main.get_speaker());
        {
            let mut state = self.state.borrow_mut();
            state.prefs.microphone = microphone;
            state.prefs.speaker = speaker;
        }
        self.save_preferences();
    }

    fn with_call(&self, serial: u64, f: impl FnOnce(&mut ActiveCall)) {
        if let Some(call) = self.state.borrow_mut().call.as_mut()
            && call.serial == serial
        {
            f(call);
        }
    }

    fn set_call_stage(&self, stage: Stage) {
        self.call_window.set_stage(stage.name().into());
    }

    fn set_call_status(&self, text: &str) {
        self.call_window.set_status(text.into());
    }
}

/// The choices of one device list ("System default" first) and the row of
/// the saved one (a saved device that is gone shows as the default).
fn device_choice(names: Vec<String>, saved: Option<&str>) -> (slint::ModelRc<slint::SharedString>, i32) {
    let index = saved
        .and_then(|saved| names.iter().position(|n| n == saved))
        .map_or(0, |i| i as i32 + 1);
    let rows: Vec<slint::SharedString> = std::iter::once("System default".to_string())
        .chain(names)
        .map(Into::into)
        .collect();
    (slint::ModelRc::new(slint::VecModel::from(rows)), index)
}
