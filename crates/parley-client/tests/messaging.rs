//! The message stream and sending against the in-process test server:
//! gaps are filled, duplicates dropped, missed messages caught up after a
//! reconnect, and a send whose ack was lost is resent exactly once.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use parley_client::{Client, ClientEvent, ConnectionState, OutgoingMessage, pb};
use support::{Control, TestServer, wait_for};
use tokio::sync::broadcast;

const BOB: i64 = 2;

/// The seqs of the next `n` message events of `conv_id`.
async fn next_seqs(events: &mut broadcast::Receiver<ClientEvent>, conv_id: i64, n: usize) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        let event = wait_for(
            events,
            |e| matches!(e, ClientEvent::Server(pb::event::Kind::Message(m)) if m.conv_id == conv_id),
        )
        .await;
        if let ClientEvent::Server(pb::event::Kind::Message(m)) = event {
            seqs.push(m.seq);
        }
    }
    seqs
}

/// No message event arrives within a short while.
async fn assert_quiet(events: &mut broadcast::Receiver<ClientEvent>) {
    let quiet = tokio::time::timeout(Duration::from_millis(200), async {
        loop {
            if let Ok(ClientEvent::Server(pb::event::Kind::Message(m))) = events.recv().await {
                return m;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "unexpected message {quiet:?}");
}

async fn logged_in(server: &TestServer) -> Client {
    let client = Client::connect(server.pinned()).await.unwrap();
    client.login("alice", "pw").await.unwrap();
    client
}

#[tokio::test]
async fn old_messages_are_history_and_new_ones_stream_in_order() {
    let server = TestServer::start(10_000).await;
    for i in 0..3 {
        server.append(102, BOB, &format!("old {i}"));
    }
    let client = Client::connect(server.pinned()).await.unwrap();
    let mut events = client.events();
    client.login("alice", "pw").await.unwrap();
    assert_eq!(client.sync_cursors().get(&102), Some(&3), "baseline at max_seq");

    server.post(102, BOB, "new");
    assert_eq!(next_seqs(&mut events, 102, 1).await, vec![4]);
    let history = client.history(102, 0, 10).await.unwrap();
    assert_eq!(history.messages.len(), 4);
    client.close().await;
}

#[tokio::test]
async fn restored_cursors_are_caught_up_at_login() {
    let server = TestServer::start(10_000).await;
    for i in 0..5 {
        server.append(102, BOB, &format!("m{i}"));
    }
    let client = Client::connect(server.pinned()).await.unwrap();
    client.set_sync_cursor(102, 2);
    let mut events = client.events();
    client.login("alice", "pw").await.unwrap();
    assert_eq!(next_seqs(&mut events, 102, 3).await, vec![3, 4, 5]);
    assert_eq!(client.sync_cursors()[&102], 5);
    client.close().await;
}

#[tokio::test]
async fn gaps_are_filled_and_duplicates_dropped() {
    let server = TestServer::start(10_000).await;
    server.append(102, BOB, "before");
    let client = logged_in(&server).await;
    let mut events = client.events();

    server.append(102, BOB, "lost 2");
    server.append(102, BOB, "lost 3");
    let fourth = server.post(102, BOB, "four");
    assert_eq!(next_seqs(&mut events, 102, 3).await, vec![2, 3, 4]);

    server.push_message(fourth);
    assert_quiet(&mut events).await;
    server.post(102, BOB, "five");
    assert_eq!(next_seqs(&mut events, 102, 1).await, vec![5]);
    client.close().await;
}

#[tokio::test]
async fn a_conversation_that_appears_later_is_delivered_from_its_start() {
    let server = TestServer::start(10_000).await;
    let client = logged_in(&server).await;
    let mut events = client.events();
    // Created after login; its first push was lost.
    server.append(103, 3, "hello");
    server.post(103, 3, "anyone?");
    assert_eq!(next_seqs(&mut events, 103, 2).await, vec![1, 2]);
    client.close().await;
}

#[tokio::test]
async fn messages_missed_while_disconnected_arrive_after_the_reconnect() {
    let server = TestServer::start(10_000).await;
    server.append(102, BOB, "seen");
    let client = logged_in(&server).await;
    let mut events = client.events();
    server.post(102, BOB, "live");
    assert_eq!(next_seqs(&mut events, 102, 1).await, vec![2]);

    server.stats.lock().unwrap().chat.silent = true;
    server.control(Control::DropAll);
    wait_for(&mut events, |e| {
        matches!(e, ClientEvent::State(ConnectionState::Reconnecting { .. }))
    })
    .await;
    for i in 0..250 {
        server.append(102, BOB, &format!("missed {i}"));
    }
    server.append(104, 4, "other conversation");
    wait_for(&mut events, |e| {
        matches!(e, ClientEvent::State(ConnectionState::Connected))
    })
    .await;
    let seqs = next_seqs(&mut events, 102, 250).await;
    assert_eq!(seqs, (3..=252).collect::<Vec<_>>());
    assert_eq!(
        next_seqs(&mut events, 104, 1).await,
        vec![1],
        "new meanwhile: from its start"
    );
    assert_eq!(client.sync_cursors()[&104], 1);
    assert_quiet(&mut events).await;
    client.close().await;
}

#[tokio::test]
async fn a_send_whose_ack_was_lost_is_stored_once() {
    let server = TestServer::start(10_000).await;
    let client = logged_in(&server).await;
    let conv = client.open_direct(BOB).await.unwrap();
    let mut events = client.events();

    server.stats.lock().unwrap().chat.hang_up_before_ack = 1;
    let message = OutgoingMessage::text(conv.id, "exactly once");
    let ack = client.send(message.clone()).await.unwrap();
    assert!(ack.duplicate, "the resend found the stored message");
    assert_eq!(ack.seq, 1);
    {
        let stats = server.stats.lock().unwrap();
        assert_eq!(stats.chat.send_attempts, 2);
        assert_eq!(stats.chat.conversations[&conv.id].len(), 1);
    }
    // The own message arrives once on the stream.
    assert_eq!(next_seqs(&mut events, conv.id, 1).await, vec![1]);

    let again = client.send(message).await.unwrap();
    assert_eq!((again.seq, again.duplicate), (1, true));
    let ack = client.send_text(conv.id, "second").await.unwrap();
    assert_eq!((ack.seq, ack.duplicate), (2, false));
    assert_eq!(next_seqs(&mut events, conv.id, 1).await, vec![2]);
    assert_quiet(&mut events).await;
    client.close().await;
}

#[tokio::test]
async fn server_refusals_are_not_resent() {
    let server = TestServer::start(10_000).await;
    let client = logged_in(&server).await;
    let err = client.send_text(999, "nowhere").await.unwrap_err();
    assert_eq!(err.code(), Some(pb::ErrorCode::NotFound));
    assert_eq!(server.stats.lock().unwrap().chat.send_attempts, 1);
    client.close().await;
}

#[tokio::test]
async fn a_send_on_a_closed_client_fails_at_once() {
    let server = TestServer::start(10_000).await;
    let mut config = server.pinned();
    config.reconnect = false;
    let client = Client::connect(config).await.unwrap();
    client.login("alice", "pw").await.unwrap();
    let conv = client.open_direct(BOB).await.unwrap();
    server.stats.lock().unwrap().chat.hang_up_before_ack = 1;
    let started = std::time::Instant::now();
    let err = client.send_text(conv.id, "lost").await.unwrap_err();
    assert!(matches!(err, parley_client::ClientError::Disconnected), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn catch_up_pages_through_every_conversation() {
    let server = TestServer::start(10_000).await;
    for i in 0..450 {
        server.append(102, BOB, &format!("m{i}"));
    }
    server.append(104, 4, "x");
    let client = logged_in(&server).await;
    let mut after = HashMap::from([(102, 400)]);
    let messages = client.catch_up(&mut after).await.unwrap();
    let seqs: Vec<(i64, i64)> = messages.iter().map(|m| (m.conv_id, m.seq)).collect();
    let mut expected: Vec<(i64, i64)> = (401..=450).map(|s| (102, s)).collect();
    expected.push((104, 1));
    assert_eq!(seqs, expected);
    assert_eq!(after, HashMap::from([(102, 450), (104, 1)]));
    assert!(client.catch_up(&mut after).await.unwrap().is_empty());
    client.close().await;
}

#[tokio::test]
async fn conversation_requests_round_trip() {
    let server = TestServer::start(10_000).await;
    let client = logged_in(&server).await;
    let conv = client.open_direct(BOB).await.unwrap();
    assert_eq!(conv.peer_id, BOB);
    let group = client.create_group("friends", &[BOB, 3]).await.unwrap();
    assert_eq!(group.kind, pb::ConversationKind::Group as i32);
    client.invite(group.id, &[4]).await.unwrap();
    client.rename_group(group.id, "pals").await.unwrap();
    client.kick(group.id, 4).await.unwrap();
    client.leave_group(group.id).await.unwrap();
    assert_eq!(client.members(conv.id).await.unwrap().len(), 2);
    assert_eq!(client.conversations().await.unwrap().len(), 2);

    let ack = client.send_text(conv.id, "findable words").await.unwrap();
    client.mark_read(conv.id, ack.seq).await.unwrap();
    client.typing(conv.id).await.unwrap();
    client.edit(conv.id, ack.seq, "changed").await.unwrap();
    client.recall(conv.id, ack.seq).await.unwrap();
    client.delete_for_me(conv.id, &[ack.seq]).await.unwrap();
    let found = client.search("findable", Some(conv.id), 10, "").await.unwrap();
    assert_eq!(found.messages.len(), 1);
    let batch = client.sync(conv.id, 0, 10).await.unwrap();
    assert_eq!(batch.messages.len(), 3, "the text, its edit and its recall");
    assert_eq!(
        server.stats.lock().unwrap().chat.marks,
        vec![(conv.id, 1), (conv.id, 0)]
    );
    client.close().await;
}
