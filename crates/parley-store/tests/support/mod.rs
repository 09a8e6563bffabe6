//! Helpers shared by the messaging and conversation tests.
#![allow(dead_code)]

use parley_store::testing::test_databases;
use parley_store::{ConversationRow, Effect, NewMessage, Store};

/// A fixed "now" for deterministic timestamps.
pub const T0: i64 = 1_750_000_000_000;

/// Runs `body` once per available engine with a fresh store, labelled for failure messages.
pub async fn on_each_db(body: impl AsyncFn(Store, &'static str)) {
    for db in test_databases().await {
        let store = db
            .open()
            .await
            .unwrap_or_else(|e| panic!("[{}] open: {e}", db.label));
        body(store.clone(), db.label).await;
        store.close().await;
    }
}

/// A fresh user named `name`.
pub async fn user(store: &Store, name: &str) -> i64 {
    store.create_user(name, name, "hash", T0).await.unwrap().id
}

/// A group owned by `owner` with `members`, limit 500.
pub async fn group(store: &Store, owner: i64, members: &[i64]) -> ConversationRow {
    store.create_group(owner, "g", members, 500, T0).await.unwrap()
}

/// A TEXT message.
pub fn text(conv_id: i64, sender_id: i64, cid: &str, body: &str) -> NewMessage {
    NewMessage {
        conv_id,
        sender_id,
        client_msg_id: cid.to_owned(),
        kind: 1,
        body: body.to_owned(),
        file_id: None,
        effect: Effect::None,
    }
}

/// Appends one TEXT message and returns its seq.
pub async fn send(store: &Store, conv_id: i64, sender_id: i64, cid: &str, body: &str) -> i64 {
    let out = store
        .append_messages(&[text(conv_id, sender_id, cid, body)], T0)
        .await
        .unwrap();
    out[0].seq
}
