//! Parley's wire protocol.
//!
//! The schema lives in `proto/parley.proto` so that any language can speak it;
//! this crate holds the generated types ([`pb`]), the length-prefixed framing
//! ([`frame`]) and small helpers both ends share. It does no I/O of its own:
//! the codec plugs into `tokio_util::codec::Framed`, and [`frame::decode_payload`]
//! is a pure function the fuzzer and property tests drive directly.

pub mod frame;

/// Types generated from `proto/parley.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/parley.v1.rs"));
}

pub use frame::{FrameCodec, FrameError};

/// The protocol version this build speaks; sent in `Hello` and `Welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default upper bound for one frame's payload.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

impl pb::Error {
    /// An error with a code and a human-readable message.
    pub fn new(code: pb::ErrorCode, message: impl Into<String>) -> Self {
        pb::Error {
            code: code as i32,
            message: message.into(),
            retry_after_ms: 0,
        }
    }

    /// The typed code, `ErrorCodeUnspecified` for a code this build does not know.
    pub fn kind(&self) -> pb::ErrorCode {
        pb::ErrorCode::try_from(self.code).unwrap_or(pb::ErrorCode::Unspecified)
    }
}

impl std::fmt::Display for pb::Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?})", self.message, self.kind())
    }
}

impl std::error::Error for pb::Error {}

impl pb::ServerFrame {
    /// A response frame for `request_id`.
    pub fn reply(request_id: u64, body: pb::server_frame::Body) -> Self {
        pb::ServerFrame {
            request_id,
            body: Some(body),
        }
    }

    /// An error response for `request_id` (0 = connection-level).
    pub fn error(request_id: u64, error: pb::Error) -> Self {
        Self::reply(request_id, pb::server_frame::Body::Error(error))
    }

    /// A server-pushed event.
    pub fn event(kind: pb::event::Kind) -> Self {
        Self::reply(0, pb::server_frame::Body::Event(pb::Event { kind: Some(kind) }))
    }
}

/// Short name of a frame's request body, `"unknown"` when it has none this build knows.
pub fn request_name_opt(frame: &pb::ClientFrame) -> &'static str {
    frame.body.as_ref().map_or("unknown", request_name)
}

/// Short name of a client request body, for metrics and logs (never its contents).
pub fn request_name(body: &pb::client_frame::Body) -> &'static str {
    use pb::client_frame::Body as B;
    match body {
        B::Hello(_) => "hello",
        B::Ping(_) => "ping",
        B::Register(_) => "register",
        B::Login(_) => "login",
        B::Resume(_) => "resume",
        B::Logout(_) => "logout",
        B::ListSessions(_) => "list_sessions",
        B::RevokeSession(_) => "revoke_session",
        B::ChangePassword(_) => "change_password",
        B::GetProfile(_) => "get_profile",
        B::UpdateProfile(_) => "update_profile",
        B::SearchUsers(_) => "search_users",
        B::SendFriendRequest(_) => "send_friend_request",
        B::ListFriendRequests(_) => "list_friend_requests",
        B::AnswerFriendRequest(_) => "answer_friend_request",
        B::CancelFriendRequest(_) => "cancel_friend_request",
        B::RemoveFriend(_) => "remove_friend",
        B::BlockUser(_) => "block_user",
        B::UnblockUser(_) => "unblock_user",
        B::SetRemark(_) => "set_remark",
        B::ListFriends(_) => "list_friends",
        B::ListBlocked(_) => "list_blocked",
        B::OpenDirect(_) => "open_direct",
        B::CreateGroup(_) => "create_group",
        B::InviteMembers(_) => "invite_members",
        B::LeaveGroup(_) => "leave_group",
        B::KickMember(_) => "kick_member",
        B::RenameGroup(_) => "rename_group",
        B::SetMemberRole(_) => "set_member_role",
        B::ListConversations(_) => "list_conversations",
        B::ListMembers(_) => "list_members",
        B::SendMessage(_) => "send_message",
        B::SyncMessages(_) => "sync_messages",
        B::FetchHistory(_) => "fetch_history",
        B::MarkRead(_) => "mark_read",
        B::SetTyping(_) => "set_typing",
        B::RecallMessage(_) => "recall_message",
        B::EditMessage(_) => "edit_message",
        B::DeleteForMe(_) => "delete_for_me",
        B::SearchMessages(_) => "search_messages",
        B::StartCall(_) => "start_call",
        B::AnswerCall(_) => "answer_call",
        B::HangUp(_) => "hang_up",
        B::ListCalls(_) => "list_calls",
    }
}
