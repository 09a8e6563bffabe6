//! Sending: [`OutgoingMessage`] and the exactly-once resend loop.
//!
//! Every message carries an id the client generated (a UUIDv7). The server
//! stores a given id once and answers a repeat with the original ack, so
//! when the connection drops before the ack arrives the SDK simply sends
//! the same message again on the next connection — the message is stored
//! once and shown once, whatever happened to the first attempt. Edits and
//! recalls are sent the same way.

use std::time::Duration;

use parley_proto::pb;
use pb::client_frame::Body as Req;
use pb::server_frame::Body as Resp;
use tokio::time::Instant;

use crate::api::expect_body;
use crate::client::Client;
use crate::error::ClientError;
use crate::link::unexpected;

/// A message to send with [`Client::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The conversation to send to.
    pub conv_id: i64,
    /// The client's id for this message (at most 64 bytes): resending with
    /// the same id stores nothing new and returns the original ack.
    pub client_msg_id: String,
    /// Text, image or file.
    pub kind: pb::MessageKind,
    /// The text, or the caption of an image or file.
    pub text: String,
    /// The uploaded file of an image or file message (0 for text).
    pub file_id: i64,
}

impl OutgoingMessage {
    /// A text message with a fresh client id.
    pub fn text(conv_id: i64, text: impl Into<String>) -> Self {
        OutgoingMessage {
            conv_id,
            client_msg_id: new_client_msg_id(),
            kind: pb::MessageKind::Text,
            text: text.into(),
            file_id: 0,
        }
    }

    /// An image or file message (`kind` `Image` or `File`) for an uploaded
    /// file, with a caption and a fresh client id.
    pub fn file(conv_id: i64, kind: pb::MessageKind, file_id: i64, caption: impl Into<String>) -> Self {
        OutgoingMessage {
            conv_id,
            client_msg_id: new_client_msg_id(),
            kind,
            text: caption.into(),
            file_id,
        }
    }
}

/// A fresh client message id: a UUIDv7 (time-ordered) in its usual text form.
pub fn new_client_msg_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether a failed attempt may have been lost in transit, so that sending
/// the same request again is the way to find out.
fn worth_resending(err: &ClientError) -> bool {
    match err {
        ClientError::Disconnected | ClientError::Timeout | ClientError::Io(_) => true,
        ClientError::Server(e) => e.kind() == pb::ErrorCode::ShuttingDown,
        _ => false,
    }
}

impl Client {
    /// Sends a message and waits for the server's ack, which comes only
    /// after the message is durably stored. If the connection drops before
    /// the ack, the client waits for the reconnect and resends the same
    /// `client_msg_id` (so the message is stored exactly once), until it is
    /// acked, the server refuses it, or [`crate::ClientConfig::send_timeout`]
    /// passes. A resend of an already stored message is acked with
    /// `duplicate` set.
    pub async fn send(&self, msg: OutgoingMessage) -> Result<pb::MessageAck, ClientError> {
        let body = Req::SendMessage(pb::SendMessage {
            conv_id: msg.conv_id,
            client_msg_id: msg.client_msg_id,
            kind: msg.kind as i32,
            text: msg.text,
            file_id: msg.file_id,
        });
        expect_body!(self.request_exactly_once(body).await?, MessageAck)
    }

    /// Sends a text message; see [`Client::send`].
    pub async fn send_text(&self, conv_id: i64, text: &str) -> Result<pb::MessageAck, ClientError> {
        self.send(OutgoingMessage::text(conv_id, text)).await
    }

    /// Recalls one of the user's own messages (within the server's time
    /// limit). Members see it as recalled; its content is gone.
    pub async fn recall(&self, conv_id: i64, seq: i64) -> Result<(), ClientError> {
        let body = Req::RecallMessage(pb::RecallMessage {
            conv_id,
            seq,
            client_msg_id: new_client_msg_id(),
        });
        done(self.request_exactly_once(body).await?)
    }

    /// Replaces the text of one of the user's own text messages; members
    /// see it as edited.
    pub async fn edit(&self, conv_id: i64, seq: i64, text: &str) -> Result<(), ClientError> {
        let body = Req::EditMessage(pb::EditMessage {
            conv_id,
            seq,
            text: text.into(),
            client_msg_id: new_client_msg_id(),
        });
        done(self.request_exactly_once(body).await?)
    }

    /// Sends `body` until it is answered, resending it unchanged after a
    /// lost connection or an unanswered attempt, within the send timeout.
    /// Only for requests the server de-duplicates.
    async fn request_exactly_once(&self, body: Req) -> Result<Resp, ClientError> {
        let deadline = Instant::now() + self.shared.config.send_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            let err = match tokio::time::timeout_at(deadline, self.request(body.clone())).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(err)) => err,
            };
            let gone = self.shared.ended.is_cancelled() || self.shared.closing.is_cancelled();
            if gone || !worth_resending(&err) || Instant::now() >= deadline {
                return Err(err);
            }
            tracing::debug!(error = %err, "no answer to an idempotent request; sending it again");
            // Requests wait for the next connection by themselves; the pause
            // only keeps a flapping link from turning this into a busy loop.
            tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// Edits and recalls are answered with `Ok` or with the ack of the meta
/// message that carries them.
fn done(response: Resp) -> Result<(), ClientError> {
    match response {
        Resp::Ok(_) | Resp::MessageAck(_) => Ok(()),
        other => Err(unexpected("Ok", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_fresh_uuid_v7() {
        let a = OutgoingMessage::text(1, "hi");
        let b = OutgoingMessage::text(1, "hi");
        assert_ne!(a.client_msg_id, b.client_msg_id);
        let id = uuid::Uuid::parse_str(&a.client_msg_id).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert!(a.client_msg_id.len() <= 64);
        let f = OutgoingMessage::file(2, pb::MessageKind::Image, 9, "look");
        assert_eq!(
            (f.kind, f.file_id, f.text.as_str()),
            (pb::MessageKind::Image, 9, "look")
        );
    }

    #[test]
    fn only_lost_attempts_are_resent() {
        assert!(worth_resending(&ClientError::Disconnected));
        assert!(worth_resending(&ClientError::Timeout));
        let refused = ClientError::Server(pb::Error::new(pb::ErrorCode::Forbidden, "no"));
        assert!(!worth_resending(&refused));
        let limited = ClientError::Server(pb::Error::new(pb::ErrorCode::RateLimited, "slow down"));
        assert!(!worth_resending(&limited));
    }
}
