//! `chat USER|CONV_ID`: an interactive, line-based chat in the terminal.
//!
//! It shows recent history, then live messages from the SDK's gap-free
//! stream (reconnects included), marks what was shown as read, shows typing
//! notices and, in direct chats, when the peer has read your messages.
//! Lines typed are sent; `/help` lists the commands. The pieces:
//! `screen` draws, `input` reads keys or lines, `outbox` does the sending
//! in the background, and this file ties them to the event stream.

mod input;
mod outbox;
mod screen;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use parley_client::{Client, ClientEvent, ConnectionState, pb};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::context::{Context, Lifetime};
use crate::messages::conversation_for;
use crate::render::{self, Names};
use input::{Input, RawMode};
use outbox::{Job, Report};
use screen::Screen;

/// How long a typing notice is shown, and how often the user's own typing
/// is announced.
const TYPING_SHOWN: Duration = Duration::from_secs(5);
const TYPING_EVERY: Duration = Duration::from_secs(3);
/// How long leaving waits for queued sends and their echo.
const FLUSH_LIMIT: Duration = Duration::from_secs(10);

const HELP: &str = "commands: /image PATH  /file PATH  /recall SEQ  /edit SEQ TEXT  /download FILE_ID  \
/more (older messages)  /quit";

/// `chat TARGET`.
pub async fn chat(ctx: &Context, target: String, history: u32) -> Result<()> {
    let authed = ctx.connect_resumed_for(Lifetime::Live).await?;
    let result = run(&authed.client, authed.me.clone(), &target, history).await;
    authed.client.close().await;
    result
}

/// What one chat session keeps track of.
struct Chat<'a> {
    client: &'a Client,
    me: pb::User,
    conversation: pb::Conversation,
    names: Names,
    screen: Screen,
    /// Highest seq shown, and the oldest (for `/more`).
    newest: i64,
    oldest: i64,
    read_sent: i64,
    peer_read: i64,
    /// Highest seq of the user's own acked messages, and of those shown
    /// as seen by the peer.
    acked: i64,
    seen_shown: i64,
    typing_sent: Option<Instant>,
    typists: HashMap<i64, Instant>,
}

async fn run(client: &Client, me: pb::User, target: &str, history: u32) -> Result<()> {
    let mut events = client.events();
    let conversation = conversation_for(client, target).await?;
    let raw = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let _raw_mode = if raw {
        Some(RawMode::enter().context("switching the terminal to raw mode")?)
    } else {
        None
    };
    let mut chat = Chat {
        client,
        names: Names::default(),
        screen: Screen::new(raw),
        newest: 0,
        oldest: 0,
        read_sent: conversation.read_seq,
        peer_read: conversation.peer_read_seq,
        acked: 0,
        seen_shown: 0,
        typing_sent: None,
        typists: HashMap::new(),
        me,
        conversation,
    };
    chat.names.insert(&chat.me);
    if let Ok(members) = client.members(chat.conversation.id).await {
        for user in members.iter().filter_map(|m| m.user.as_ref()) {
            chat.names.insert(user);
        }
    }
    chat.names.learn(client, [chat.conversation.peer_id]).await;
    chat.screen.note(&format!(
        "── {} · conversation {} · /help for commands ──",
        render::title(&chat.conversation, &chat.names),
        chat.conversation.id
    ));
    chat.show_history(history).await;
    chat.mark_read().await;

    let mut keys = input::start(chat.screen.clone());
    let (jobs, mut reports, worker) = outbox::start(client.clone(), chat.conversation.id);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut leaving: Option<Instant> = None;
    let mut jobs = Some(jobs);
    loop {
        if let Some(since) = leaving
            && ((worker.is_finished() && chat.newest >= chat.acked) || since.elapsed() > FLUSH_LIMIT)
        {
            break;
        }
        tokio::select! {
            key = keys.recv(), if leaving.is_none() => match key {
                None | Some(Input::Quit) => {
                    leaving = Some(Instant::now());
                    jobs = None; // the worker ends after the queued jobs
                }
                Some(Input::Typing) => chat.typing().await,
                Some(Input::Line(line)) => {
                    if let Some(jobs) = &jobs
                        && !chat.command(&line, jobs).await
                    {
                        leaving = Some(Instant::now());
                    }
                    if leaving.is_some() {
                        jobs = None;
                    }
                }
            },
            event = events.recv() => match event {
                Ok(event) => {
                    if !chat.on_event(event).await {
                        break;
                    }
                }
                Err(RecvError::Lagged(n)) => chat.screen.note(&format!("! missed {n} events; /more shows history")),
                Err(RecvError::Closed) => break,
            },
            Some(report) = reports.recv() => chat.on_report(report),
            _ = tick.tick() => chat.refresh_status(),
        }
    }
    chat.screen.clear_prompt();
    Ok(())
}

impl Chat<'_> {
    fn conv_id(&self) -> i64 {
        self.conversation.id
    }

    async fn show_history(&mut self, limit: u32) {
        let before = if self.oldest > 0 { self.oldest } else { 0 };
        let batch = match self.client.history(self.conv_id(), before, limit).await {
            Ok(batch) => batch,
            Err(err) => return self.screen.note(&format!("! could not load history: {err}")),
        };
        let ids: Vec<i64> = batch.messages.iter().flat_map(Names::ids_in).collect();
        self.names.learn(self.client, ids).await;
        if batch.messages.is_empty() && before > 0 {
            return self.screen.note("(no older messages)");
        }
        let lines: Vec<String> = batch
            .messages
            .iter()
            .map(|m| render::line(m, &self.names))
            .collect();
        if !lines.is_empty() {
            self.screen.print(&lines.join("\n"));
        }
        if let Some(first) = batch.messages.first() {
            self.oldest = first.seq;
        }
        if let Some(last) = batch.messages.last() {
            self.newest = self.newest.max(last.seq);
        }
        if batch.has_more && before == 0 {
            self.screen.note("(/more for older messages)");
        }
    }

    async fn mark_read(&mut self) {
        if self.newest > self.read_sent {
            self.read_sent = self.newest;
            if let Err(err) = self.client.mark_read(self.conv_id(), self.newest).await {
                tracing::debug!(error = %err, "marking read failed");
            }
        }
    }

    async fn typing(&mut self) {
        if self.typing_sent.is_some_and(|at| at.elapsed() < TYPING_EVERY) {
            return;
        }
        // Commands are not messages: nobody needs to see them coming.
        if self.screen.prompt().input.starts_with('/') {
            return;
        }
        self.typing_sent = Some(Instant::now());
        // Rate limits and lost connections do not matter for a hint.
        let _ = self.client.typing(self.conv_id()).await;
    }

    /// Handles a typed line; `false` to leave.
    async fn command(&mut self, line: &str, jobs: &mpsc::UnboundedSender<Job>) -> bool {
        let line = line.trim_end();
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let seq = || {
            rest.split_whitespace()
                .next()
                .and_then(|s| s.trim_start_matches('#').parse::<i64>().ok())
        };
        let job = match word {
            "" => return true,
            "/quit" | "/exit" => return false,
            "/help" => {
                self.screen.note(HELP);
                return true;
            }
            "/more" => {
                self.screen.note("── older messages ──");
                self.show_history(20).await;
                return true;
            }
            "/image" | "/file" if !rest.is_empty() => Job::Upload {
                path: PathBuf::from(rest),
                kind: if word == "/image" {
                    pb::MessageKind::Image
                } else {
                    pb::MessageKind::File
                },
            },
            "/recall" if seq().is_some() => Job::Recall(seq().unwrap_or_default()),
            "/edit" if seq().is_some() => {
                let text = rest.split_once(' ').map(|(_, t)| t.trim()).unwrap_or_default();
                if text.is_empty() {
                    self.screen.note("usage: /edit SEQ NEW TEXT");
                    return true;
                }
                Job::Edit(seq().unwrap_or_default(), text.to_string())
            }
            "/download" => match rest.parse::<i64>() {
                Ok(file_id) => Job::Download(file_id),
                Err(_) => {
                    self.screen.note("usage: /download FILE_ID");
                    return true;
                }
            },
            w if w.starts_with('/') && !w.starts_with("//") => {
                self.screen
                    .note(&format!("unknown or incomplete command; {HELP}"));
                return true;
            }
            // `//text` sends a line starting with one slash.
            _ => Job::Text(
                line.strip_prefix('/')
                    .filter(|_| line.starts_with("//"))
                    .unwrap_or(line)
                    .to_string(),
            ),
        };
        self.typing_sent = None;
        let _ = jobs.send(job);
        true
    }

    /// Shows an event; `false` when the chat has to end.
    async fn on_event(&mut self, event: ClientEvent) -> bool {
        use pb::event::Kind;
        match event {
            ClientEvent::Server(Kind::Message(message)) if message.conv_id == self.conv_id() => {
                self.on_message(message).await;
            }
            ClientEvent::Server(Kind::Read(receipt)) if receipt.conv_id == self.conv_id() => {
                let direct = self.conversation.kind == pb::ConversationKind::Direct as i32;
                if direct && receipt.user_id != self.me.id && receipt.seq > self.peer_read {
                    self.peer_read = receipt.seq;
                    // Once per message of the user's: not again for later
                    // receipts that only cover edits or the peer's own lines.
                    if self.acked > self.seen_shown && receipt.seq >= self.acked {
                        self.seen_shown = self.acked;
                        let who = self.names.get(receipt.user_id);
                        self.screen.note(&format!("  ✓ seen by {who}"));
                    }
                }
            }
            ClientEvent::Server(Kind::Typing(notice))
                if notice.conv_id == self.conv_id() && notice.user_id != self.me.id =>
            {
                self.names.learn(self.client, [notice.user_id]).await;
                self.typists.insert(notice.user_id, Instant::now());
                if !self.screen.is_raw() {
                    self.screen
                        .note(&format!("({} is typing…)", self.names.get(notice.user_id)));
                }
                self.refresh_status();
            }
            ClientEvent::Server(Kind::ConversationUpdated(updated)) if updated.id == self.conv_id() => {
                self.conversation.name = updated.name;
                self.conversation.member_count = updated.member_count;
            }
            ClientEvent::Server(Kind::ConversationRemoved(removed)) if removed.conv_id == self.conv_id() => {
                self.screen
                    .note("! you are no longer a member of this conversation");
                return false;
            }
            ClientEvent::State(ConnectionState::Reconnecting { attempt, .. }) => {
                self.screen
                    .set_status(&format!("reconnecting (attempt {attempt})…"));
            }
            ClientEvent::State(ConnectionState::Connected) => {
                self.screen.set_status("");
                self.screen.note("(reconnected)");
            }
            ClientEvent::State(ConnectionState::LoggedOut) => {
                self.screen.note("! this session was signed out");
                return false;
            }
            ClientEvent::State(ConnectionState::Closed) => {
                self.screen.note("! disconnected");
                return false;
            }
            _ => {}
        }
        true
    }

    async fn on_message(&mut self, message: pb::Message) {
        let meta = matches!(
            pb::MessageKind::try_from(message.kind),
            Ok(pb::MessageKind::Edit | pb::MessageKind::Recall)
        );
        // History may already have shown it.
        if message.seq <= self.newest && !meta {
            return;
        }
        self.names.learn(self.client, Names::ids_in(&message)).await;
        self.typists.remove(&message.sender_id);
        self.refresh_status();
        let text = render::line(&message, &self.names);
        if meta {
            self.screen.note(&text);
        } else {
            self.screen.print(&text);
        }
        self.newest = self.newest.max(message.seq);
        if message.sender_id != self.me.id {
            self.mark_read().await;
        } else {
            // Sent from another device (or echoed): it is read by its author.
            self.read_sent = self.read_sent.max(message.seq);
        }
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Sent(ack) => self.acked = self.acked.max(ack.seq),
            Report::Note(text) => self.screen.note(&text),
            Report::Status(text) => {
                self.screen.prompt().status = text;
                self.refresh_status();
                self.screen.redraw();
            }
        }
    }

    /// Typing notices expire; the status shows them unless work is going on.
    fn refresh_status(&mut self) {
        self.typists.retain(|_, at| at.elapsed() < TYPING_SHOWN);
        let busy = {
            let prompt = self.screen.prompt();
            !prompt.status.is_empty() && !prompt.status.contains("typing")
        };
        if busy {
            return self.screen.redraw();
        }
        let mut typists: Vec<String> = self.typists.keys().map(|id| self.names.get(*id)).collect();
        typists.sort();
        let status = match typists.len() {
            0 => String::new(),
            1 => format!("{} is typing…", typists[0]),
            _ => format!("{} are typing…", typists.join(", ")),
        };
        self.screen.set_status(&status);
    }
}
