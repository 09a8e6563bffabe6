//! Headless end-to-end test of the desktop client against a real in-process
//! server: register and sign in through the dialogs, accept a friend
//! request, chat with a second user driven by the SDK, send an image, manage
//! a group, switch theme, restart into the saved session — and save a
//! screenshot of every screen on the way.
//!
//! Slint's testing backend runs the event loop on this test's thread and
//! draws with the software renderer, so no display is needed (see
//! `common/mod.rs`).

mod common;

use std::path::{Path, PathBuf};

use common::{WAIT, on_ui, press, screenshot_of, shot_dir, start_server, type_into, wait_for, with};
use parley_client::{ClientEvent, pb};
use parley_desktop::app::with_app;
use parley_desktop::settings::ConfigDir;
use parley_desktop::{App, AuthState, Main, Page, Theme};
use slint::{ComponentHandle, Model};

fn screenshot(name: &'static str) {
    screenshot_of(shot_dir("screenshots"), name, |app| app.window().window());
}

fn page() -> Page {
    with(|app| app.window().get_page())
}

fn message_texts(app: &App) -> Vec<String> {
    let rows = app.window().global::<Main>().get_messages();
    (0..rows.row_count())
        .filter_map(|r| rows.row_data(r))
        .map(|m| m.text.to_string())
        .collect()
}

fn conversation_titles(app: &App) -> Vec<String> {
    let rows = app.window().global::<Main>().get_conversations();
    (0..rows.row_count())
        .filter_map(|r| rows.row_data(r))
        .map(|c| c.title.to_string())
        .collect()
}

/// A small picture to send: a sunset gradient.
fn write_png(path: &Path) {
    let image = image::RgbaImage::from_fn(480, 320, |x, y| {
        let t = y as f32 / 320.0;
        let sun = ((x as f32 - 240.0).powi(2) + (y as f32 - 200.0).powi(2)).sqrt() < 60.0;
        if sun {
            image::Rgba([255, 214, 90, 255])
        } else {
            image::Rgba([
                (250.0 - 120.0 * t) as u8,
                (140.0 - 60.0 * t) as u8,
                (90.0 + 100.0 * t) as u8,
                255,
            ])
        }
    });
    image.save(path).expect("test image written");
}

async fn next_text(events: &mut tokio::sync::broadcast::Receiver<ClientEvent>, text: &str) -> pb::Message {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(ClientEvent::Server(pb::event::Kind::Message(m))) if m.text == text => return m,
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("message arrives")
}

#[test]
fn desktop_client_end_to_end() {
    common::run(
        |runtime, config| {
            let app = App::start(runtime, ConfigDir::at(config)).expect("app starts");
            app.window().show().expect("window shows");
        },
        scenario,
    );
}

fn scenario(rt: tokio::runtime::Handle, config_path: PathBuf) {
    let server = rt.block_on(start_server());
    let address = server.address();
    let (bob, bob_user) = rt.block_on(server.user("bob", "Bob Stone"));
    let (carol, _) = rt.block_on(server.user("carol", "Carol Diaz"));

    // --- Sign-in dialog, then registration through the UI.
    assert_eq!(page(), Page::Login);
    let server_address = address.clone();
    with(move |app| {
        app.window()
            .global::<AuthState>()
            .set_server(server_address.as_str().into());
    });
    type_into("Username", "alice");
    screenshot("login");
    press("Sign in");
    wait_for("an inline error for the missing password", |app| {
        !app.window().global::<AuthState>().get_error().is_empty()
    });
    press("Create account");
    assert_eq!(page(), Page::Register);
    type_into("New username", "alice");
    type_into("Display name", "Alice Meyer");
    type_into("New password", "password-alice");
    type_into("Repeat password", "password-alice");
    screenshot("register");
    press("Register");
    wait_for("the main window", |app| app.window().get_page() == Page::Main);
    // First contact with this server: its fingerprint is shown.
    let fingerprint = with(|app| app.window().global::<Main>().get_server_fingerprint().to_string());
    let expected = server.handle.fingerprint.clone().unwrap_or_default();
    assert_eq!(
        fingerprint.replace(' ', ""),
        expected,
        "the trust dialog shows the server's fingerprint"
    );
    screenshot("trust");
    press("OK");

    // --- Friend requests: Bob and Carol ask, Alice accepts in the add-friend window.
    let alice_id = rt
        .block_on(bob.search_users("alice", 5, ""))
        .expect("search")
        .users
        .first()
        .map(|u| u.id)
        .expect("alice found");
    rt.block_on(bob.send_friend_request(alice_id, "Hi Alice, it's Bob from the climbing gym"))
        .expect("request");
    rt.block_on(carol.send_friend_request(alice_id, "Carol here — shall we plan the trip?"))
        .expect("request");
    wait_for("two pending requests", |app| {
        app.window().global::<Main>().get_pending_requests() == 2
    });
    press("Add friend");
    type_into("Find people", "c");
    press("Search");
    wait_for("search results", |app| {
        app.window().global::<Main>().get_search_results().row_count() > 0
    });
    screenshot("add-friend");
    press("Accept Bob Stone");
    press("Accept Carol Diaz");
    wait_for("Bob and Carol as friends", |app| {
        app.window().global::<Main>().get_friends().row_count() == 2
    });
    with(|app| app.window().global::<Main>().set_overlay("".into()));

    // --- Chat: Bob writes, Alice opens the chat, answers, Bob replies.
    let conversation = rt.block_on(bob.open_direct(alice_id)).expect("direct chat");
    let mut bob_events = bob.events();
    rt.block_on(bob.send_text(conversation.id, "Hey Alice! Are you coming climbing on Saturday?"))
        .expect("send");
    wait_for("Bob's chat in the list", |app| {
        conversation_titles(app).contains(&"Bob Stone".to_string())
    });
    wait_for("the unread badge", |app| {
        let rows = app.window().global::<Main>().get_conversations();
        (0..rows.row_count())
            .filter_map(|r| rows.row_data(r))
            .any(|c| c.unread == 1)
    });
    with(|app| {
        let row = conversation_titles(app)
            .iter()
            .position(|t| t == "Bob Stone")
            .expect("row");
        app.window().global::<Main>().invoke_open_conversation(row as i32);
    });
    wait_for("Bob's message", |app| {
        message_texts(app).contains(&"Hey Alice! Are you coming climbing on Saturday?".to_string())
    });
    type_into("Message", "Yes! I'll bring the rope 🙂");
    press("Send");
    let received = rt.block_on(next_text(&mut bob_events, "Yes! I'll bring the rope 🙂"));
    assert_eq!(received.sender_id, alice_id);
    rt.block_on(bob.send_text(conversation.id, "Perfect, see you at 10 at the north wall."))
        .expect("reply");
    wait_for("Bob's reply in the chat", |app| {
        message_texts(app).contains(&"Perfect, see you at 10 at the north wall.".to_string())
    });
    rt.block_on(bob.mark_read(conversation.id, received.seq))
        .expect("read");

    // --- An image: uploaded, sent, shown as a thumbnail.
    let picture = config_dir_file(&config_path, "sunset.png");
    write_png(&picture);
    with(move |app| app.send_paths(vec![picture]));
    wait_for("the image thumbnail", |app| {
        let rows = app.window().global::<Main>().get_messages();
        (0..rows.row_count())
            .filter_map(|r| rows.row_data(r))
            .any(|m| m.kind == 1 && m.has_picture)
    });
    rt.block_on(bob.typing(conversation.id)).expect("typing");
    wait_for("the typing indicator", |app| {
        app.window().global::<Main>().get_chat_typing()
    });
    screenshot("chat");

    // --- Contacts with a remark; profile editing.
    press("Contacts");
    with(|app| {
        let main = app.window().global::<Main>();
        main.invoke_open_friend(0);
    });
    type_into("Remark", "Bob (climbing)");
    with(|app| app.window().global::<Main>().invoke_save_remark());
    wait_for("the remark in the list", |app| {
        let rows = app.window().global::<Main>().get_friends();
        (0..rows.row_count())
            .filter_map(|r| rows.row_data(r))
            .any(|p| p.title == "Bob (climbing)")
    });
    screenshot("contacts");
    press("My profile");
    type_into("Status line", "Out climbing ⛰ back Monday");
    screenshot("profile");
    press("Save");
    wait_for("the saved status", |app| {
        app.window().global::<Main>().get_me_status() == "Out climbing ⛰ back Monday"
    });

    // --- A group Bob creates: members window.
    let group = rt
        .block_on(async {
            let carol_id = carol.user().map(|u| u.id).unwrap_or_default();
            bob.send_friend_request(carol_id, "").await.ok();
            let requests = carol.friend_requests().await?;
            for request in requests.incoming {
                carol.answer_friend_request(request.id, true).await?;
            }
            let group = bob
                .create_group("Saturday climbing", &[alice_id, carol_id])
                .await?;
            bob.send_text(group.id, "Who's driving?").await?;
            carol.send_text(group.id, "I can take three people").await?;
            Ok::<_, parley_client::ClientError>(group)
        })
        .expect("group");
    press("Chats");
    wait_for("the group in the list", |app| {
        conversation_titles(app).contains(&"Saturday climbing".to_string())
    });
    with(|app| {
        let row = conversation_titles(app)
            .iter()
            .position(|t| t == "Saturday climbing")
            .expect("row");
        app.window().global::<Main>().invoke_open_conversation(row as i32);
    });
    wait_for("group messages", |app| {
        message_texts(app).contains(&"I can take three people".to_string())
    });
    press("Group members");
    wait_for("three members", |app| {
        app.window().global::<Main>().get_members().row_count() == 3
    });
    screenshot("group-members");
    with(|app| app.window().global::<Main>().set_overlay("".into()));
    let _ = group;

    // --- Dark theme on the chat with Bob; About with AboutSlint.
    with(|app| {
        let row = conversation_titles(app)
            .iter()
            .position(|t| t == "Bob (climbing)")
            .expect("row");
        app.window().global::<Main>().invoke_open_conversation(row as i32);
    });
    wait_for("Bob's chat again", |app| {
        message_texts(app).contains(&"Perfect, see you at 10 at the north wall.".to_string())
    });
    wait_for("the image thumbnail again", |app| {
        let rows = app.window().global::<Main>().get_messages();
        (0..rows.row_count())
            .filter_map(|r| rows.row_data(r))
            .any(|m| m.kind == 1 && m.has_picture)
    });
    press("Dark theme");
    assert!(with(|app| app.window().global::<Theme>().get_dark()));
    screenshot("chat-dark");
    press("About");
    screenshot("about-dark");
    press("Close");
    press("Light theme");

    // --- Restart: the saved session goes straight to the main window.
    let restart_config = config_path.clone();
    let restart_rt = rt.clone();
    on_ui(move || {
        with_app(|app| {
            app.window().hide().ok();
            app.shut_down();
        });
        let app = App::start(restart_rt, ConfigDir::at(restart_config)).expect("app restarts");
        app.window().show().expect("window shows");
    });
    wait_for("the main window after a restart", |app| {
        app.window().get_page() == Page::Main
    });
    wait_for("the chats after a restart", |app| {
        conversation_titles(app).len() == 2
    });

    rt.block_on(async {
        bob.close().await;
        carol.close().await;
    });
    let _ = bob_user;
    rt.block_on(server.handle.shutdown());
}

fn config_dir_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
