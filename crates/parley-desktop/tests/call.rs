//! Headless test of the call window against a real in-process server and
//! its media relay. The desktop user (Alice) sends a 440 Hz tone instead of
//! a microphone; Bob is an SDK client with a parley-voice call sending
//! 660 Hz.
//!
//! * Alice calls from the chat header: calling → connected (the timer runs,
//!   the figures say connected, Bob hears her tone), mute, Bob hangs up →
//!   "Call ended", the window closes.
//! * Bob calls: the window rings with Accept / Decline; Alice declines and
//!   Bob's call ends declined.
//! * Bob calls again: Alice accepts, then hangs up from the window.
//!
//! Screenshots of each stage, light and dark, go to `PARLEY_SCREENSHOT_DIR`
//! (default: the target's tmp dir, `call-screenshots/`).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use common::{WAIT, has_button, press, press_in_call, screenshot_of, shot_dir, start_server, wait_for, with};
use parley_client::{Client, pb};
use parley_desktop::audio::{CallAudio, Microphone, OpenedAudio, Speaker};
use parley_desktop::settings::ConfigDir;
use parley_desktop::{App, AuthState, Main, Page, Theme};
use parley_media::analysis::dominant_frequency;
use parley_media::{MemorySink, NullSink, ToneSource};
use parley_voice::{CallOptions, CallPhase, VoiceCall, next_incoming_call};
use slint::{ComponentHandle, Model};

/// Alice's audio: a tone, and her speaker is memory. `note` stands in for
/// the words of a machine without sound devices.
#[derive(Clone, Default)]
struct ToneAudio {
    note: Arc<Mutex<Option<String>>>,
}

impl CallAudio for ToneAudio {
    fn open(&self) -> OpenedAudio {
        OpenedAudio {
            microphone: Microphone::new(ToneSource::new(440.0, 0.3).expect("tone")),
            speaker: Speaker::new(MemorySink::new(30)),
            note: self.note.lock().expect("note").clone(),
        }
    }
}

/// What the test and the app share of Alice's audio.
static AUDIO: LazyLock<ToneAudio> = LazyLock::new(ToneAudio::default);

fn loopback() -> CallOptions {
    CallOptions {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..CallOptions::default()
    }
}

fn shot(name: &'static str) {
    screenshot_of(shot_dir("call-screenshots"), name, |app| {
        app.call_window().window()
    });
}

fn main_shot(name: &'static str) {
    screenshot_of(shot_dir("call-screenshots"), name, |app| app.window().window());
}

fn stage() -> String {
    with(|app| app.call_window().get_stage().to_string())
}

fn status() -> String {
    with(|app| app.call_window().get_status().to_string())
}

fn call_window_visible() -> bool {
    with(|app| app.call_window().window().is_visible())
}

fn wait_stage(expected: &'static str) {
    wait_for(&format!("the call window in stage {expected}"), move |app| {
        app.call_window().get_stage() == expected
    });
}

fn wait_closed() {
    wait_for("the call window to close", |app| {
        !app.call_window().window().is_visible()
    });
}

fn set_dark(dark: bool) {
    let is_dark = with(|app| app.window().global::<Theme>().get_dark());
    if is_dark != dark {
        press(if dark { "Dark theme" } else { "Light theme" });
    }
}

#[test]
fn desktop_voice_calls() {
    common::run(
        |runtime, config| {
            let app = App::start_with_audio(runtime, ConfigDir::at(config), Arc::new(AUDIO.clone()))
                .expect("app starts");
            app.window().show().expect("window shows");
        },
        scenario,
    );
}

fn scenario(rt: tokio::runtime::Handle, _config: std::path::PathBuf) {
    let server = rt.block_on(start_server());
    let (bob, bob_user) = rt.block_on(server.user("bob", "Bob Stone"));
    let (alice_sdk, alice) = rt.block_on(server.user("alice", "Alice Meyer"));
    let conv_id = rt
        .block_on(async {
            bob.send_friend_request(alice.id, "").await?;
            let request = alice_sdk.friend_requests().await?.incoming[0].id;
            alice_sdk.answer_friend_request(request, true).await?;
            let conv = bob.open_direct(alice.id).await?;
            bob.send_text(conv.id, "Got a minute? Easier to talk it through.")
                .await?;
            // Alice's calls ring on the desktop only.
            alice_sdk.close().await;
            Ok::<_, parley_client::ClientError>(conv.id)
        })
        .expect("friends with a chat");

    // --- Alice signs in on the desktop and opens the chat with Bob.
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
    wait_for("Bob's chat in the list", |app| {
        app.window().global::<Main>().get_conversations().row_count() == 1
    });
    with(|app| app.window().global::<Main>().invoke_open_conversation(0));
    wait_for("the call button", |app| {
        app.window().global::<Main>().get_call_enabled()
    });
    assert!(!call_window_visible(), "no call window before a call");

    // --- Alice calls Bob: calling, then connected.
    let mut bob_events = bob.events();
    press("Voice call");
    assert_eq!(stage(), "calling");
    assert!(call_window_visible());
    assert!(with(|app| has_button(app.call_window(), "Cancel")));
    assert!(!with(|app| app.window().global::<Main>().get_call_enabled()));
    let incoming = rt
        .block_on(async { tokio::time::timeout(WAIT, next_incoming_call(&mut bob_events)).await })
        .expect("Bob's phone rings")
        .expect("event stream open");
    assert_eq!(incoming.caller_id, alice.id);
    assert_eq!(incoming.conv_id, conv_id);
    wait_for("Ringing… at the caller", |app| {
        app.call_window().get_status() == "Ringing…"
    });
    assert_eq!(
        with(|app| app.call_window().get_peer_name().to_string()),
        "Bob Stone"
    );
    shot("calling");
    set_dark(true);
    shot("calling-dark");
    set_dark(false);

    let bob_call = rt
        .block_on(VoiceCall::answer(
            &bob,
            incoming.call_id,
            ToneSource::new(660.0, 0.3).expect("tone"),
            MemorySink::new(30),
            loopback(),
        ))
        .expect("Bob answers");
    wait_stage("connected");
    assert!(
        status().starts_with("00:0"),
        "the timer starts at zero: {}",
        status()
    );
    wait_for("figures of a connected call", |app| {
        let f = app.call_window().get_figures();
        f.up && f.link == "connected" && f.rtt.ends_with(" ms")
    });
    let first = Instant::now();
    wait_for("the timer to pass two seconds", |app| {
        let status = app.call_window().get_status();
        status.starts_with("00:") && status.as_str() >= "00:02"
    });
    assert!(
        first.elapsed() < Duration::from_secs(5),
        "the timer keeps real time"
    );
    wait_for("a bitrate both ways", |app| {
        let bitrate = app.call_window().get_figures().bitrate.to_string();
        !bitrate.starts_with("0 ") && !bitrate.contains("/ 0 ")
    });
    shot("connected");
    set_dark(true);
    shot("connected-dark");
    main_shot("main-during-call-dark");
    set_dark(false);
    assert!(
        with(|app| app
            .window()
            .global::<Main>()
            .get_call_strip()
            .contains("Bob Stone")),
        "the main window offers a way back to the call"
    );

    press_in_call("Mute");
    assert!(with(|app| app.call_window().get_muted()));
    wait_for("the figures to say muted", |app| {
        app.call_window().get_figures().link.contains("muted")
    });
    shot("connected-muted");
    press_in_call("Unmute");
    assert!(!with(|app| app.call_window().get_muted()));

    // Bob hangs up: the desktop shows how it ended, then closes the window.
    let finished = rt.block_on(bob_call.hang_up()).expect("Bob hangs up");
    let heard = dominant_frequency(finished.sink.samples()).expect("Bob heard something");
    assert!(
        (heard - 440.0).abs() < 5.0,
        "Bob heard {heard:.1} Hz from the desktop"
    );
    wait_stage("ended");
    assert!(
        status().starts_with("Call ended 00:0"),
        "the outcome names the duration: {}",
        status()
    );
    shot("ended");
    wait_closed();
    assert!(with(|app| app.window().global::<Main>().get_call_enabled()));
    assert_eq!(
        with(|app| app.window().global::<Main>().get_call_strip().to_string()),
        ""
    );

    // --- Bob calls; Alice declines.
    let mut bob_call = bob_places_call(&rt, &bob, conv_id);
    wait_stage("incoming");
    assert!(call_window_visible());
    assert!(with(|app| has_button(app.call_window(), "Accept")));
    assert!(with(|app| has_button(app.call_window(), "Decline")));
    assert_eq!(
        with(|app| app.call_window().get_peer_name().to_string()),
        "Bob Stone"
    );
    shot("incoming");
    set_dark(true);
    shot("incoming-dark");
    set_dark(false);
    press_in_call("Decline");
    assert_eq!(stage(), "ended");
    assert_eq!(status(), "Declined");
    let end = rt
        .block_on(async { tokio::time::timeout(WAIT, bob_call.ended()).await })
        .expect("Bob's call ends");
    assert_eq!(end.outcome, pb::CallOutcome::Declined);
    rt.block_on(bob_call.finish()).expect("Bob's media stops");
    wait_closed();

    // --- Bob calls again; Alice answers (on a machine without sound
    // devices, as the note says) and hangs up herself.
    const NO_DEVICES: &str = "No sound devices found: the call carries silence";
    *AUDIO.note.lock().expect("note") = Some(NO_DEVICES.into());
    let mut bob_call = bob_places_call(&rt, &bob, conv_id);
    wait_stage("incoming");
    press_in_call("Accept");
    wait_stage("connected");
    assert_eq!(with(|app| app.call_window().get_note().to_string()), NO_DEVICES);
    wait_for("figures of the answered call", |app| {
        let f = app.call_window().get_figures();
        f.up && f.rtt.ends_with(" ms") && !f.bitrate.starts_with("0 ")
    });
    shot("connected-no-devices");
    rt.block_on(async { tokio::time::timeout(WAIT, bob_call.wait_answered()).await })
        .expect("in time")
        .expect("answered");
    wait_for("the timer to run", |app| {
        app.call_window().get_status().as_str() >= "00:01"
    });
    press_in_call("Hang up");
    let end = rt
        .block_on(async { tokio::time::timeout(WAIT, bob_call.ended()).await })
        .expect("Bob's call ends");
    assert_eq!(end.outcome, pb::CallOutcome::Completed);
    assert!(end.duration >= Duration::from_secs(1));
    let finished = rt.block_on(bob_call.finish()).expect("Bob's media stops");
    assert!(
        finished.stats.receive.frames_played > 0,
        "Bob heard the answered call"
    );
    wait_stage("ended");
    assert!(status().starts_with("Call ended"), "{}", status());
    wait_closed();

    rt.block_on(bob.close());
    let _ = bob_user;
    rt.block_on(server.handle.shutdown());
}

/// Bob calls Alice; returns once his side is ringing.
fn bob_places_call(rt: &tokio::runtime::Handle, bob: &Client, conv_id: i64) -> VoiceCall<NullSink> {
    let call = rt
        .block_on(VoiceCall::place(
            bob,
            conv_id,
            ToneSource::new(660.0, 0.3).expect("tone"),
            NullSink::default(),
            loopback(),
        ))
        .expect("Bob calls");
    assert_eq!(call.phase(), CallPhase::Ringing);
    call
}
