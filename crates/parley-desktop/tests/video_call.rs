//! Headless test of the video call window against a real in-process server
//! and its media relay. The desktop user (Alice) sends a tone and a 320×180
//! test pattern instead of a microphone and a camera; Bob is an SDK client
//! with a parley-voice video call sending the same kind of pattern.
//!
//! * Alice video-calls from the chat header: calling → connected; Bob's
//!   pictures reach the window (counted, and the rendered window is not a
//!   black or uniform screen), her own picture shows in the corner, Bob
//!   sees hers; statistics, the chat beside the picture (a message sent
//!   from it reaches the conversation), full screen; camera off stops her
//!   pictures at Bob and on again brings them back; she hangs up.
//! * Bob video-calls: the window rings as a video call; Alice accepts and
//!   sees him; Bob hangs up.
//! * Bob video-calls again: Alice takes it as voice only (the phone-like
//!   window, no pictures either way) and hangs up.
//!
//! Screenshots (978×642, 1316×642 with the chat, light and dark) go to
//! `PARLEY_SCREENSHOT_DIR` (default: the target's tmp dir,
//! `video-call-screenshots/`).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use common::{WAIT, press, press_in_call, screenshot_of, shot_dir, start_server, wait_for, with};
use parley_client::pb;
use parley_desktop::audio::{CallAudio, Microphone, OpenedAudio, Speaker};
use parley_desktop::settings::ConfigDir;
use parley_desktop::video::{CallVideo, OpenedVideo};
use parley_desktop::{App, AuthState, Main, Page, Theme};
use parley_media::{MemorySink, NullSink, ToneSource};
use parley_video::{I420Frame, TestPatternSource};
use parley_voice::{
    CallOptions, ShownFrame, VideoMedia, VideoOptions, VideoSink, VoiceCall, next_incoming_call,
};
use slint::{ComponentHandle, Model};

/// Alice's audio: a tone, played into memory.
struct ToneAudio;

impl CallAudio for ToneAudio {
    fn open(&self) -> OpenedAudio {
        OpenedAudio {
            microphone: Microphone::new(ToneSource::new(440.0, 0.3).expect("tone")),
            speaker: Speaker::new(MemorySink::new(30)),
            note: None,
        }
    }
}

/// Alice's camera: a small test pattern, light enough for a 2-core machine
/// to encode and decode both directions in a debug build.
struct PatternVideo;

impl CallVideo for PatternVideo {
    fn open(&self) -> OpenedVideo {
        OpenedVideo {
            source: Box::new(TestPatternSource::new(320, 180, 15).expect("pattern")),
            note: Some("Test pattern instead of a camera".into()),
        }
    }
}

/// Counts the pictures Bob is shown.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicU64>);

impl VideoSink for Counting {
    fn show(&mut self, _picture: &I420Frame, _info: ShownFrame) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counting {
    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

static SHOWN_AT_BOB: LazyLock<Counting> = LazyLock::new(Counting::default);

fn options() -> CallOptions {
    CallOptions {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        video: VideoOptions {
            max_width: 320,
            max_height: 180,
            max_fps: 15,
            ..VideoOptions::default()
        },
        ..CallOptions::default()
    }
}

fn bob_media() -> VideoMedia {
    VideoMedia::new(
        TestPatternSource::new(320, 180, 15).expect("pattern"),
        SHOWN_AT_BOB.clone(),
    )
}

fn shot(name: &'static str) {
    screenshot_of(shot_dir("video-call-screenshots"), name, |app| {
        app.call_window().window()
    });
}

fn shot_both(name: &'static str, dark_name: &'static str) {
    shot(name);
    set_dark(true);
    shot(dark_name);
    set_dark(false);
}

fn set_dark(dark: bool) {
    let is_dark = with(|app| app.window().global::<Theme>().get_dark());
    if is_dark != dark {
        press(if dark { "Dark theme" } else { "Light theme" });
    }
}

fn wait_stage(expected: &'static str) {
    wait_for(&format!("the call window in stage {expected}"), move |app| {
        app.call_window().get_stage() == expected
    });
}

fn remote_pictures() -> u64 {
    with(|app| app.video_counts().map_or(0, |c| c.remote_out))
}

/// Renders the call window and measures the picture area (the middle of
/// the window, away from the overlays): the mean brightness and the spread
/// between the darkest and brightest probe.
fn probe_picture() -> (f64, u8, u8) {
    with(|app| {
        let snapshot = app.call_window().window().take_snapshot().expect("snapshot");
        let (w, h) = (snapshot.width() as usize, snapshot.height() as usize);
        let pixels = snapshot.as_slice();
        let mut sum = 0.0;
        let (mut lo, mut hi) = (u8::MAX, 0u8);
        let mut n = 0.0;
        for y in (h * 3 / 10..h * 6 / 10).step_by(7) {
            for x in (w / 4..w * 3 / 4).step_by(7) {
                let p = pixels[y * w + x];
                let luma = ((u32::from(p.r) * 3 + u32::from(p.g) * 6 + u32::from(p.b)) / 10) as u8;
                sum += f64::from(luma);
                lo = lo.min(luma);
                hi = hi.max(luma);
                n += 1.0;
            }
        }
        (sum / n, lo, hi)
    })
}

#[test]
fn desktop_video_calls() {
    common::run(
        |runtime, config| {
            let app = App::start_with_media(
                runtime,
                ConfigDir::at(config),
                Arc::new(ToneAudio),
                Arc::new(PatternVideo),
            )
            .expect("app starts");
            app.window().show().expect("window shows");
        },
        scenario,
    );
}

fn scenario(rt: tokio::runtime::Handle, _config: std::path::PathBuf) {
    let server = rt.block_on(start_server());
    let (bob, _bob_user) = rt.block_on(server.user("bob", "Bob Stone"));
    let (alice_sdk, alice) = rt.block_on(server.user("alice", "Alice Meyer"));
    let (carol, _) = rt.block_on(server.user("carol", "Carol Diaz"));
    let conv_id = rt
        .block_on(async {
            // A second chat, older than Bob's, to switch to during the call.
            carol.send_friend_request(alice.id, "").await?;
            let request = alice_sdk.friend_requests().await?.incoming[0].id;
            alice_sdk.answer_friend_request(request, true).await?;
            let conv = carol.open_direct(alice.id).await?;
            carol.send_text(conv.id, "Lunch tomorrow?").await?;
            bob.send_friend_request(alice.id, "").await?;
            let request = alice_sdk.friend_requests().await?.incoming[0].id;
            alice_sdk.answer_friend_request(request, true).await?;
            let conv = bob.open_direct(alice.id).await?;
            bob.send_text(conv.id, "Video? I'd like to show you the new office.")
                .await?;
            alice_sdk.close().await;
            Ok::<_, parley_client::ClientError>(conv.id)
        })
        .expect("friends with a chat");

    let address = server.address();
    with(move |app| {
        let auth = app.window().global::<AuthState>();
        auth.set_server(address.as_str().into());
        auth.set_username("alice".into());
        auth.set_password("password-alice".into());
        auth.invoke_login();
    });
    wait_for("the main window", |app| app.window().get_page() == Page::Main);
    press("OK");
    wait_for("Bob's and Carol's chats in the list", |app| {
        let rows = app.window().global::<Main>().get_conversations();
        rows.row_count() == 2 && rows.row_data(0).is_some_and(|c| c.title == "Bob Stone")
    });
    with(|app| app.window().global::<Main>().invoke_open_conversation(0));
    wait_for("the call buttons", |app| {
        app.window().global::<Main>().get_call_enabled()
    });

    screenshot_of(shot_dir("video-call-screenshots"), "chat-call-buttons", |app| {
        app.window().window()
    });

    // --- Alice video-calls Bob.
    let mut bob_events = bob.events();
    press("Video call");
    assert!(with(|app| app.call_window().get_video()));
    assert_eq!(with(|app| app.call_window().get_stage().to_string()), "calling");
    let incoming = rt
        .block_on(async { tokio::time::timeout(WAIT, next_incoming_call(&mut bob_events)).await })
        .expect("Bob's phone rings")
        .expect("event stream open");
    assert_eq!(incoming.kind(), pb::MediaKind::Video, "signalled as a video call");
    assert_eq!(incoming.conv_id, conv_id);
    wait_for("Ringing… at the caller", |app| {
        app.call_window().get_status() == "Ringing…"
    });
    wait_for("Alice's own picture while it rings", |app| {
        app.call_window().get_preview_live()
    });
    shot_both("video-calling", "video-calling-dark");

    let mut bob_call = rt
        .block_on(VoiceCall::answer_video(
            &bob,
            incoming.call_id,
            ToneSource::new(660.0, 0.3).expect("tone"),
            MemorySink::new(30),
            bob_media(),
            options(),
        ))
        .expect("Bob answers with video");
    wait_stage("connected");
    wait_for("more than ten of Bob's pictures in the window", |app| {
        app.video_counts().is_some_and(|c| c.remote_out > 10) && app.call_window().get_remote_live()
    });
    assert!(
        with(|app| app.call_window().get_preview_live()),
        "her own picture shows"
    );
    let (mean, lo, hi) = probe_picture();
    assert!(mean > 30.0, "the picture area is not black: mean {mean:.1}");
    assert!(hi - lo > 40, "the picture area is not uniform: {lo}..{hi}");
    wait_for("Alice's pictures at Bob", |_| SHOWN_AT_BOB.count() > 10);
    assert_eq!(
        with(|app| app.call_window().get_note().to_string()),
        "",
        "the tone stands in for a microphone without a note"
    );
    assert_eq!(
        with(|app| app.call_window().get_video_note().to_string()),
        "Test pattern instead of a camera"
    );
    wait_for("the timer to pass a second", |app| {
        app.call_window().get_status().as_str() >= "00:01"
    });
    shot_both("video-connected", "video-connected-dark");

    // Statistics over the picture.
    press_in_call("Statistics");
    assert!(with(|app| app.call_window().get_show_stats()));
    wait_for("video figures both ways", |app| {
        let f = app.call_window().get_video_figures();
        f.size_in == "320×180" && f.size_out == "320×180" && f.fps_in != "0"
    });
    wait_for("the round trip", |app| {
        app.call_window().get_figures().rtt.ends_with(" ms")
    });
    shot_both("video-stats", "video-stats-dark");
    press_in_call("Statistics");

    // The chat beside the picture: the call's conversation, and a message
    // sent from it.
    press_in_call("Chat");
    assert!(with(|app| app.call_window().get_show_chat()));
    wait_for("the window to widen for the chat", |app| {
        let size = app.call_window().window().size();
        let scale = app.call_window().window().scale_factor();
        (size.width as f32 / scale - 1316.0).abs() < 1.0
    });
    wait_for("Bob's message in the call chat", |app| {
        let rows = app.call_window().get_messages();
        (0..rows.row_count()).any(|i| rows.row_data(i).is_some_and(|m| m.text.contains("new office")))
    });
    with(|app| {
        app.call_window()
            .set_draft("Looks bright! Is that the river behind you?".into())
    });
    press_in_call("Send in call chat");
    assert_eq!(with(|app| app.call_window().get_draft().to_string()), "");
    wait_for("the message sent from the call chat", |app| {
        let rows = app.call_window().get_messages();
        (0..rows.row_count()).any(|i| {
            rows.row_data(i)
                .is_some_and(|m| m.mine && m.text.contains("river") && m.status >= 2)
        })
    });
    shot_both("video-chat", "video-chat-dark");
    // Another chat opened in the main window: the panel does not show its
    // messages as the call's, and offers the way back.
    assert!(!with(|app| app.call_window().get_chat_elsewhere()));
    with(|app| app.window().global::<Main>().invoke_open_conversation(1));
    assert!(with(|app| app.call_window().get_chat_elsewhere()));
    shot("video-chat-elsewhere");
    press_in_call("Back to the call chat");
    assert!(!with(|app| app.call_window().get_chat_elsewhere()));
    wait_for("the call's messages again", |app| {
        let rows = app.call_window().get_messages();
        (0..rows.row_count()).any(|i| rows.row_data(i).is_some_and(|m| m.text.contains("river")))
    });
    press_in_call("Close chat");
    assert!(!with(|app| app.call_window().get_show_chat()));

    // Full screen and back.
    press_in_call("Full screen");
    assert!(with(|app| app.call_window().get_fullscreen()));
    press_in_call("Exit full screen");
    assert!(!with(|app| app.call_window().get_fullscreen()));

    // Camera off: Bob stops getting pictures; on again: they come back.
    press_in_call("Camera off");
    assert!(!with(|app| app.call_window().get_camera_on()));
    std::thread::sleep(Duration::from_millis(800));
    let before = SHOWN_AT_BOB.count();
    std::thread::sleep(Duration::from_millis(1500));
    let after = SHOWN_AT_BOB.count();
    assert!(
        after - before <= 1,
        "no pictures reach Bob while the camera is off: {before} → {after}"
    );
    wait_for("the figures to say the camera is off", |app| {
        app.call_window().get_video_figures().size_out == "camera off"
    });
    assert!(
        with(|app| app.video_counts().is_some_and(|c| c.remote_out > 0)),
        "Bob's pictures keep coming"
    );
    shot("video-camera-off");
    press_in_call("Camera on");
    wait_for("Alice's pictures at Bob again", move |_| {
        SHOWN_AT_BOB.count() > after + 10
    });
    wait_for("her own picture again", |app| {
        app.call_window().get_preview_live()
    });
    let counted = remote_pictures();
    assert!(counted > 20, "Bob's pictures shown: {counted}");

    // Alice hangs up.
    press_in_call("Hang up");
    let end = rt
        .block_on(async { tokio::time::timeout(WAIT, bob_call.ended()).await })
        .expect("Bob's call ends");
    assert_eq!(end.outcome, pb::CallOutcome::Completed);
    let finished = rt.block_on(bob_call.finish()).expect("Bob's media stops");
    let video = finished.stats.video.expect("video figures");
    assert!(video.receive.video.frames_rendered > 20);
    wait_stage("ended");
    shot("video-ended");
    wait_for("the call window to close", |app| {
        !app.call_window().window().is_visible()
    });

    // --- Bob video-calls; Alice accepts with video.
    let mut bob_call = rt
        .block_on(VoiceCall::place_video(
            &bob,
            conv_id,
            ToneSource::new(660.0, 0.3).expect("tone"),
            NullSink::default(),
            bob_media(),
            options(),
        ))
        .expect("Bob calls with video");
    wait_stage("incoming");
    assert!(with(|app| app.call_window().get_video()));
    assert_eq!(
        with(|app| app.call_window().get_status().to_string()),
        "Incoming video call"
    );
    assert!(with(|app| common::has_button(app.call_window(), "Voice only")));
    assert!(with(|app| common::has_button(app.call_window(), "Decline")));
    shot_both("video-incoming", "video-incoming-dark");
    press_in_call("Accept");
    wait_stage("connected");
    rt.block_on(async { tokio::time::timeout(WAIT, bob_call.wait_answered()).await })
        .expect("in time")
        .expect("answered");
    wait_for("Bob's pictures in the answered call", |app| {
        app.video_counts().is_some_and(|c| c.remote_out > 10)
    });
    let end = rt.block_on(bob_call.hang_up()).expect("Bob hangs up").end;
    assert!(end.is_some());
    wait_stage("ended");
    wait_for("the call window to close", |app| {
        !app.call_window().window().is_visible()
    });

    // --- Bob video-calls again; Alice takes it as voice only.
    let mut bob_call = rt
        .block_on(VoiceCall::place_video(
            &bob,
            conv_id,
            ToneSource::new(660.0, 0.3).expect("tone"),
            NullSink::default(),
            bob_media(),
            options(),
        ))
        .expect("Bob calls with video");
    wait_stage("incoming");
    press_in_call("Voice only");
    assert!(!with(|app| app.call_window().get_video()), "the voice window");
    wait_stage("connected");
    assert!(with(|app| app.video_counts().is_none()), "no picture pipe");
    let before = SHOWN_AT_BOB.count();
    wait_for("the timer to run", |app| {
        app.call_window().get_status().as_str() >= "00:02"
    });
    assert_eq!(SHOWN_AT_BOB.count(), before, "Bob gets no pictures");
    shot("voice-only");
    press_in_call("Hang up");
    let end = rt
        .block_on(async { tokio::time::timeout(WAIT, bob_call.ended()).await })
        .expect("Bob's call ends");
    assert_eq!(end.outcome, pb::CallOutcome::Completed);
    rt.block_on(bob_call.finish()).expect("Bob's media stops");
    wait_for("the call window to close", |app| {
        !app.call_window().window().is_visible()
    });

    rt.block_on(bob.close());
    rt.block_on(carol.close());
    rt.block_on(server.handle.shutdown());
}
