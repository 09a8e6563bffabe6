//! The controller: owns the window and the view-models, reacts to the
//! user's clicks and to the server's events, and asks the [`Bridge`] for
//! everything that touches the network.
//!
//! It lives on the UI thread only (`Rc`, `RefCell`, thread-local handle):
//! results of background work reach it through [`with_app`] from closures
//! the bridge runs on the event loop.

mod auth;
mod call;
mod chat;
mod contacts;
mod events;
mod groups;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_client::{ClientError, pb};
use slint::{ComponentHandle, Image, Model, ModelRc, VecModel};

use crate::audio::{CallAudio, DeviceAudio};
use crate::bridge::Bridge;
use crate::conversations::Conversations;
use crate::messages::MessageModel;
use crate::people::People;
use crate::settings::{ConfigDir, Preferences};
use crate::video::{CallVideo, DeviceVideo};
use crate::{AppWindow, AuthState, CallWindow, ConversationItem, Main, Page, PersonRow, Theme, format};

thread_local! {
    static APP: RefCell<Option<Rc<App>>> = const { RefCell::new(None) };
}

/// Runs `f` with the app of this (UI) thread, if it is still running.
pub fn with_app(f: impl FnOnce(&Rc<App>)) {
    let app = APP.with(|slot| slot.borrow().clone());
    if let Some(app) = app {
        f(&app);
    }
}

/// Window sizes of the three pages (logical pixels).
const LOGIN_SIZE: (f32, f32) = (396.0, 291.0);
const REGISTER_SIZE: (f32, f32) = (420.0, 300.0);
const MAIN_SIZE: (f32, f32) = (1180.0, 760.0);

/// How long a typing notice is shown without a new one.
const TYPING_SHOWN: i64 = 5_000;

/// Mutable state behind the controller.
#[derive(Default)]
pub(crate) struct State {
    pub prefs: Preferences,
    pub server: String,
    pub me: Option<pb::User>,
    pub conversations: Conversations,
    /// Conversation ids in list order (row → id).
    pub rows: Vec<i64>,
    pub open: Option<i64>,
    pub history_more: bool,
    pub history_loading: bool,
    pub last_typing_sent: Option<Instant>,
    /// Seq of the message being edited.
    pub editing: Option<i64>,
    /// Friend ids in list order.
    pub friend_rows: Vec<i64>,
    pub current_friend: Option<i64>,
    pub search_results: Vec<pb::User>,
    pub requests: Vec<(pb::FriendRequest, bool)>,
    pub members: Vec<pb::Member>,
    pub invitable: Vec<i64>,
    pub chosen: HashSet<i64>,
    pub avatars: HashMap<i64, Image>,
    pub avatar_loading: HashSet<i64>,
    pub profile_loading: HashSet<i64>,
    pub window_focused: bool,
    /// The call on screen, if any.
    pub call: Option<call::ActiveCall>,
    /// Numbers the calls shown, so a finished call's late reports are ignored.
    pub call_serial: u64,
}

/// The running desktop client.
pub struct App {
    pub(crate) ui: AppWindow,
    pub(crate) call_window: CallWindow,
    pub(crate) bridge: Bridge,
    /// Where calls take their audio from; `None`: the devices chosen in
    /// the preferences.
    audio: Option<Arc<dyn CallAudio>>,
    /// Where video calls take their pictures from (the camera, or what
    /// stands in for it).
    video: Arc<dyn CallVideo>,
    pub(crate) config: ConfigDir,
    pub(crate) state: RefCell<State>,
    pub(crate) people: Rc<RefCell<People>>,
    pub(crate) messages: Rc<MessageModel>,
    conversation_rows: Rc<VecModel<ConversationItem>>,
    friend_rows: Rc<VecModel<PersonRow>>,
    search_rows: Rc<VecModel<PersonRow>>,
    request_rows: Rc<VecModel<PersonRow>>,
    member_rows: Rc<VecModel<PersonRow>>,
    invitable_rows: Rc<VecModel<PersonRow>>,
    toast_timer: slint::Timer,
    tick_timer: slint::Timer,
    call_timer: slint::Timer,
    call_close_timer: slint::Timer,
}

impl App {
    /// Creates the window, restores preferences and either resumes the saved
    /// session or shows the sign-in dialog. The window is shown by the caller.
    /// Calls use the system's sound devices.
    pub fn start(
        runtime: tokio::runtime::Handle,
        config: ConfigDir,
    ) -> Result<Rc<App>, slint::PlatformError> {
        Self::launch(runtime, config, None, Arc::new(DeviceVideo))
    }

    /// Like [`App::start`], with calls taking their audio from `audio`
    /// (the headless tests send a tone and play into memory).
    pub fn start_with_audio(
        runtime: tokio::runtime::Handle,
        config: ConfigDir,
        audio: Arc<dyn CallAudio>,
    ) -> Result<Rc<App>, slint::PlatformError> {
        Self::launch(runtime, config, Some(audio), Arc::new(DeviceVideo))
    }

    /// Like [`App::start_with_audio`], with video calls sending the
    /// pictures of `video`.
    pub fn start_with_media(
        runtime: tokio::runtime::Handle,
        config: ConfigDir,
        audio: Arc<dyn CallAudio>,
        video: Arc<dyn CallVideo>,
    ) -> Result<Rc<App>, slint::PlatformError> {
        Self::launch(runtime, config, Some(audio), video)
    }

    fn launch(
        runtime: tokio::runtime::Handle,
        config: ConfigDir,
        audio: Option<Arc<dyn CallAudio>>,
        video: Arc<dyn CallVideo>,
    ) -> Result<Rc<App>, slint::PlatformError> {
        let ui = AppWindow::new()?;
        let call_window = CallWindow::new()?;
        let prefs = config.load_preferences().unwrap_or_else(|e| {
            tracing::warn!("{e}; using default preferences");
            Preferences::default()
        });
        let people = Rc::new(RefCell::new(People::default()));
        let app = Rc::new(App {
            messages: Rc::new(MessageModel::new(people.clone())),
            people,
            ui,
            call_window,
            bridge: Bridge::new(runtime),
            audio,
            video,
            config,
            state: RefCell::new(State {
                window_focused: true,
                ..State::default()
            }),
            conversation_rows: Rc::new(VecModel::default()),
            friend_rows: Rc::new(VecModel::default()),
            search_rows: Rc::new(VecModel::default()),
            request_rows: Rc::new(VecModel::default()),
            member_rows: Rc::new(VecModel::default()),
            invitable_rows: Rc::new(VecModel::default()),
            toast_timer: slint::Timer::default(),
            tick_timer: slint::Timer::default(),
            call_timer: slint::Timer::default(),
            call_close_timer: slint::Timer::default(),
        });
        APP.with(|slot| *slot.borrow_mut() = Some(app.clone()));
        app.bind_models();
        app.bind_callbacks();
        app.bind_call_callbacks();
        app.watch_focus();
        let main = app.ui.global::<Main>();
        main.set_version(env!("CARGO_PKG_VERSION").into());
        app.ui.global::<Theme>().set_dark(prefs.dark);
        let auth = app.ui.global::<AuthState>();
        auth.set_server(prefs.last_server.as_str().into());
        auth.set_username(prefs.last_user.as_str().into());
        if auth.get_server().is_empty() {
            auth.set_server(format!("localhost:{}", parley_client::DEFAULT_PORT).into());
        }
        app.state.borrow_mut().prefs = prefs;
        app.show_page(Page::Login);
        // Typing notices expire on their own; one slow tick keeps them honest.
        app.tick_timer
            .start(slint::TimerMode::Repeated, Duration::from_secs(1), || {
                with_app(|app| app.expire_typing());
            });
        app.resume_saved_session();
        Ok(app)
    }

    /// The window (for tests and `main`).
    pub fn window(&self) -> &AppWindow {
        &self.ui
    }

    /// The audio of the next call.
    pub(crate) fn call_audio(&self) -> Arc<dyn CallAudio> {
        if let Some(audio) = &self.audio {
            return audio.clone();
        }
        let prefs = &self.state.borrow().prefs;
        Arc::new(DeviceAudio {
            microphone: prefs.microphone.clone(),
            speaker: prefs.speaker.clone(),
        })
    }

    /// The picture source of the next video call.
    pub(crate) fn call_video(&self) -> Arc<dyn CallVideo> {
        self.video.clone()
    }

    /// The call window (for tests).
    pub fn call_window(&self) -> &CallWindow {
        &self.call_window
    }

    /// Drops the thread's app handle (tests that start a second app).
    pub fn shut_down(&self) {
        self.clear_call();
        self.bridge.disconnect(false);
        self.tick_timer.stop();
        APP.with(|slot| slot.borrow_mut().take());
    }

    fn bind_models(&self) {
        let main = self.ui.global::<Main>();
        main.set_conversations(ModelRc::from(self.conversation_rows.clone()));
        main.set_messages(ModelRc::from(self.messages.clone()));
        main.set_friends(ModelRc::from(self.friend_rows.clone()));
        main.set_search_results(ModelRc::from(self.search_rows.clone()));
        main.set_requests(ModelRc::from(self.request_rows.clone()));
        main.set_members(ModelRc::from(self.member_rows.clone()));
        main.set_invitable(ModelRc::from(self.invitable_rows.clone()));
    }

    fn bind_callbacks(&self) {
        let auth = self.ui.global::<AuthState>();
        auth.on_login(|| with_app(|app| app.login()));
        auth.on_register(|| with_app(|app| app.register()));
        auth.on_show_register(|| with_app(|app| app.show_page(Page::Register)));
        auth.on_show_login(|| with_app(|app| app.show_page(Page::Login)));

        let main = self.ui.global::<Main>();
        main.on_open_conversation(|row| with_app(|app| app.open_row(row)));
        main.on_filter_edited(|_| with_app(|app| app.refresh_conversations()));
        main.on_send(|| with_app(|app| app.send()));
        main.on_typing(|| with_app(|app| app.typed()));
        main.on_cancel_edit(|| with_app(|app| app.cancel_edit()));
        main.on_pick_image(|| with_app(|app| app.pick_and_send(true)));
        main.on_pick_file(|| with_app(|app| app.pick_and_send(false)));
        main.on_files_dropped(|data| {
            let paths: Vec<std::path::PathBuf> = match data.file_paths() {
                Ok(paths) => paths.map(|p| p.to_path_buf()).collect(),
                Err(_) => Vec::new(),
            };
            with_app(|app| app.send_paths(paths));
        });
        main.on_message_action(|row, action| with_app(|app| app.message_action(row, &action)));
        main.on_open_picture(|row| with_app(|app| app.open_picture(row)));
        main.on_file_action(|row, action| with_app(|app| app.file_action(row, &action)));
        main.on_load_older(|| with_app(|app| app.load_older()));
        main.on_scrolled(|y, content, visible| with_app(|app| app.scrolled(y, content, visible)));
        main.on_toggle_theme(|| with_app(|app| app.toggle_theme()));
        main.on_logout(|| with_app(|app| app.logout()));
        main.on_show_overlay(|which| with_app(|app| app.show_overlay(&which)));
        main.on_search_users(|| with_app(|app| app.search_users()));
        main.on_person_action(|list, row, action| with_app(|app| app.person_action(&list, row, &action)));
        main.on_open_friend(|row| with_app(|app| app.open_friend(row)));
        main.on_save_remark(|| with_app(|app| app.save_remark()));
        main.on_save_profile(|| with_app(|app| app.save_profile()));
        main.on_pick_avatar(|| with_app(|app| app.pick_avatar()));
        main.on_create_group(|| with_app(|app| app.create_group()));
        main.on_rename_group(|| with_app(|app| app.rename_group()));
        main.on_leave_group(|| with_app(|app| app.leave_group()));
    }

    /// Tracks whether the window has keyboard focus, for notifications.
    /// Only the winit backend reports it; elsewhere the window counts as
    /// focused and no notification is shown.
    fn watch_focus(&self) {
        use slint::winit_030::{EventResult, WinitWindowAccessor, winit};
        self.ui.window().on_winit_window_event(|_, event| {
            if let winit::event::WindowEvent::Focused(focused) = event {
                let focused = *focused;
                with_app(|app| app.state.borrow_mut().window_focused = focused);
            }
            EventResult::Propagate
        });
    }

    /// Switches between the sign-in, registration and main pages, resizing
    /// the window to suit.
    pub(crate) fn show_page(&self, page: Page) {
        self.ui.set_page(page);
        self.ui.global::<AuthState>().set_error("".into());
        let (w, h) = match page {
            Page::Login => LOGIN_SIZE,
            Page::Register => REGISTER_SIZE,
            Page::Main => MAIN_SIZE,
        };
        self.ui.window().set_size(slint::LogicalSize::new(w, h));
    }

    /// Shows a short message at the bottom of the window for a few seconds.
    pub(crate) fn toast(&self, text: impl Into<String>) {
        let text: String = text.into();
        self.ui.global::<Main>().set_toast(text.into());
        self.toast_timer
            .start(slint::TimerMode::SingleShot, Duration::from_secs(4), || {
                with_app(|app| app.ui.global::<Main>().set_toast("".into()));
            });
    }

    /// Reports a failed action as a toast.
    pub(crate) fn failed(&self, what: &str, error: &ClientError) {
        tracing::debug!("{what}: {error}");
        self.toast(format!("{what}: {}", describe(error)));
    }

    fn toggle_theme(&self) {
        let theme = self.ui.global::<Theme>();
        let dark = !theme.get_dark();
        theme.set_dark(dark);
        self.call_window.global::<Theme>().set_dark(dark);
        self.state.borrow_mut().prefs.dark = dark;
        self.save_preferences();
    }

    /// Writes the preferences on a worker thread (the file is synced to disk).
    pub(crate) fn save_preferences(&self) {
        let prefs = self.state.borrow().prefs.clone();
        let config = self.config.clone();
        self.bridge.blocking(
            move || config.save_preferences(&prefs),
            |result| {
                if let Err(e) = result {
                    tracing::warn!("saving preferences: {e}");
                }
            },
        );
    }

    fn show_overlay(&self, which: &str) {
        match which {
            "add-friend" => self.load_requests(),
            "profile" => {
                self.load_devices();
                let main = self.ui.global::<Main>();
                if let Some(me) = &self.state.borrow().me {
                    main.set_profile_name(me.display_name.as_str().into());
                    main.set_profile_status(me.status_line.as_str().into());
                }
            }
            "members" => self.load_members(),
            "new-group" => self.prepare_new_group(),
            _ => {}
        }
        self.ui.global::<Main>().set_overlay(which.into());
    }

    /// Who is signed in (0 before sign-in).
    pub(crate) fn me_id(&self) -> i64 {
        self.state.borrow().me.as_ref().map_or(0, |u| u.id)
    }

    /// A person row for the view.
    pub(crate) fn person_row(&self, user_id: i64, subtitle: String, state: &str) -> PersonRow {
        let people = self.people.borrow();
        let name = people.name(user_id);
        let avatar = self.state.borrow().avatars.get(&user_id).cloned();
        PersonRow {
            initials: format::initials(&name).into(),
            title: name.into(),
            subtitle: subtitle.into(),
            tint: format::tint(user_id),
            has_picture: avatar.is_some(),
            picture: avatar.unwrap_or_default(),
            online: people.online(user_id),
            note: "".into(),
            state: state.into(),
            can_act: false,
        }
    }

    /// Fetches `user_id`'s avatar once, if they have one, then redraws.
    pub(crate) fn want_avatar(&self, user_id: i64) {
        let file = self.people.borrow().avatar_file(user_id);
        {
            let mut state = self.state.borrow_mut();
            if file == 0 || state.avatars.contains_key(&user_id) || !state.avatar_loading.insert(user_id) {
                return;
            }
        }
        self.bridge.call(
            move |client| async move {
                let bytes = client.avatar(user_id).await?;
                Ok(crate::images::decode(&bytes, 192))
            },
            move |result| {
                with_app(|app| {
                    app.state.borrow_mut().avatar_loading.remove(&user_id);
                    if let Ok(Some(pixels)) = result {
                        app.state
                            .borrow_mut()
                            .avatars
                            .insert(user_id, Image::from_rgba8(pixels));
                        app.refresh_people_views();
                    }
                })
            },
        );
    }

    /// Fetches profiles of users the client has not met yet (group members,
    /// senders), then redraws what names them.
    pub(crate) fn want_profiles(&self, ids: impl IntoIterator<Item = i64>) {
        let missing: Vec<i64> = {
            let people = self.people.borrow();
            let mut state = self.state.borrow_mut();
            ids.into_iter()
                .filter(|id| *id != 0 && !people.knows(*id) && state.profile_loading.insert(*id))
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        self.bridge.call(
            move |client| async move {
                let mut found = Vec::new();
                for id in missing {
                    match client.profile(id).await {
                        Ok(user) => found.push(user),
                        Err(e) => tracing::debug!("profile {id}: {e}"),
                    }
                }
                Ok(found)
            },
            |result| {
                with_app(|app| {
                    if let Ok(users) = result {
                        for user in &users {
                            app.people.borrow_mut().learn(user);
                            app.state.borrow_mut().profile_loading.remove(&user.id);
                        }
                        app.refresh_people_views();
                    }
                })
            },
        );
    }

    /// Redraws everything that shows names or avatars.
    pub(crate) fn refresh_people_views(&self) {
        self.refresh_conversations();
        self.refresh_friends();
        self.refresh_chat_header();
        self.refresh_call_peer();
        self.refresh_me();
        let rows = self.messages.len();
        if rows > 0 {
            // Names in group bubbles: cheap, only visible rows are rebuilt.
            self.messages.refresh_all();
        }
    }

    fn refresh_me(&self) {
        let main = self.ui.global::<Main>();
        let state = self.state.borrow();
        let Some(me) = &state.me else { return };
        let name = if me.display_name.is_empty() {
            &me.username
        } else {
            &me.display_name
        };
        main.set_me_name(name.as_str().into());
        main.set_me_username(me.username.as_str().into());
        main.set_me_status(me.status_line.as_str().into());
        main.set_me_initials(format::initials(name).into());
        main.set_me_tint(format::tint(me.id));
        let avatar = state.avatars.get(&me.id).cloned();
        main.set_me_has_picture(avatar.is_some());
        main.set_me_picture(avatar.unwrap_or_default());
    }

    /// Rebuilds the conversation list rows (a few hundred at most).
    pub(crate) fn refresh_conversations(&self) {
        let main = self.ui.global::<Main>();
        let filter = main.get_filter().to_string();
        let now = crate::conversations::now_ms();
        let (rows, items, open, unread) = {
            let state = self.state.borrow();
            let people = self.people.borrow();
            let rows = state.conversations.visible(&people, &filter);
            let mut items: Vec<ConversationItem> = rows
                .iter()
                .filter_map(|id| state.conversations.item(*id, &people, now))
                .collect();
            for (item, id) in items.iter_mut().zip(&rows) {
                let peer = state.conversations.get(*id).map_or(0, |c| {
                    if c.info.kind() == pb::ConversationKind::Direct {
                        c.info.peer_id
                    } else {
                        0
                    }
                });
                if let Some(avatar) = state.avatars.get(&peer) {
                    item.picture = avatar.clone();
                    item.has_picture = true;
                }
            }
            (rows, items, state.open, state.conversations.total_unread())
        };
        let current = open
            .and_then(|id| rows.iter().position(|r| *r == id))
            .map_or(-1, |p| p as i32);
        // Update in place where the row count is unchanged: the ListView keeps
        // its items instead of rebuilding them.
        if self.conversation_rows.row_count() == items.len() {
            for (row, item) in items.into_iter().enumerate() {
                if self.conversation_rows.row_data(row).as_ref() != Some(&item) {
                    self.conversation_rows.set_row_data(row, item);
                }
            }
        } else {
            self.conversation_rows.set_vec(items);
        }
        self.state.borrow_mut().rows = rows;
        main.set_current(current);
        let title = if unread > 0 {
            format!("Parley ({unread})")
        } else {
            "Parley".to_string()
        };
        let _ = title; // The window title is fixed in the view; the count is on the badges.
    }

    fn expire_typing(&self) {
        let now = crate::conversations::now_ms();
        let changed = {
            let mut state = self.state.borrow_mut();
            let open = state.open;
            let mut changed = false;
            let ids: Vec<i64> = state.rows.clone();
            for id in ids {
                if let Some(c) = state.conversations.get_mut(id)
                    && c.typing_until_ms != 0
                    && c.typing_until_ms <= now
                {
                    c.typing_until_ms = 0;
                    changed = true;
                    if open == Some(id) {
                        self.ui.global::<Main>().set_chat_typing(false);
                    }
                }
            }
            changed
        };
        if changed {
            self.refresh_conversations();
        }
    }
}

/// A user-facing sentence for an SDK error.
pub fn describe(error: &ClientError) -> String {
    use pb::ErrorCode as C;
    match error {
        ClientError::Server(e) => match e.kind() {
            C::WrongCredentials => "wrong username or password".into(),
            C::UsernameTaken => "that username is taken".into(),
            C::InvalidUsername => "usernames are 3–32 of a-z, 0-9, _ . -".into(),
            C::WeakPassword => "the password is too weak (8+ characters)".into(),
            C::RateLimited => "too many attempts; wait a moment".into(),
            C::SessionInvalid => "your session ended; sign in again".into(),
            _ if !e.message.is_empty() => e.message.clone(),
            _ => format!("{:?}", e.kind()),
        },
        ClientError::Io(e) => format!("cannot reach the server ({e})"),
        ClientError::Timeout => "the server did not answer in time".into(),
        ClientError::Disconnected => "not connected".into(),
        ClientError::CertificateChanged { .. } => {
            "the server's certificate changed — someone may be intercepting the connection".into()
        }
        ClientError::Tls(e) => format!("secure connection failed ({e})"),
        other => other.to_string(),
    }
}

/// Seconds between two typing notices sent to the server.
pub(crate) const TYPING_EVERY: Duration = Duration::from_secs(3);

pub(crate) fn typing_shown() -> i64 {
    TYPING_SHOWN
}
