//! The typed requests about conversations and their messages (everything
//! but sending, which lives in `outgoing.rs`).
//!
//! Like `api.rs`: build the request, send it, unpack the one answer kind
//! expected. Membership changes are answered with `Ok` (or the updated
//! conversation, which is accepted too); the changes themselves reach every
//! member as `ConversationUpdated` events.

use std::collections::HashMap;

use parley_proto::pb;
use pb::client_frame::Body as Req;
use pb::server_frame::Body as Resp;

use crate::api::expect_body;
use crate::client::Client;
use crate::delivery::{Inbound, SYNC_PAGE};
use crate::error::ClientError;
use crate::link::unexpected;

impl Client {
    /// Sends `body` and accepts `Ok` or an updated conversation as success.
    async fn request_change(&self, body: Req) -> Result<(), ClientError> {
        match self.request(body).await? {
            Resp::Ok(_) | Resp::Conversation(_) => Ok(()),
            other => Err(unexpected("Ok", &other)),
        }
    }

    /// The direct conversation with a friend, created on first use.
    pub async fn open_direct(&self, user_id: i64) -> Result<pb::Conversation, ClientError> {
        let body = Req::OpenDirect(pb::OpenDirect { user_id });
        expect_body!(self.request(body).await?, Conversation)
    }

    /// Creates a group owned by the user with `members` (friends) in it.
    pub async fn create_group(&self, name: &str, members: &[i64]) -> Result<pb::Conversation, ClientError> {
        let body = Req::CreateGroup(pb::CreateGroup {
            name: name.into(),
            member_ids: members.to_vec(),
        });
        expect_body!(self.request(body).await?, Conversation)
    }

    /// Adds friends to a group.
    pub async fn invite(&self, conv_id: i64, users: &[i64]) -> Result<(), ClientError> {
        self.request_change(Req::InviteMembers(pb::InviteMembers {
            conv_id,
            user_ids: users.to_vec(),
        }))
        .await
    }

    /// Leaves a group.
    pub async fn leave_group(&self, conv_id: i64) -> Result<(), ClientError> {
        self.request_change(Req::LeaveGroup(pb::LeaveGroup { conv_id }))
            .await
    }

    /// Removes a member from a group (owner or admin only).
    pub async fn kick(&self, conv_id: i64, user_id: i64) -> Result<(), ClientError> {
        self.request_change(Req::KickMember(pb::KickMember { conv_id, user_id }))
            .await
    }

    /// Renames a group.
    pub async fn rename_group(&self, conv_id: i64, name: &str) -> Result<(), ClientError> {
        self.request_change(Req::RenameGroup(pb::RenameGroup {
            conv_id,
            name: name.into(),
        }))
        .await
    }

    /// Changes a member's role (owner only).
    pub async fn set_role(&self, conv_id: i64, user_id: i64, role: pb::Role) -> Result<(), ClientError> {
        self.request_change(Req::SetMemberRole(pb::SetMemberRole {
            conv_id,
            user_id,
            role: role as i32,
        }))
        .await
    }

    /// The user's conversations, with unread counts, last messages and read
    /// pointers as this user sees them.
    pub async fn conversations(&self) -> Result<Vec<pb::Conversation>, ClientError> {
        let body = Req::ListConversations(pb::ListConversations {});
        Ok(expect_body!(self.request(body).await?, ConversationList)?.conversations)
    }

    /// The members of a conversation with their roles and read pointers.
    pub async fn members(&self, conv_id: i64) -> Result<Vec<pb::Member>, ClientError> {
        let body = Req::ListMembers(pb::ListMembers { conv_id });
        Ok(expect_body!(self.request(body).await?, MemberList)?.members)
    }

    /// Messages after `after_seq`, ascending, at most `limit`, edits and
    /// recalls included (as their own messages). Continue from
    /// `through_seq` while `has_more`.
    pub async fn sync(
        &self,
        conv_id: i64,
        after_seq: i64,
        limit: u32,
    ) -> Result<pb::MessageBatch, ClientError> {
        let body = Req::SyncMessages(pb::SyncMessages {
            conv_id,
            after_seq,
            limit,
        });
        expect_body!(self.request(body).await?, MessageBatch)
    }

    /// Up to `limit` messages before `before_seq` (0 = the newest),
    /// returned ascending, with edits and recalls already applied.
    pub async fn history(
        &self,
        conv_id: i64,
        before_seq: i64,
        limit: u32,
    ) -> Result<pb::MessageBatch, ClientError> {
        let body = Req::FetchHistory(pb::FetchHistory {
            conv_id,
            before_seq,
            limit,
        });
        expect_body!(self.request(body).await?, MessageBatch)
    }

    /// Moves the user's read pointer; the user's other devices (and, in a
    /// direct conversation, the peer) get a `ReadReceipt`.
    pub async fn mark_read(&self, conv_id: i64, seq: i64) -> Result<(), ClientError> {
        self.request_ok(Req::MarkRead(pb::MarkRead { conv_id, seq }))
            .await
    }

    /// Tells the other members the user is typing (rate limited by the server).
    pub async fn typing(&self, conv_id: i64) -> Result<(), ClientError> {
        self.request_ok(Req::SetTyping(pb::SetTyping { conv_id })).await
    }

    /// Hides messages for this user only, on all their devices.
    pub async fn delete_for_me(&self, conv_id: i64, seqs: &[i64]) -> Result<(), ClientError> {
        self.request_ok(Req::DeleteForMe(pb::DeleteForMe {
            conv_id,
            seqs: seqs.to_vec(),
        }))
        .await
    }

    /// Searches the user's messages by text, in one conversation or all,
    /// a page at a time (`cursor`: the previous page's `next_cursor`).
    pub async fn search(
        &self,
        query: &str,
        conv_id: Option<i64>,
        limit: u32,
        cursor: &str,
    ) -> Result<pb::SearchResults, ClientError> {
        let body = Req::SearchMessages(pb::SearchMessages {
            query: query.into(),
            conv_id: conv_id.unwrap_or(0),
            limit,
            cursor: cursor.into(),
        });
        expect_body!(self.request(body).await?, SearchResults)
    }

    /// Every message after `after` (conversation id → seq, missing = 0) in
    /// every conversation of the user, ascending per conversation, paging
    /// `SyncMessages` until caught up. `after` is moved to what was
    /// covered. Independent of the event stream, which it neither feeds nor
    /// reads.
    pub async fn catch_up(&self, after: &mut HashMap<i64, i64>) -> Result<Vec<pb::Message>, ClientError> {
        let mut messages = Vec::new();
        for conversation in self.conversations().await? {
            let conv_id = conversation.id;
            let mut cursor = after.get(&conv_id).copied().unwrap_or(0);
            while cursor < conversation.max_seq {
                let batch = match self.sync(conv_id, cursor, SYNC_PAGE).await {
                    Ok(batch) => batch,
                    // Left meanwhile: nothing more to read there.
                    Err(err) if err.code() == Some(pb::ErrorCode::NotFound) => break,
                    Err(err) => return Err(err),
                };
                let mut next = cursor.max(batch.through_seq);
                for message in batch.messages {
                    if message.seq > cursor {
                        next = next.max(message.seq);
                        messages.push(message);
                    }
                }
                if next <= cursor {
                    break;
                }
                cursor = next;
                after.insert(conv_id, cursor);
                if !batch.has_more {
                    break;
                }
            }
        }
        Ok(messages)
    }

    /// Has the delivery task catch up after a login or resume, so that the
    /// event stream's starting point precedes everything that happens after
    /// this returns (see [`Client::set_sync_cursor`]). Bounded by twice the
    /// request timeout; the catch-up itself goes on if that passes.
    pub(crate) async fn catch_up_stream(&self) {
        if !self.shared.config.message_sync {
            return;
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        if !self.shared.to_delivery(Inbound::CatchUp(done)) {
            return;
        }
        let limit = self.shared.config.request_timeout.saturating_mul(2);
        if tokio::time::timeout(limit, wait).await.is_err() {
            tracing::warn!("the first catch-up of the message stream is taking long; going on");
        }
    }
}
