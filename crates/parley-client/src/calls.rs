//! Voice and video call signalling: the typed requests.
//!
//! The call rules run on the server (in `parley-call`); a client only asks
//! and listens. Call events arrive on [`Client::events`] like every other
//! server event: `CallIncoming` (ring), `CallRinging` (your call rings the
//! other side), `CallAccepted`, `CallAnsweredElsewhere` (stop ringing, unless
//! its `session_id` is this device's, see [`Client::session_id`]),
//! `CallLeft` and `CallEnded`. Every ended call also leaves a `CALL_RECORD`
//! message in its conversation.
//!
//! Media: pass the device's SDP offer with [`Client::start_call`] or
//! [`Client::answer_call`]; the returned [`pb::CallJoined`] carries the
//! relay's SDP answer for this device only. An empty offer takes part in the
//! signalling alone.

use parley_proto::pb;
use pb::client_frame::Body as Req;
use pb::server_frame::Body as Resp;

use crate::api::expect_body;
use crate::client::Client;
use crate::error::ClientError;
use crate::link::unexpected;

impl Client {
    /// Calls the peer of a direct conversation, or the other members of a
    /// group; joins the conversation's call instead if one is active (so two
    /// friends calling each other at once meet in one call). Fails with
    /// `BUSY` when the callee is in another call.
    pub async fn start_call(
        &self,
        conv_id: i64,
        kind: pb::MediaKind,
        offer_sdp: &str,
    ) -> Result<pb::CallJoined, ClientError> {
        let body = Req::StartCall(pb::StartCall {
            conv_id,
            kind: kind as i32,
            sdp_offer: offer_sdp.into(),
        });
        expect_body!(self.request(body).await?, CallJoined)
    }

    /// Accepts (`Some` with the relay's answer) or declines (`None`) a call
    /// on this device. Accepting again on the device already in the call
    /// renews its media leg, e.g. after a reconnect.
    pub async fn answer_call(
        &self,
        call_id: i64,
        accept: bool,
        offer_sdp: &str,
    ) -> Result<Option<pb::CallJoined>, ClientError> {
        let body = Req::AnswerCall(pb::AnswerCall {
            call_id,
            accept,
            sdp_offer: offer_sdp.into(),
        });
        match self.request(body).await? {
            Resp::CallJoined(joined) => Ok(Some(joined)),
            Resp::Ok(_) => Ok(None),
            other => Err(unexpected("CallJoined", &other)),
        }
    }

    /// Cancels (before an answer), declines (while ringing) or leaves a call.
    pub async fn hang_up(&self, call_id: i64) -> Result<(), ClientError> {
        self.request_ok(Req::HangUp(pb::HangUp { call_id })).await
    }

    /// The active calls the user is in or rung for (e.g. after a restart).
    pub async fn calls(&self) -> Result<Vec<pb::CallInfo>, ClientError> {
        let list = expect_body!(self.request(Req::ListCalls(pb::ListCalls {})).await?, CallList)?;
        Ok(list.calls)
    }

    /// The session id of this device's login (0 before one), which call
    /// events use to name devices.
    pub fn session_id(&self) -> i64 {
        self.shared.session().session_id
    }
}
