//! Friends, friend requests, user search, remarks, blocking and the profile.

use parley_client::pb;

use slint::ComponentHandle;

use super::{App, with_app};
use crate::{Main, PersonRow};

impl App {
    /// Rebuilds the friend list and the selected friend's card.
    pub(crate) fn refresh_friends(&self) {
        let ids = self.people.borrow().friend_ids();
        let rows: Vec<PersonRow> = ids
            .iter()
            .map(|id| {
                let people = self.people.borrow();
                let subtitle = people.presence_line(*id);
                let blocked = people.is_blocked(*id);
                drop(people);
                self.person_row(*id, subtitle, if blocked { "blocked" } else { "friend" })
            })
            .collect();
        self.friend_rows.set_vec(rows);
        let main = self.ui.global::<Main>();
        let mut state = self.state.borrow_mut();
        let current = state
            .current_friend
            .and_then(|id| ids.iter().position(|f| *f == id));
        if current.is_none() {
            state.current_friend = None;
        }
        state.friend_rows = ids;
        drop(state);
        main.set_pending_requests(
            self.state
                .borrow()
                .requests
                .iter()
                .filter(|(_, incoming)| *incoming)
                .count() as i32,
        );
        main.set_current_friend(current.map_or(-1, |c| c as i32));
        if let Some(row) = current {
            self.show_friend_card(row);
        }
    }

    pub(crate) fn open_friend(&self, row: i32) {
        let id = usize::try_from(row)
            .ok()
            .and_then(|r| self.state.borrow().friend_rows.get(r).copied());
        self.state.borrow_mut().current_friend = id;
        if let Some(id) = id {
            let remark = self
                .people
                .borrow()
                .friend(id)
                .map(|f| f.remark.clone())
                .unwrap_or_default();
            self.ui.global::<Main>().set_friend_remark(remark.into());
            self.ui.global::<Main>().set_current_friend(row);
            self.show_friend_card(row as usize);
        }
    }

    fn show_friend_card(&self, row: usize) {
        let Some(id) = self.state.borrow().friend_rows.get(row).copied() else {
            return;
        };
        let people = self.people.borrow();
        let user = people.user(id).cloned().unwrap_or_default();
        let blocked = people.is_blocked(id);
        let presence = people.presence_line(id);
        drop(people);
        let mut card = self.person_row(
            id,
            format!("@{} · {presence}", user.username),
            if blocked { "blocked" } else { "friend" },
        );
        card.note = user.status_line.as_str().into();
        self.ui.global::<Main>().set_friend(card);
    }

    pub(crate) fn save_remark(&self) {
        let Some(id) = self.state.borrow().current_friend else {
            return;
        };
        let remark = self.ui.global::<Main>().get_friend_remark().trim().to_string();
        self.bridge.call(
            {
                let remark = remark.clone();
                move |client| async move { client.set_remark(id, &remark).await }
            },
            move |result| {
                with_app(|app| match result {
                    Ok(()) => {
                        app.people.borrow_mut().set_remark(id, &remark);
                        app.refresh_people_views();
                        app.toast("Remark saved");
                    }
                    Err(e) => app.failed("Saving the remark failed", &e),
                })
            },
        );
    }

    /// Reloads incoming and outgoing friend requests.
    pub(crate) fn load_requests(&self) {
        self.bridge.call(
            |client| async move { client.friend_requests().await },
            |result| {
                with_app(|app| match result {
                    Ok(list) => app.set_requests(list),
                    Err(e) => app.failed("Loading requests failed", &e),
                })
            },
        );
    }

    pub(crate) fn set_requests(&self, list: pb::FriendRequestList) {
        let mut requests: Vec<(pb::FriendRequest, bool)> = Vec::new();
        requests.extend(list.incoming.into_iter().map(|r| (r, true)));
        requests.extend(list.outgoing.into_iter().map(|r| (r, false)));
        let rows: Vec<PersonRow> = requests
            .iter()
            .filter_map(|(request, incoming)| {
                let other = if *incoming {
                    request.from.as_ref()
                } else {
                    request.to.as_ref()
                }?;
                self.people.borrow_mut().learn(other);
                let subtitle = if *incoming {
                    format!("@{}", other.username)
                } else {
                    format!("@{} · waiting", other.username)
                };
                let mut row = self.person_row(
                    other.id,
                    subtitle,
                    if *incoming { "incoming" } else { "outgoing" },
                );
                row.note = request.note.as_str().into();
                Some(row)
            })
            .collect();
        self.request_rows.set_vec(rows);
        let incoming = requests.iter().filter(|(_, i)| *i).count() as i32;
        self.state.borrow_mut().requests = requests;
        self.ui.global::<Main>().set_pending_requests(incoming);
        self.refresh_search_rows();
    }

    pub(crate) fn search_users(&self) {
        let main = self.ui.global::<Main>();
        let query = main.get_search_query().trim().to_string();
        if query.is_empty() {
            return;
        }
        main.set_search_status("Searching…".into());
        self.bridge.call(
            move |client| async move { client.search_users(&query, 30, "").await },
            |result| {
                with_app(|app| match result {
                    Ok(page) => {
                        let main = app.ui.global::<Main>();
                        main.set_search_status(if page.users.is_empty() {
                            "Nobody found.".into()
                        } else {
                            "".into()
                        });
                        for user in &page.users {
                            app.people.borrow_mut().learn(user);
                            app.want_avatar(user.id);
                        }
                        app.state.borrow_mut().search_results = page.users;
                        app.refresh_search_rows();
                    }
                    Err(e) => {
                        app.ui.global::<Main>().set_search_status("".into());
                        app.failed("Search failed", &e);
                    }
                })
            },
        );
    }

    fn refresh_search_rows(&self) {
        let me = self.me_id();
        let results = self.state.borrow().search_results.clone();
        let rows: Vec<PersonRow> = results
            .iter()
            .map(|user| {
                let state = {
                    let people = self.people.borrow();
                    let app_state = self.state.borrow();
                    let requests = &app_state.requests;
                    if user.id == me {
                        "me"
                    } else if people.friend(user.id).is_some() {
                        "friend"
                    } else if requests
                        .iter()
                        .any(|(r, i)| !*i && r.to.as_ref().is_some_and(|u| u.id == user.id))
                    {
                        "outgoing"
                    } else if requests
                        .iter()
                        .any(|(r, i)| *i && r.from.as_ref().is_some_and(|u| u.id == user.id))
                    {
                        "incoming"
                    } else {
                        "stranger"
                    }
                };
                let mut row = self.person_row(user.id, format!("@{}", user.username), state);
                row.note = user.status_line.as_str().into();
                row
            })
            .collect();
        self.search_rows.set_vec(rows);
    }

    /// A button on a person row: `list` names the list, `row` the person.
    pub(crate) fn person_action(&self, list: &str, row: i32, action: &str) {
        let Ok(row) = usize::try_from(row) else { return };
        match list {
            "search" => {
                let Some(user) = self.state.borrow().search_results.get(row).cloned() else {
                    return;
                };
                if action == "request" {
                    let note = self.ui.global::<Main>().get_request_note().to_string();
                    let name = self.people.borrow().name(user.id);
                    self.bridge.call(
                        move |client| async move { client.send_friend_request(user.id, &note).await },
                        move |result| {
                            with_app(|app| match result {
                                Ok(()) => {
                                    app.toast(format!("Request sent to {name}"));
                                    app.load_requests();
                                }
                                Err(e) => app.failed("Sending the request failed", &e),
                            })
                        },
                    );
                }
            }
            "requests" => {
                let Some((request, _)) = self.state.borrow().requests.get(row).cloned() else {
                    return;
                };
                let request_id = request.id;
                let (what, accept) = match action {
                    "accept" => ("Accepting", Some(true)),
                    "decline" => ("Declining", Some(false)),
                    _ => ("Cancelling", None),
                };
                self.bridge.call(
                    move |client| async move {
                        match accept {
                            Some(accept) => client.answer_friend_request(request_id, accept).await,
                            None => client.cancel_friend_request(request_id).await,
                        }
                    },
                    move |result| {
                        with_app(|app| {
                            if let Err(e) = result {
                                app.failed(&format!("{what} the request failed"), &e);
                            }
                            app.load_requests();
                            if accept == Some(true) {
                                app.load_everything();
                            }
                        })
                    },
                );
            }
            "friends" => {
                let Some(id) = self.state.borrow().friend_rows.get(row).copied() else {
                    return;
                };
                self.friend_action(id, action);
            }
            "members" => {
                let Some(member) = self.state.borrow().members.get(row).cloned() else {
                    return;
                };
                if action == "kick"
                    && let Some(user) = member.user
                {
                    self.kick(user.id);
                }
            }
            "invitable" => {
                let Some(id) = self.state.borrow().invitable.get(row).copied() else {
                    return;
                };
                self.invite(id);
            }
            "new-group" => {
                let Some(id) = self.state.borrow().invitable.get(row).copied() else {
                    return;
                };
                {
                    let mut state = self.state.borrow_mut();
                    if !state.chosen.remove(&id) {
                        state.chosen.insert(id);
                    }
                }
                self.refresh_invitable(true);
            }
            _ => {}
        }
    }

    fn friend_action(&self, id: i64, action: &str) {
        match action {
            "message" => {
                let existing = self.state.borrow().conversations.direct_with(id);
                if let Some(conv) = existing {
                    self.open_conversation(conv);
                    return;
                }
                self.bridge.call(
                    move |client| async move { client.open_direct(id).await },
                    |result| {
                        with_app(|app| match result {
                            Ok(conversation) => {
                                let conv = conversation.id;
                                app.state.borrow_mut().conversations.upsert(conversation);
                                app.open_conversation(conv);
                            }
                            Err(e) => app.failed("Opening the chat failed", &e),
                        })
                    },
                );
            }
            "block" | "unblock" => {
                let block = action == "block";
                self.bridge.call(
                    move |client| async move {
                        if block {
                            client.block(id).await
                        } else {
                            client.unblock(id).await
                        }
                    },
                    move |result| {
                        with_app(|app| match result {
                            Ok(()) => {
                                app.people.borrow_mut().set_block(id, block);
                                app.refresh_friends();
                                app.refresh_chat_header();
                                app.toast(if block { "Blocked" } else { "Unblocked" });
                            }
                            Err(e) => app.failed("Blocking failed", &e),
                        })
                    },
                );
            }
            "remove" => self.bridge.call(
                move |client| async move { client.remove_friend(id).await },
                move |result| {
                    with_app(|app| match result {
                        Ok(()) => {
                            app.people.borrow_mut().remove_friend(id);
                            app.refresh_friends();
                        }
                        Err(e) => app.failed("Removing the friend failed", &e),
                    })
                },
            ),
            _ => {}
        }
    }

    pub(crate) fn save_profile(&self) {
        let main = self.ui.global::<Main>();
        let name = main.get_profile_name().trim().to_string();
        let status = main.get_profile_status().trim().to_string();
        self.bridge.call(
            move |client| async move { client.update_profile(Some(&name), Some(&status)).await },
            |result| {
                with_app(|app| match result {
                    Ok(user) => {
                        app.people.borrow_mut().learn(&user);
                        app.state.borrow_mut().me = Some(user);
                        app.refresh_me();
                        app.ui.global::<Main>().set_overlay("".into());
                        app.toast("Profile saved");
                    }
                    Err(e) => app.failed("Saving the profile failed", &e),
                })
            },
        );
    }

    pub(crate) fn pick_avatar(&self) {
        let pick = rfd::AsyncFileDialog::new()
            .set_title("Choose a profile photo")
            .add_filter("Images", &["png", "jpg", "jpeg", "gif", "webp"])
            .pick_file();
        self.bridge.call(
            move |_| async move { Ok(pick.await.map(|f| f.path().to_path_buf())) },
            |result| {
                with_app(|app| {
                    if let Ok(Some(path)) = result {
                        app.set_avatar(path);
                    }
                })
            },
        );
    }

    /// Uploads `path` and makes it the user's avatar.
    pub fn set_avatar(&self, path: std::path::PathBuf) {
        let me = self.me_id();
        self.bridge.call(
            move |client| async move {
                let file = client.upload_file(&path, None, |_, _| {}).await?;
                client.set_avatar(file.file_id).await?;
                client.profile(me).await
            },
            move |result| {
                with_app(|app| match result {
                    Ok(user) => {
                        app.people.borrow_mut().learn(&user);
                        app.state.borrow_mut().me = Some(user);
                        app.state.borrow_mut().avatars.remove(&me);
                        app.want_avatar(me);
                    }
                    Err(e) => app.failed("Changing the photo failed", &e),
                })
            },
        );
    }
}
