//! A client may pipeline far more sends than its outbound queue holds: the
//! server stops reading while half the queue is taken (each pending ack holds
//! a slot), so the client's own acks never make it look like a slow reader.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{raw_tls, start_server};
use futures_util::{SinkExt as _, StreamExt as _};
use parley_client::pb::{self, client_frame::Body as Req, server_frame::Body as Resp};
use parley_proto::{FrameCodec, PROTOCOL_VERSION};
use parley_store::testing::test_databases;
use tokio_util::codec::Framed;

#[tokio::test]
async fn thousands_of_pipelined_sends_are_all_acked_without_a_disconnect() {
    for db in test_databases().await {
        eprintln!("--- running on {}", db.label);
        // A small queue makes the point quickly: 2 000 sends through a 16-frame queue.
        let server = start_server(&db, |c| {
            c.outbound_queue = 16;
            c.messages_per_minute = 1_000_000;
        })
        .await;
        let (alice, _) = server.user("pipe_alice").await;
        let (bob, bob_user) = server.user("pipe_bob").await;
        alice.send_friend_request(bob_user.id, "hi").await.unwrap();
        let request = bob.friend_requests().await.unwrap().incoming.remove(0);
        bob.answer_friend_request(request.id, true).await.unwrap();
        let conv = alice.open_direct(bob_user.id).await.unwrap().id;
        let token = alice.session_token().unwrap();

        let tls = raw_tls(server.handle.client_addr, &server.fingerprint())
            .await
            .unwrap();
        let mut raw = Framed::new(tls, FrameCodec::<pb::ServerFrame, pb::ClientFrame>::new(1 << 20));
        let hello = Req::Hello(pb::Hello {
            protocol_version: PROTOCOL_VERSION,
            client_name: "pipeline-test".into(),
        });
        raw.send(pb::ClientFrame {
            request_id: 1,
            body: Some(hello),
        })
        .await
        .unwrap();
        raw.send(pb::ClientFrame {
            request_id: 2,
            body: Some(Req::Resume(pb::Resume { token })),
        })
        .await
        .unwrap();

        const N: u64 = 2_000;
        let (mut tx, mut rx) = raw.split();
        // Write every request before reading anything back.
        let writer = tokio::spawn(async move {
            for n in 0..N {
                let send = Req::SendMessage(pb::SendMessage {
                    conv_id: conv,
                    client_msg_id: format!("pipe-{n}"),
                    kind: pb::MessageKind::Text as i32,
                    text: format!("message {n}"),
                    ..Default::default()
                });
                tx.feed(pb::ClientFrame {
                    request_id: 100 + n,
                    body: Some(send),
                })
                .await
                .unwrap();
            }
            tx.flush().await.unwrap();
            tx
        });
        let mut acked = HashSet::new();
        let mut seqs = Vec::new();
        while (acked.len() as u64) < N {
            let frame = tokio::time::timeout(Duration::from_secs(60), rx.next())
                .await
                .expect("acks keep coming")
                .expect("the server kept the connection open")
                .expect("a valid frame");
            match frame.body {
                Some(Resp::MessageAck(ack)) => {
                    assert!(acked.insert(frame.request_id), "one ack per request");
                    seqs.push(ack.seq);
                }
                Some(Resp::Error(e)) if frame.request_id >= 100 => panic!("send refused: {e:?}"),
                _ => {}
            }
        }
        let _tx = writer.await.unwrap();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=N as i64).collect::<Vec<_>>(),
            "gap-free seqs on {}",
            db.label
        );
        server.stop().await;
    }
}
