//! Loading the account's data after sign-in and applying pushed events.

use parley_client::{ClientEvent, ConnectionState, pb};

use slint::ComponentHandle;

use super::{App, with_app};
use crate::bridge::Incoming;
use crate::{Main, format};

type Ev = pb::event::Kind;

impl App {
    /// Loads conversations, friends and requests (after sign-in or a resync).
    pub(crate) fn load_everything(&self) {
        self.bridge.call(
            |client| async move {
                let friends = client.friends().await?;
                let conversations = client.conversations().await?;
                let requests = client.friend_requests().await?;
                let blocked = client.blocked().await.unwrap_or_default();
                Ok((friends, conversations, requests, blocked))
            },
            |result| {
                with_app(|app| match result {
                    Ok((friends, conversations, requests, blocked)) => {
                        {
                            let mut people = app.people.borrow_mut();
                            people.set_friends(&friends);
                            people.set_blocked(&blocked);
                        }
                        let peers: Vec<i64> = conversations.iter().map(|c| c.peer_id).collect();
                        let senders: Vec<i64> = conversations
                            .iter()
                            .filter_map(|c| c.last_message.as_ref().map(|m| m.sender_id))
                            .collect();
                        app.state.borrow_mut().conversations.set_all(conversations);
                        app.set_requests(requests);
                        app.want_profiles(peers.iter().copied().chain(senders));
                        for friend in &friends {
                            if let Some(user) = &friend.user {
                                app.want_avatar(user.id);
                            }
                        }
                        app.want_avatar(app.me_id());
                        app.refresh_conversations();
                        app.refresh_friends();
                        let open = app.state.borrow().open;
                        if let Some(open) = open {
                            app.open_conversation(open);
                        }
                    }
                    Err(e) => app.failed("Loading your chats failed", &e),
                })
            },
        );
    }

    pub(crate) fn on_incoming(&self, incoming: Incoming) {
        match incoming {
            Incoming::Resync => self.load_everything(),
            Incoming::Events(events) => {
                let mut list_changed = false;
                for event in events {
                    list_changed |= self.on_event(event);
                }
                if list_changed {
                    self.refresh_conversations();
                }
            }
        }
    }

    /// Applies one event; returns whether the conversation list needs redrawing.
    fn on_event(&self, event: ClientEvent) -> bool {
        let main = self.ui.global::<Main>();
        match event {
            ClientEvent::State(state) => {
                let banner = match state {
                    ConnectionState::Connected => {
                        // Messages are caught up by the SDK; lists may have
                        // changed while away.
                        self.load_everything();
                        String::new()
                    }
                    ConnectionState::Reconnecting { attempt, delay } => {
                        format!(
                            "Connection lost — reconnecting in {} s (attempt {attempt})…",
                            delay.as_secs().max(1)
                        )
                    }
                    ConnectionState::LoggedOut => {
                        self.logout();
                        self.ui
                            .global::<crate::AuthState>()
                            .set_error("Your session ended. Please sign in again.".into());
                        String::new()
                    }
                    ConnectionState::Closed => String::new(),
                };
                main.set_banner(banner.into());
                false
            }
            ClientEvent::Server(kind) => self.on_server_event(kind),
        }
    }

    fn on_server_event(&self, kind: Ev) -> bool {
        match kind {
            Ev::Message(message) => self.on_message(message),
            Ev::Read(receipt) => {
                if receipt.user_id == self.me_id() {
                    self.state
                        .borrow_mut()
                        .conversations
                        .mark_read(receipt.conv_id, receipt.seq);
                    true
                } else {
                    if self.state.borrow().open == Some(receipt.conv_id) {
                        self.messages.set_peer_read(receipt.seq);
                    }
                    if let Some(c) = self.state.borrow_mut().conversations.get_mut(receipt.conv_id) {
                        c.info.peer_read_seq = c.info.peer_read_seq.max(receipt.seq);
                    }
                    false
                }
            }
            Ev::Typing(notice) => {
                if notice.user_id == self.me_id() {
                    return false;
                }
                let until = crate::conversations::now_ms() + super::typing_shown();
                if let Some(c) = self.state.borrow_mut().conversations.get_mut(notice.conv_id) {
                    c.typing_until_ms = until;
                }
                if self.state.borrow().open == Some(notice.conv_id) {
                    self.ui.global::<Main>().set_chat_typing(true);
                }
                true
            }
            Ev::ConversationUpdated(conversation) => {
                let id = conversation.id;
                self.want_profiles([conversation.peer_id]);
                self.state.borrow_mut().conversations.upsert(conversation);
                if self.state.borrow().open == Some(id) {
                    self.refresh_chat_header();
                    if self.ui.global::<Main>().get_overlay() == "members" {
                        self.load_members();
                    }
                }
                true
            }
            Ev::ConversationRemoved(removed) => {
                self.state.borrow_mut().conversations.remove(removed.conv_id);
                if self.state.borrow().open == Some(removed.conv_id) {
                    self.close_chat();
                }
                true
            }
            Ev::MessagesHidden(hidden) => {
                if self.state.borrow().open == Some(hidden.conv_id) {
                    self.messages.hide(&hidden.seqs);
                }
                false
            }
            Ev::FriendRequestReceived(_) | Ev::FriendRequestAnswered(_) | Ev::FriendRequestCancelled(_) => {
                self.load_requests();
                false
            }
            Ev::FriendAdded(friend) => {
                if let Some(user) = &friend.user {
                    self.want_avatar(user.id);
                }
                self.people.borrow_mut().add_friend(&friend);
                self.load_requests();
                self.refresh_friends();
                true
            }
            Ev::FriendRemoved(removed) => {
                self.people.borrow_mut().remove_friend(removed.user_id);
                self.refresh_friends();
                true
            }
            Ev::PresenceChanged(change) => {
                let presence = change.presence.unwrap_or_default();
                let friend = self.people.borrow_mut().set_presence(change.user_id, presence);
                if friend {
                    self.refresh_friends();
                    self.refresh_chat_header();
                }
                friend
            }
            Ev::ProfileUpdated(user) => {
                self.people.borrow_mut().learn(&user);
                if user.id == self.me_id() {
                    self.state.borrow_mut().me = Some(user.clone());
                }
                self.state.borrow_mut().avatars.remove(&user.id);
                self.want_avatar(user.id);
                self.refresh_people_views();
                false
            }
            Ev::CallIncoming(info) => {
                self.on_call_incoming(info);
                false
            }
            Ev::CallEnded(ended) => {
                self.on_call_ended(ended);
                false
            }
            Ev::CallAnsweredElsewhere(answered) => {
                self.on_call_answered_elsewhere(answered);
                false
            }
            // A call placed here is followed by its own task; the rest
            // (ringing on another device's call, group call departures)
            // changes nothing on screen.
            _ => false,
        }
    }

    fn on_message(&self, message: pb::Message) -> bool {
        let me = self.me_id();
        let open = self.state.borrow().open == Some(message.conv_id);
        let known = self
            .state
            .borrow_mut()
            .conversations
            .on_message(&message, me, open);
        if !known {
            // A conversation we have not seen: someone started a chat or
            // added us to a group.
            self.load_everything();
            return false;
        }
        self.want_profiles([message.sender_id]);
        if open {
            let appended = self.messages.apply(&message);
            if appended && message.sender_id != me {
                self.mark_open_read();
            }
            if message.sender_id != me {
                self.ui.global::<Main>().set_chat_typing(false);
            }
            if let Some(file) = &message.file
                && message.kind() == pb::MessageKind::Image
            {
                self.want_thumbnail(file.file_id);
            }
        }
        let focused = self.state.borrow().window_focused;
        if message.sender_id != me && (!focused || !open) && is_shown(&message) {
            let title = self
                .state
                .borrow()
                .conversations
                .title(message.conv_id, &self.people.borrow());
            let sender = self.people.borrow().name(message.sender_id);
            if !focused {
                crate::notify::new_message(&self.bridge, &title, &sender, &format::preview(&message));
            }
        }
        true
    }
}

fn is_shown(message: &pb::Message) -> bool {
    !matches!(
        message.kind(),
        pb::MessageKind::Edit | pb::MessageKind::Recall | pb::MessageKind::System
    )
}
