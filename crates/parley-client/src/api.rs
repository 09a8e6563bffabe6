//! The typed request methods of [`Client`], one per protocol request.
//!
//! Each builds its request body, sends it with [`Client::request`] and
//! unpacks the one response kind it expects; anything else is a
//! [`ClientError::Protocol`]. Login state is remembered by the connection
//! task, not here, so raw requests behave the same.

use parley_proto::pb;
use pb::client_frame::Body as Req;

use crate::client::Client;
use crate::error::ClientError;

/// Unpacks the expected response variant or reports what came instead.
macro_rules! expect_body {
    ($response:expr, $variant:ident) => {
        match $response {
            pb::server_frame::Body::$variant(inner) => Ok(inner),
            other => Err($crate::link::unexpected(stringify!($variant), &other)),
        }
    };
}
pub(crate) use expect_body;

/// A user inside a response that must carry one.
fn required_user(user: Option<pb::User>) -> Result<pb::User, ClientError> {
    user.ok_or_else(|| ClientError::Protocol("response without a user".into()))
}

impl Client {
    /// Sends `body` and expects a plain `Ok`.
    pub(crate) async fn request_ok(&self, body: Req) -> Result<(), ClientError> {
        expect_body!(self.request(body).await?, Ok).map(|_| ())
    }

    /// Creates an account. Does not log in.
    pub async fn register(
        &self,
        username: &str,
        display_name: &str,
        password: &str,
    ) -> Result<pb::User, ClientError> {
        let body = Req::Register(pb::Register {
            username: username.into(),
            display_name: display_name.into(),
            password: password.into(),
        });
        required_user(expect_body!(self.request(body).await?, Registered)?.user)
    }

    /// Logs in with a password, as this client's device. The session token is
    /// remembered so a lost connection resumes the session by itself.
    ///
    /// Before returning, the message stream catches up (see
    /// [`Client::set_sync_cursor`]): subscribe to [`Client::events`] first
    /// to see the messages it delivers.
    pub async fn login(&self, username: &str, password: &str) -> Result<pb::LoggedIn, ClientError> {
        let body = Req::Login(pb::Login {
            username: username.into(),
            password: password.into(),
            device_name: self.shared.config.device_name.clone(),
        });
        let logged_in = expect_body!(self.request(body).await?, LoggedIn)?;
        self.catch_up_stream().await;
        Ok(logged_in)
    }

    /// Resumes a session from an earlier login; the token is remembered for
    /// automatic resumes. The answer carries no token. The message stream
    /// catches up before this returns, as after [`Client::login`].
    pub async fn resume(&self, token: &str) -> Result<pb::LoggedIn, ClientError> {
        let body = Req::Resume(pb::Resume { token: token.into() });
        let logged_in = expect_body!(self.request(body).await?, LoggedIn)?;
        self.catch_up_stream().await;
        Ok(logged_in)
    }

    /// Ends this session on the server and forgets its token. The connection
    /// stays open for a new login but is no longer re-established if lost.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.request_ok(Req::Logout(pb::Logout {})).await
    }

    /// The user's sessions on all devices.
    pub async fn sessions(&self) -> Result<Vec<pb::SessionInfo>, ClientError> {
        let list = expect_body!(
            self.request(Req::ListSessions(pb::ListSessions {})).await?,
            SessionList
        )?;
        Ok(list.sessions)
    }

    /// Revokes one of the user's sessions (possibly this one).
    pub async fn revoke_session(&self, session_id: i64) -> Result<(), ClientError> {
        self.request_ok(Req::RevokeSession(pb::RevokeSession { session_id }))
            .await
    }

    /// Changes the password; the server revokes the user's other sessions.
    pub async fn change_password(&self, old: &str, new: &str) -> Result<(), ClientError> {
        self.request_ok(Req::ChangePassword(pb::ChangePassword {
            old_password: old.into(),
            new_password: new.into(),
        }))
        .await
    }

    async fn get_profile(&self, who: pb::get_profile::Who) -> Result<pb::User, ClientError> {
        let body = Req::GetProfile(pb::GetProfile { who: Some(who) });
        required_user(expect_body!(self.request(body).await?, Profile)?.user)
    }

    /// Anyone's public profile, by id.
    pub async fn profile(&self, user_id: i64) -> Result<pb::User, ClientError> {
        self.get_profile(pb::get_profile::Who::UserId(user_id)).await
    }

    /// Anyone's public profile, by username.
    pub async fn profile_by_username(&self, username: &str) -> Result<pb::User, ClientError> {
        self.get_profile(pb::get_profile::Who::Username(username.into()))
            .await
    }

    /// Changes the fields given (`None` leaves a field as it is) and returns
    /// the updated profile.
    pub async fn update_profile(
        &self,
        display_name: Option<&str>,
        status_line: Option<&str>,
    ) -> Result<pb::User, ClientError> {
        let body = Req::UpdateProfile(pb::UpdateProfile {
            display_name: display_name.map(str::to_string),
            status_line: status_line.map(str::to_string),
        });
        required_user(expect_body!(self.request(body).await?, Profile)?.user)
    }

    /// Users whose username or display name starts with `query`, one page at
    /// a time: pass the previous page's `next_cursor`, empty for the first.
    pub async fn search_users(
        &self,
        query: &str,
        limit: u32,
        cursor: &str,
    ) -> Result<pb::UserPage, ClientError> {
        let body = Req::SearchUsers(pb::SearchUsers {
            query: query.into(),
            limit,
            cursor: cursor.into(),
        });
        expect_body!(self.request(body).await?, UserPage)
    }

    /// Asks `user_id` to become a friend.
    pub async fn send_friend_request(&self, user_id: i64, note: &str) -> Result<(), ClientError> {
        self.request_ok(Req::SendFriendRequest(pb::SendFriendRequest {
            user_id,
            note: note.into(),
        }))
        .await
    }

    /// Pending friend requests, incoming and outgoing.
    pub async fn friend_requests(&self) -> Result<pb::FriendRequestList, ClientError> {
        let body = Req::ListFriendRequests(pb::ListFriendRequests {});
        expect_body!(self.request(body).await?, FriendRequestList)
    }

    /// Accepts or declines an incoming friend request.
    pub async fn answer_friend_request(&self, request_id: i64, accept: bool) -> Result<(), ClientError> {
        self.request_ok(Req::AnswerFriendRequest(pb::AnswerFriendRequest {
            request_id,
            accept,
        }))
        .await
    }

    /// Withdraws an outgoing friend request.
    pub async fn cancel_friend_request(&self, request_id: i64) -> Result<(), ClientError> {
        self.request_ok(Req::CancelFriendRequest(pb::CancelFriendRequest { request_id }))
            .await
    }

    /// Ends a friendship.
    pub async fn remove_friend(&self, user_id: i64) -> Result<(), ClientError> {
        self.request_ok(Req::RemoveFriend(pb::RemoveFriend { user_id }))
            .await
    }

    /// Blocks a user: they can no longer send requests or messages.
    pub async fn block(&self, user_id: i64) -> Result<(), ClientError> {
        self.request_ok(Req::BlockUser(pb::BlockUser { user_id })).await
    }

    /// Lifts a block.
    pub async fn unblock(&self, user_id: i64) -> Result<(), ClientError> {
        self.request_ok(Req::UnblockUser(pb::UnblockUser { user_id }))
            .await
    }

    /// Sets this user's private nickname for a friend (empty clears it).
    pub async fn set_remark(&self, user_id: i64, remark: &str) -> Result<(), ClientError> {
        self.request_ok(Req::SetRemark(pb::SetRemark {
            user_id,
            remark: remark.into(),
        }))
        .await
    }

    /// The user's friends with remarks and presence.
    pub async fn friends(&self) -> Result<Vec<pb::Friend>, ClientError> {
        let list = expect_body!(
            self.request(Req::ListFriends(pb::ListFriends {})).await?,
            FriendList
        )?;
        Ok(list.friends)
    }

    /// The users this user has blocked.
    pub async fn blocked(&self) -> Result<Vec<pb::User>, ClientError> {
        let page = expect_body!(
            self.request(Req::ListBlocked(pb::ListBlocked {})).await?,
            UserPage
        )?;
        Ok(page.users)
    }
}
