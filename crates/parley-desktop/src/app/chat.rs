//! The open chat: opening, history paging, sending text, images and files,
//! and the per-message actions (copy, edit, recall, delete, open, save).

use std::path::PathBuf;
use std::time::Instant;

use parley_client::{OutgoingMessage, new_client_msg_id, pb};
use slint::Image;

use slint::ComponentHandle;

use super::{App, TYPING_EVERY, with_app};
use crate::conversations::now_ms;
use crate::images;
use crate::messages::{Body, Entry};
use crate::{Main, format};

/// Messages per history page.
const PAGE: u32 = 50;
/// Start loading older messages when the view is this close to the top.
const NEAR_TOP: f32 = 400.0;
/// Thumbnails are decoded to at most this many pixels on a side (twice the
/// drawn size, for high-DPI screens).
const THUMBNAIL_PIXELS: u32 = 560;

impl App {
    pub(crate) fn open_row(&self, row: i32) {
        let id = usize::try_from(row)
            .ok()
            .and_then(|r| self.state.borrow().rows.get(r).copied());
        if let Some(id) = id {
            self.open_conversation(id);
        }
    }

    /// Shows conversation `id` and loads its newest page.
    pub(crate) fn open_conversation(&self, id: i64) {
        let (group, peer_read) = {
            let state = self.state.borrow();
            let Some(c) = state.conversations.get(id) else {
                return;
            };
            (c.info.kind() == pb::ConversationKind::Group, c.info.peer_read_seq)
        };
        {
            let mut state = self.state.borrow_mut();
            state.open = Some(id);
            state.history_more = false;
            state.history_loading = true;
            state.editing = None;
        }
        let main = self.ui.global::<Main>();
        main.set_tab(0);
        main.set_editing(-1);
        main.set_chat_typing(false);
        main.set_history_loading(true);
        main.set_stick_to_bottom(true);
        self.messages.reset(self.me_id(), group, peer_read, Vec::new());
        self.refresh_chat_header();
        self.refresh_conversations();
        self.refresh_call_chat();
        self.bridge.call(
            move |client| async move { client.history(id, 0, PAGE).await },
            move |result| with_app(|app| app.history_loaded(id, result, true)),
        );
    }

    fn history_loaded(
        &self,
        id: i64,
        result: Result<pb::MessageBatch, parley_client::ClientError>,
        newest: bool,
    ) {
        if self.state.borrow().open != Some(id) {
            return;
        }
        self.state.borrow_mut().history_loading = false;
        self.ui.global::<Main>().set_history_loading(false);
        let batch = match result {
            Ok(batch) => batch,
            Err(e) => return self.failed("Loading messages failed", &e),
        };
        self.state.borrow_mut().history_more = batch.has_more;
        let me = self.me_id();
        let mut entries = Vec::with_capacity(batch.messages.len());
        let mut edits = Vec::new();
        {
            let people = self.people.borrow();
            for message in &batch.messages {
                match Entry::from_message(message, me, &people) {
                    Some(entry) => entries.push(entry),
                    None => edits.push(message.clone()),
                }
            }
        }
        self.want_profiles(batch.messages.iter().map(|m| m.sender_id));
        let thumbs: Vec<i64> = entries
            .iter()
            .filter(|e| e.body == Body::Image)
            .filter_map(|e| e.file.as_ref().map(|f| f.file_id))
            .collect();
        if newest {
            let group = self.ui.global::<Main>().get_chat_group();
            let peer_read = self
                .state
                .borrow()
                .conversations
                .get(id)
                .map_or(0, |c| c.info.peer_read_seq);
            // Messages that arrived while the page loaded are already in the
            // model; keep them after the page.
            let arrived: Vec<Entry> = (0..self.messages.len())
                .filter_map(|r| self.messages.entry(r))
                .collect();
            let newest_loaded = entries.last().map_or(0, |e| e.seq);
            entries.extend(
                arrived
                    .into_iter()
                    .filter(|e| e.seq == 0 || e.seq > newest_loaded),
            );
            self.messages.reset(me, group, peer_read, entries);
            self.scroll_to_bottom();
            self.mark_open_read();
        } else {
            self.messages.prepend(entries);
        }
        for edit in &edits {
            self.messages.apply(edit);
        }
        for file_id in thumbs {
            self.want_thumbnail(file_id);
        }
    }

    /// Jumps to the newest message and keeps following new ones.
    pub(crate) fn scroll_to_bottom(&self) {
        let main = self.ui.global::<Main>();
        main.set_stick_to_bottom(true);
        main.set_bottom_tick(main.get_bottom_tick().wrapping_add(1));
    }

    pub(crate) fn load_older(&self) {
        let (id, before) = {
            let state = self.state.borrow();
            let Some(id) = state.open else { return };
            if !state.history_more || state.history_loading {
                return;
            }
            let Some(before) = self.messages.oldest_seq() else {
                return;
            };
            (id, before)
        };
        self.state.borrow_mut().history_loading = true;
        self.ui.global::<Main>().set_history_loading(true);
        self.bridge.call(
            move |client| async move { client.history(id, before, PAGE).await },
            move |result| with_app(|app| app.history_loaded(id, result, false)),
        );
    }

    /// The list scrolled: page in history near the top, and follow new
    /// messages only while the user is at the bottom.
    pub(crate) fn scrolled(&self, y: f32, content: f32, visible: f32) {
        let at_bottom = y <= (visible - content) + 40.0;
        self.ui.global::<Main>().set_stick_to_bottom(at_bottom);
        if -y < NEAR_TOP {
            self.load_older();
        }
    }

    pub(crate) fn close_chat(&self) {
        self.state.borrow_mut().open = None;
        self.messages.reset(self.me_id(), false, 0, Vec::new());
        self.ui.global::<Main>().set_current(-1);
        self.refresh_call_chat();
    }

    /// Tells the server (and the user's other devices) the open chat is read.
    pub(crate) fn mark_open_read(&self) {
        let Some(id) = self.state.borrow().open else {
            return;
        };
        let Some(seq) = self.messages.newest_seq() else {
            return;
        };
        let unread = {
            let mut state = self.state.borrow_mut();
            let c = state.conversations.get_mut(id);
            let unread = c.as_ref().is_some_and(|c| c.unread > 0 || c.info.read_seq < seq);
            state.conversations.mark_read(id, seq);
            unread
        };
        if unread {
            self.refresh_conversations();
            self.bridge.fire("mark read", move |client| async move {
                client.mark_read(id, seq).await
            });
        }
    }

    /// Title, avatar and presence line of the open chat.
    pub(crate) fn refresh_chat_header(&self) {
        let main = self.ui.global::<Main>();
        let state = self.state.borrow();
        let Some(id) = state.open else { return };
        let Some(c) = state.conversations.get(id) else {
            return;
        };
        let people = self.people.borrow();
        let title = state.conversations.title(id, &people);
        let group = c.info.kind() == pb::ConversationKind::Group;
        let (subtitle, online) = if group {
            (format!("{} members", c.info.member_count), false)
        } else if people.is_blocked(c.info.peer_id) {
            ("blocked".to_string(), false)
        } else {
            (
                people.presence_line(c.info.peer_id),
                people.online(c.info.peer_id),
            )
        };
        let avatar = if group {
            None
        } else {
            state.avatars.get(&c.info.peer_id).cloned()
        };
        main.set_chat_initials(format::initials(&title).into());
        main.set_chat_tint(format::tint(if group { id } else { c.info.peer_id }));
        main.set_chat_title(title.into());
        main.set_chat_subtitle(subtitle.into());
        main.set_chat_online(online);
        main.set_chat_group(group);
        main.set_chat_has_picture(avatar.is_some());
        main.set_chat_picture(avatar.unwrap_or_default());
        drop(people);
        drop(state);
        self.refresh_call_button();
    }

    /// Sends the draft (or saves the edit in progress).
    pub(crate) fn send(&self) {
        let main = self.ui.global::<Main>();
        let text = main.get_draft().trim_end().to_string();
        let Some(id) = self.state.borrow().open else {
            return;
        };
        if text.trim().is_empty() {
            return;
        }
        main.set_draft("".into());
        if let Some(seq) = self.state.borrow_mut().editing.take() {
            main.set_editing(-1);
            self.bridge.call(
                move |client| async move { client.edit(id, seq, &text).await },
                |result| {
                    with_app(|app| {
                        if let Err(e) = result {
                            app.failed("Editing failed", &e)
                        }
                    })
                },
            );
            return;
        }
        let client_msg_id = new_client_msg_id();
        let entry = Entry::pending(
            client_msg_id.clone(),
            self.me_id(),
            Body::Text,
            text.clone(),
            now_ms(),
        );
        self.messages.push_pending(entry);
        self.scroll_to_bottom();
        let outgoing = OutgoingMessage {
            conv_id: id,
            client_msg_id: client_msg_id.clone(),
            kind: pb::MessageKind::Text,
            text,
            file_id: 0,
        };
        self.bridge.call(
            move |client| async move { client.send(outgoing).await },
            move |result| with_app(|app| app.sent(&client_msg_id, result)),
        );
    }

    fn sent(&self, client_msg_id: &str, result: Result<pb::MessageAck, parley_client::ClientError>) {
        match result {
            Ok(ack) => self.messages.confirm(client_msg_id, Some(ack.seq)),
            Err(e) => {
                self.messages.confirm(client_msg_id, None);
                self.failed("Not sent", &e);
            }
        }
    }

    /// The user typed: tell the others, at most every few seconds.
    pub(crate) fn typed(&self) {
        let Some(id) = self.state.borrow().open else {
            return;
        };
        {
            let mut state = self.state.borrow_mut();
            if state
                .last_typing_sent
                .is_some_and(|at| at.elapsed() < TYPING_EVERY)
            {
                return;
            }
            state.last_typing_sent = Some(Instant::now());
        }
        self.bridge
            .fire("typing", move |client| async move { client.typing(id).await });
    }

    pub(crate) fn cancel_edit(&self) {
        self.state.borrow_mut().editing = None;
        let main = self.ui.global::<Main>();
        main.set_editing(-1);
        main.set_draft("".into());
    }

    /// Opens the native file dialog, then sends what was picked.
    pub(crate) fn pick_and_send(&self, image: bool) {
        if self.state.borrow().open.is_none() {
            return;
        }
        let mut dialog =
            rfd::AsyncFileDialog::new().set_title(if image { "Send image" } else { "Send file" });
        if image {
            dialog = dialog.add_filter("Images", &["png", "jpg", "jpeg", "gif", "webp"]);
        }
        let pick = dialog.pick_files();
        // The dialog is awaited off the UI thread; the event loop keeps running.
        self.bridge.call(
            move |_| async move {
                let picked = pick.await.unwrap_or_default();
                Ok(picked
                    .into_iter()
                    .map(|f| f.path().to_path_buf())
                    .collect::<Vec<_>>())
            },
            |result| {
                with_app(|app| {
                    if let Ok(paths) = result {
                        app.send_paths(paths)
                    }
                })
            },
        );
    }

    /// Sends files (picked, dropped or passed in): images as images, the rest as files.
    pub fn send_paths(&self, paths: Vec<PathBuf>) {
        let Some(id) = self.state.borrow().open else {
            return;
        };
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let image = images::is_image_name(&name);
            let client_msg_id = new_client_msg_id();
            let mut entry = Entry::pending(
                client_msg_id.clone(),
                self.me_id(),
                if image { Body::Image } else { Body::File },
                String::new(),
                now_ms(),
            );
            // The size arrives with the first progress report: no disk
            // access on the UI thread.
            entry.file = Some(pb::FileRef {
                name: name.clone(),
                ..Default::default()
            });
            entry.progress = 0.0;
            entry.file_state = "uploading".into();
            entry.local_path = Some(path.clone());
            self.messages.push_pending(entry);
            self.scroll_to_bottom();
            let id_for_progress = client_msg_id.clone();
            let progress = self.bridge.progress(move |done, total| {
                let id = id_for_progress.clone();
                with_app(move |app| {
                    app.messages.update_pending(&id, |e| {
                        e.progress = if total == 0 {
                            1.0
                        } else {
                            done as f32 / total as f32
                        };
                    })
                });
            });
            let kind = if image {
                pb::MessageKind::Image
            } else {
                pb::MessageKind::File
            };
            let msg_id = client_msg_id.clone();
            self.bridge.call(
                move |client| async move {
                    let file = client.upload_file(&path, None, progress).await?;
                    let outgoing = OutgoingMessage {
                        conv_id: id,
                        client_msg_id: msg_id,
                        kind,
                        text: String::new(),
                        file_id: file.file_id,
                    };
                    let ack = client.send(outgoing).await?;
                    Ok((ack, file))
                },
                move |result| {
                    with_app(|app| match result {
                        Ok((ack, file)) => {
                            let file_id = file.file_id;
                            app.messages.update_pending(&client_msg_id, |e| {
                                e.progress = -1.0;
                                e.file_state = String::new();
                                if e.file.as_ref().is_none_or(|f| f.file_id == 0) {
                                    e.file = Some(file);
                                }
                            });
                            app.messages.confirm(&client_msg_id, Some(ack.seq));
                            if image {
                                app.want_thumbnail(file_id);
                            }
                        }
                        Err(e) => {
                            app.messages.update_pending(&client_msg_id, |entry| {
                                entry.progress = -1.0;
                                entry.file_state = "failed".into();
                            });
                            app.messages.confirm(&client_msg_id, None);
                            app.failed("Upload failed", &e);
                        }
                    })
                },
            );
        }
    }

    /// Fetches and decodes an image's thumbnail once.
    pub(crate) fn want_thumbnail(&self, file_id: i64) {
        if file_id == 0 || self.messages.thumbnail(file_id).is_some() {
            return;
        }
        let open = self.state.borrow().open;
        self.bridge.call(
            move |client| async move {
                let bytes = client.thumbnail(file_id).await?;
                // Decoding is CPU work: keep it off the runtime's I/O threads.
                let decoded = tokio::task::spawn_blocking(move || images::decode(&bytes, THUMBNAIL_PIXELS))
                    .await
                    .ok()
                    .flatten();
                Ok(decoded)
            },
            move |result| {
                with_app(|app| {
                    if app.state.borrow().open != open {
                        return;
                    }
                    match result {
                        Ok(Some(pixels)) => app.messages.set_thumbnail(file_id, Image::from_rgba8(pixels)),
                        Ok(None) => tracing::debug!("thumbnail {file_id} is not an image"),
                        Err(e) => tracing::debug!("thumbnail {file_id}: {e}"),
                    }
                })
            },
        );
    }

    pub(crate) fn message_action(&self, row: i32, action: &str) {
        let Some(entry) = usize::try_from(row).ok().and_then(|r| self.messages.entry(r)) else {
            return;
        };
        let Some(id) = self.state.borrow().open else {
            return;
        };
        let seq = entry.seq;
        match action {
            "copy" => {
                self.copy_to_clipboard(&entry.text);
            }
            "edit" if seq > 0 => {
                self.state.borrow_mut().editing = Some(seq);
                let main = self.ui.global::<Main>();
                main.set_editing(row);
                main.set_draft(entry.text.as_str().into());
            }
            "recall" if seq > 0 => self.bridge.call(
                move |client| async move { client.recall(id, seq).await },
                |result| {
                    with_app(|app| {
                        if let Err(e) = result {
                            app.failed("Recall failed", &e)
                        }
                    })
                },
            ),
            "delete" if seq > 0 => {
                self.messages.hide(&[seq]);
                self.bridge.fire("delete for me", move |client| async move {
                    client.delete_for_me(id, &[seq]).await
                });
            }
            "delete" => {
                if let Ok(row) = usize::try_from(row) {
                    self.messages.update_row(row, |e| e.recalled = true);
                }
            }
            _ => {}
        }
    }

    fn copy_to_clipboard(&self, text: &str) {
        // Slint has no public clipboard API: a hidden text input copies
        // through the platform's own clipboard handling.
        self.ui.invoke_copy_text(text.into());
        self.toast("Copied");
    }

    /// Downloads (if needed) and shows an image full size.
    pub(crate) fn open_picture(&self, row: i32) {
        let Some(entry) = usize::try_from(row).ok().and_then(|r| self.messages.entry(r)) else {
            return;
        };
        let Some(file) = entry.file.clone() else { return };
        let main = self.ui.global::<Main>();
        main.set_viewer_title(file.name.as_str().into());
        if let Some(thumb) = self.messages.thumbnail(file.file_id) {
            main.set_viewer_picture(thumb);
        }
        main.set_overlay("image".into());
        let local = entry.local_path.clone();
        let cache = self
            .config
            .cache()
            .join(format!("{}-{}", file.file_id, safe_name(&file.name)));
        let file_id = file.file_id;
        self.bridge.call(
            move |client| async move {
                let path = match local.filter(|p| p.exists()) {
                    Some(path) => path,
                    None => {
                        if !cache.exists() {
                            if let Some(dir) = cache.parent() {
                                std::fs::create_dir_all(dir)?;
                            }
                            client.download_file(file_id, &cache, |_, _| {}).await?;
                        }
                        cache
                    }
                };
                let decoded = tokio::task::spawn_blocking(move || images::decode_file(&path, 4096))
                    .await
                    .ok()
                    .flatten();
                Ok(decoded)
            },
            move |result| {
                with_app(|app| match result {
                    Ok(Some(pixels)) => app
                        .ui
                        .global::<Main>()
                        .set_viewer_picture(Image::from_rgba8(pixels)),
                    Ok(None) => app.toast("This image cannot be shown"),
                    Err(e) => app.failed("Download failed", &e),
                })
            },
        );
    }

    /// "open" downloads to the cache and opens with the system viewer;
    /// "save" asks where to save.
    pub(crate) fn file_action(&self, row: i32, action: &str) {
        let Ok(row) = usize::try_from(row) else { return };
        let Some(entry) = self.messages.entry(row) else {
            return;
        };
        let Some(file) = entry.file.clone() else { return };
        if file.file_id == 0 {
            return;
        }
        let open = action == "open";
        let cache = self
            .config
            .cache()
            .join(format!("{}-{}", file.file_id, safe_name(&file.name)));
        let local = entry.local_path.clone();
        let default_dir = self.config.downloads();
        let seq = entry.seq;
        let report_row = move |state: String, progress: f32| {
            with_app(move |app| {
                // Rows shift when history is prepended; find the entry by seq.
                let row =
                    (0..app.messages.len()).find(|r| app.messages.entry(*r).is_some_and(|e| e.seq == seq));
                if let Some(row) = row {
                    app.messages.update_row(row, |e| {
                        e.file_state = state;
                        e.progress = progress;
                    });
                }
            })
        };
        let progress_row = report_row;
        let progress = self.bridge.progress(move |done, total| {
            let p = if total == 0 {
                1.0
            } else {
                done as f32 / total as f32
            };
            progress_row("downloading".into(), p);
        });
        // Dialogs are created on the UI thread (macOS needs that) and
        // awaited on the runtime.
        let save = (!open).then(|| {
            rfd::AsyncFileDialog::new()
                .set_directory(&default_dir)
                .set_file_name(&file.name)
                .save_file()
        });
        self.bridge.call(
            move |client| async move {
                let target = match save {
                    None => cache.clone(),
                    Some(save) => match save.await {
                        Some(handle) => handle.path().to_path_buf(),
                        None => return Ok(None),
                    },
                };
                let local = local.filter(|p| p.exists());
                let opened = local.clone();
                match local {
                    Some(local) if !open => {
                        tokio::fs::copy(&local, &target).await?;
                    }
                    Some(_) => {}
                    None if open && target.exists() => {}
                    None => {
                        if let Some(dir) = target.parent() {
                            tokio::fs::create_dir_all(dir).await?;
                        }
                        client.download_file(file.file_id, &target, progress).await?;
                    }
                }
                let path = if open { opened.unwrap_or(target) } else { target };
                if open {
                    // Starting a program is not work for the UI thread either.
                    let program = path.clone();
                    tokio::task::spawn_blocking(move || crate::desktop::open_path(&program));
                }
                Ok(Some(path))
            },
            move |result| match result {
                Ok(Some(_)) => {
                    report_row(if open { "opened".into() } else { "saved".into() }, -1.0);
                }
                Ok(None) => {}
                Err(e) => {
                    report_row("failed".into(), -1.0);
                    with_app(|app| app.failed("Download failed", &e));
                }
            },
        );
    }
}

/// A file name safe to use inside the cache directory.
fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    if trimmed.is_empty() {
        "file".into()
    } else {
        trimmed.chars().take(100).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cache_names_cannot_escape() {
        assert_eq!(super::safe_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(super::safe_name("photo 1.png"), "photo_1.png");
        assert_eq!(super::safe_name(".."), "file");
    }
}
