//! The delivery contract (SPEC §3.3) on every engine: group commit, idempotent resends,
//! gap-free seqs under concurrency (also across two processes sharing MariaDB), effects, and
//! the read side (catch-up, history, unread, read pointers, delete-for-me).

mod support;

use std::collections::HashMap;

use parley_store::testing::mysql_db;
use parley_store::{Appended, Effect, NewMessage, Store, StoreError, StoreOptions};
use support::{T0, group, on_each_db, send, text, user};

/// All seqs stored in the conversation, by catch-up from 0 (viewer 0 hides nothing).
async fn all_seqs(store: &Store, conv: i64) -> Vec<i64> {
    let (rows, _) = store.messages_after(conv, 0, 0, 100_000).await.unwrap();
    rows.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn group_commit_assigns_gap_free_seqs_per_conversation_in_input_order() {
    on_each_db(async |store, label| {
        let (a, b) = (user(&store, "a").await, user(&store, "b").await);
        let convs = [
            group(&store, a, &[b]).await.id,
            group(&store, a, &[b]).await.id,
            group(&store, a, &[b]).await.id,
        ];
        let batch: Vec<NewMessage> = (0..500)
            .map(|i| {
                text(
                    convs[i * 7 % 3],
                    if i % 2 == 0 { a } else { b },
                    &format!("c{i}"),
                    &format!("m{i}"),
                )
            })
            .collect();
        let out = store.append_messages(&batch, T0 + 5).await.unwrap();
        assert_eq!(out.len(), 500, "[{label}]");

        let mut next: HashMap<i64, i64> = HashMap::new();
        for (m, a) in batch.iter().zip(&out) {
            let n = next.entry(m.conv_id).or_insert(0);
            *n += 1;
            assert_eq!(
                (a.seq, a.duplicate, a.created_at),
                (*n, false, T0 + 5),
                "[{label}]"
            );
        }
        for conv in convs {
            let n = next[&conv];
            assert_eq!(
                all_seqs(&store, conv).await,
                (1..=n).collect::<Vec<_>>(),
                "[{label}]"
            );
            assert_eq!(store.conversation(conv).await.unwrap().unwrap().max_seq, n);
        }
        // Each stored row is the input it came from.
        let (rows, _) = store.messages_after(convs[0], a, 0, 1000).await.unwrap();
        for row in rows {
            let i = out.iter().position(|o| o.id == row.id).unwrap();
            assert_eq!((row.conv_id, row.seq), (convs[0], out[i].seq));
            assert_eq!(
                (row.body.as_str(), row.sender_id),
                (batch[i].body.as_str(), batch[i].sender_id)
            );
            assert_eq!(row.client_msg_id, batch[i].client_msg_id);
        }
        // Ids are unique.
        let mut ids: Vec<i64> = out.iter().map(|o| o.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 500);
        assert!(store.append_messages(&[], T0).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn resends_inside_and_across_batches_store_nothing_new() {
    on_each_db(async |store, label| {
        let (a, b) = (user(&store, "a").await, user(&store, "b").await);
        let conv = group(&store, a, &[b]).await.id;
        let first = store
            .append_messages(&[text(conv, a, "x", "hello"), text(conv, a, "y", "second")], T0)
            .await
            .unwrap();

        // Same client id from another sender is a different message; same sender+id is not.
        let batch = [
            text(conv, a, "x", "hello again"),
            text(conv, b, "x", "bob's x"),
            text(conv, b, "x", "bob's x resent"),
            text(conv, a, "z", "new"),
            text(conv, a, "z", "new resent"),
        ];
        let out = store.append_messages(&batch, T0 + 100).await.unwrap();
        let expect_orig = |a: &Appended, orig: &Appended| {
            assert_eq!(
                (a.seq, a.id, a.created_at, a.duplicate),
                (orig.seq, orig.id, orig.created_at, true)
            );
        };
        expect_orig(&out[0], &first[0]);
        assert_eq!((out[1].seq, out[1].duplicate), (3, false), "[{label}]");
        expect_orig(&out[2], &out[1]);
        assert_eq!((out[3].seq, out[3].duplicate), (4, false));
        expect_orig(&out[4], &out[3]);

        assert_eq!(all_seqs(&store, conv).await, vec![1, 2, 3, 4], "[{label}]");
        assert_eq!(store.message(conv, 1).await.unwrap().unwrap().body, "hello");
        assert_eq!(store.message(conv, 3).await.unwrap().unwrap().body, "bob's x");
        assert_eq!(store.conversation(conv).await.unwrap().unwrap().max_seq, 4);

        // A batch of nothing but resends changes nothing.
        let again = store.append_messages(&batch, T0 + 200).await.unwrap();
        assert!(again.iter().all(|a| a.duplicate), "[{label}]");
        assert_eq!(again[1], out[2]);
        assert_eq!(store.conversation(conv).await.unwrap().unwrap().max_seq, 4);

        // A resent recall is not applied twice (its original time stays).
        let recall = NewMessage {
            kind: 8,
            body: String::new(),
            effect: Effect::Recall { target_seq: 4 },
            ..text(conv, a, "r", "")
        };
        store
            .append_messages(std::slice::from_ref(&recall), T0 + 300)
            .await
            .unwrap();
        let dup = store.append_messages(&[recall], T0 + 400).await.unwrap();
        assert!(dup[0].duplicate);
        assert_eq!(
            store.message(conv, 4).await.unwrap().unwrap().recalled_at,
            Some(T0 + 300)
        );
    })
    .await;
}

#[tokio::test]
async fn unknown_conversation_fails_the_whole_batch() {
    on_each_db(async |store, label| {
        let a = user(&store, "a").await;
        let conv = group(&store, a, &[]).await.id;
        let batch = [text(conv, a, "1", "ok"), text(-7, a, "2", "nowhere")];
        let err = store.append_messages(&batch, T0).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "[{label}] {err}");
        assert!(
            all_seqs(&store, conv).await.is_empty(),
            "[{label}] nothing stored"
        );
        assert_eq!(store.conversation(conv).await.unwrap().unwrap().max_seq, 0);
    })
    .await;
}

/// Four tasks append 250 messages each, in batches of `batch` (with a resend of the previous
/// batch's last message mixed in), to one conversation of `store`/`other`.
async fn hammer(stores: [Store; 2], conv: i64, sender: i64, batch: usize) -> Vec<i64> {
    let mut tasks = Vec::new();
    for t in 0..4 {
        let store = stores[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            let mut i = 0;
            while i < 250 {
                let n = batch.min(250 - i);
                let mut msgs: Vec<NewMessage> = (i..i + n)
                    .map(|k| text(conv, sender, &format!("t{t}-{k}"), &format!("{t}/{k}")))
                    .collect();
                if i > 0 {
                    msgs.push(text(conv, sender, &format!("t{t}-{}", i - 1), "resend"));
                }
                let out = store.append_messages(&msgs, T0).await.unwrap();
                assert!(out.last().unwrap().duplicate || i == 0);
                seqs.extend(out.iter().filter(|a| !a.duplicate).map(|a| a.seq));
                i += n;
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_one_conversation_are_gap_free() {
    on_each_db(async |store, label| {
        let a = user(&store, "a").await;
        let conv = group(&store, a, &[]).await.id;
        let seqs = hammer([store.clone(), store.clone()], conv, a, 7).await;
        let want: Vec<i64> = (1..=1000).collect();
        assert_eq!(seqs, want, "[{label}] acks");
        assert_eq!(all_seqs(&store, conv).await, want, "[{label}] stored");
        assert_eq!(store.conversation(conv).await.unwrap().unwrap().max_seq, 1000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_mariadb_append_gap_free() {
    let Some(db) = mysql_db().await else {
        return; // MariaDB unreachable outside CI: the harness already warned.
    };
    let node = |node_id| {
        let url = db.url.clone();
        async move {
            let opts = StoreOptions {
                node_id,
                max_connections: 4,
            };
            Store::connect(&url, opts).await.unwrap()
        }
    };
    let (one, two) = (node(1).await, node(2).await);
    let a = user(&one, "a").await;
    let conv = group(&one, a, &[]).await.id;
    let seqs = hammer([one.clone(), two.clone()], conv, a, 5).await;
    let want: Vec<i64> = (1..=1000).collect();
    assert_eq!(seqs, want);
    assert_eq!(all_seqs(&two, conv).await, want);
    one.close().await;
    two.close().await;
}

/// A deadlock between an append and another transaction costs the append one retry, not an
/// error: another transaction holds conversation 2 and then asks for conversation 1 while the
/// append holds 1 and waits for 2. InnoDB rolls back the lighter transaction (the append,
/// which has written nothing yet); the retry waits for the other to commit, then succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlocked_append_is_retried_and_succeeds() {
    use sqlx::Connection as _;
    let Some(db) = mysql_db().await else {
        return; // MariaDB unreachable outside CI: the harness already warned.
    };
    let store = db.open().await.unwrap();
    let a = user(&store, "a").await;
    let (one, two) = (group(&store, a, &[]).await.id, group(&store, a, &[]).await.id);
    let (low, high) = (one.min(two), one.max(two));
    let mut conn = sqlx::mysql::MySqlConnection::connect(&db.url).await.unwrap();
    let mut other = conn.begin().await.unwrap();
    // Weight: enough undo for InnoDB to prefer rolling back the append.
    for i in 0..50 {
        sqlx::query("UPDATE conversations SET last_msg_at = ? WHERE id = ?")
            .bind(i)
            .bind(high)
            .execute(&mut *other)
            .await
            .unwrap();
    }
    sqlx::query("SELECT id FROM conversations WHERE id = ? FOR UPDATE")
        .bind(high)
        .fetch_all(&mut *other)
        .await
        .unwrap();

    let appender = store.clone();
    let append = tokio::spawn(async move {
        let batch = [text(low, a, "x", "to low"), text(high, a, "y", "to high")];
        appender.append_messages(&batch, T0).await
    });
    // Wait until the append holds `low` and waits for `high` (its locking read is running).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE 'SELECT id, max_seq FROM conversations%FOR UPDATE'",
        )
        .fetch_one(&mut *other)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the append never waited for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Closing the cycle: one of the two is chosen as the deadlock victim.
    let closed = sqlx::query("SELECT id FROM conversations WHERE id = ? FOR UPDATE")
        .bind(low)
        .fetch_all(&mut *other)
        .await;
    assert!(
        closed.is_ok(),
        "the append, not the heavier transaction, is the victim: {closed:?}"
    );
    other.commit().await.unwrap();
    let out = append.await.unwrap().expect("append retried after the deadlock");
    assert_eq!(
        out.iter().map(|o| (o.seq, o.duplicate)).collect::<Vec<_>>(),
        vec![(1, false), (1, false)]
    );
    assert_eq!(all_seqs(&store, low).await, vec![1]);
    assert_eq!(all_seqs(&store, high).await, vec![1]);
    store.close().await;
}

#[tokio::test]
async fn one_call_with_a_thousand_messages() {
    on_each_db(async |store, label| {
        let a = user(&store, "a").await;
        let conv = group(&store, a, &[]).await.id;
        // Big enough bodies to need several INSERT statements by size as well as by rows.
        let body = "ü".repeat(6000);
        let batch: Vec<NewMessage> = (0..1000).map(|i| text(conv, a, &format!("{i}"), &body)).collect();
        let out = store.append_messages(&batch, T0).await.unwrap();
        let seqs: Vec<i64> = out.iter().map(|o| o.seq).collect();
        assert_eq!(seqs, (1..=1000).collect::<Vec<_>>(), "[{label}]");
        assert_eq!(all_seqs(&store, conv).await.len(), 1000);
        assert_eq!(store.message(conv, 1000).await.unwrap().unwrap().body, body);
    })
    .await;
}

#[tokio::test]
async fn edit_and_recall_change_their_target() {
    on_each_db(async |store, label| {
        let a = user(&store, "a").await;
        let conv = group(&store, a, &[]).await.id;
        let file = 77;
        let mut img = text(conv, a, "img", "caption");
        img.kind = 2;
        img.file_id = Some(file);
        store
            .append_messages(&[text(conv, a, "t", "typo"), img], T0)
            .await
            .unwrap();

        let edit = NewMessage {
            kind: 7,
            effect: Effect::Edit {
                target_seq: 1,
                text: "fixed".into(),
            },
            ..text(conv, a, "e", "fixed")
        };
        let recall = NewMessage {
            kind: 8,
            effect: Effect::Recall { target_seq: 2 },
            ..text(conv, a, "r", "")
        };
        // A later edit of the recalled message in the same batch is not applied.
        let late_edit = NewMessage {
            kind: 7,
            effect: Effect::Edit {
                target_seq: 2,
                text: "resurrected?".into(),
            },
            ..text(conv, a, "e2", "resurrected?")
        };
        let out = store
            .append_messages(&[edit, recall, late_edit], T0 + 50)
            .await
            .unwrap();
        assert_eq!(out.iter().map(|o| o.seq).collect::<Vec<_>>(), vec![3, 4, 5]);

        let edited = store.message(conv, 1).await.unwrap().unwrap();
        assert_eq!(
            (edited.body.as_str(), edited.edited_at),
            ("fixed", Some(T0 + 50)),
            "[{label}]"
        );
        let recalled = store.message(conv, 2).await.unwrap().unwrap();
        assert_eq!(recalled.recalled_at, Some(T0 + 50), "[{label}]");
        assert_eq!((recalled.body.as_str(), recalled.file_id), ("", None));
        assert_eq!(recalled.edited_at, None);
        // The meta messages record their target.
        let meta = store.message(conv, 4).await.unwrap().unwrap();
        assert_eq!((meta.kind, meta.target_seq), (8, 2));
        assert_eq!(store.message(conv, 1).await.unwrap().unwrap().target_seq, 0);
        // The image's file was granted to the conversation by the append.
        assert!(store.can_read_file(a, file).await.unwrap(), "[{label}]");

        // An edit of a message earlier in the same batch applies after its insert.
        let batch = [
            text(conv, a, "n", "draft"),
            NewMessage {
                kind: 7,
                effect: Effect::Edit {
                    target_seq: 6,
                    text: "final".into(),
                },
                ..text(conv, a, "ne", "final")
            },
        ];
        store.append_messages(&batch, T0 + 60).await.unwrap();
        assert_eq!(store.message(conv, 6).await.unwrap().unwrap().body, "final");
    })
    .await;
}

#[tokio::test]
async fn catch_up_skips_hidden_rows_but_advances_through_them() {
    on_each_db(async |store, label| {
        let (a, b) = (user(&store, "a").await, user(&store, "b").await);
        let conv = group(&store, a, &[b]).await.id;
        for i in 1..=6 {
            send(&store, conv, a, &format!("{i}"), &format!("m{i}")).await;
        }
        store.hide_messages(b, conv, &[2, 5, 6], T0).await.unwrap();
        store.hide_messages(b, conv, &[5], T0).await.unwrap(); // idempotent

        let seqs = |rows: &[parley_store::MessageRow]| rows.iter().map(|m| m.seq).collect::<Vec<_>>();
        let (rows, through) = store.messages_after(conv, b, 0, 3).await.unwrap();
        assert_eq!((seqs(&rows), through), (vec![1, 3], 3), "[{label}]");
        let (rows, through) = store.messages_after(conv, b, 3, 3).await.unwrap();
        assert_eq!(
            (seqs(&rows), through),
            (vec![4], 6),
            "[{label}] hidden tail still advances"
        );
        let (rows, through) = store.messages_after(conv, b, 6, 3).await.unwrap();
        assert_eq!((rows.len(), through), (0, 6), "[{label}] nothing scanned");
        assert_eq!(store.messages_after(conv, b, 2, 0).await.unwrap(), (vec![], 2));
        // Hiding is per user.
        let (rows, through) = store.messages_after(conv, a, 0, 100).await.unwrap();
        assert_eq!((rows.len(), through), (6, 6));
    })
    .await;
}

#[tokio::test]
async fn history_pages_backwards_in_ascending_order_without_meta_messages() {
    on_each_db(async |store, label| {
        let (a, b) = (user(&store, "a").await, user(&store, "b").await);
        let conv = group(&store, a, &[b]).await.id;
        assert_eq!(store.last_message(conv, a).await.unwrap(), None);
        for i in 1..=8 {
            send(&store, conv, a, &format!("{i}"), &format!("m{i}")).await;
        }
        let recall = NewMessage {
            kind: 8,
            effect: Effect::Recall { target_seq: 3 },
            ..text(conv, a, "r", "")
        };
        store.append_messages(&[recall], T0).await.unwrap(); // seq 9
        store.hide_messages(b, conv, &[7], T0).await.unwrap();

        let seqs = |rows: Vec<parley_store::MessageRow>| rows.into_iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(store.messages_before(conv, b, 0, 3).await.unwrap()),
            vec![5, 6, 8],
            "[{label}]"
        );
        assert_eq!(
            seqs(store.messages_before(conv, b, 5, 3).await.unwrap()),
            vec![2, 3, 4]
        );
        assert_eq!(seqs(store.messages_before(conv, b, 2, 3).await.unwrap()), vec![1]);
        assert_eq!(
            seqs(store.messages_before(conv, a, -1, 100).await.unwrap()),
            (1..=8).collect::<Vec<_>>()
        );
        assert!(store.messages_before(conv, a, 0, 0).await.unwrap().is_empty());

        // The list shows the newest visible non-meta message.
        assert_eq!(
            store.last_message(conv, a).await.unwrap().unwrap().seq,
            8,
            "[{label}]"
        );
        store.hide_messages(b, conv, &[8], T0).await.unwrap();
        assert_eq!(store.last_message(conv, b).await.unwrap().unwrap().seq, 6);
    })
    .await;
}

#[tokio::test]
async fn unread_counts_and_read_pointers() {
    on_each_db(async |store, label| {
        let (a, b, c) = (
            user(&store, "a").await,
            user(&store, "b").await,
            user(&store, "c").await,
        );
        let conv = group(&store, a, &[b]).await.id;
        for i in 1..=5 {
            send(&store, conv, a, &format!("a{i}"), "hi").await;
        }
        send(&store, conv, b, "b1", "mine").await; // 6: own messages never count
        let recall = NewMessage {
            kind: 8,
            effect: Effect::Recall { target_seq: 5 },
            ..text(conv, a, "r", "")
        };
        store.append_messages(&[recall], T0).await.unwrap(); // 7: recall of 5, meta
        store.hide_messages(b, conv, &[4], T0).await.unwrap();
        // Unread for b from 0: 1, 2, 3 (4 hidden, 5 recalled, 6 own, 7 meta).
        assert_eq!(store.unread_count(conv, b, 0).await.unwrap(), 3, "[{label}]");
        assert_eq!(store.unread_count(conv, b, 2).await.unwrap(), 1);
        assert_eq!(store.unread_count(conv, a, 0).await.unwrap(), 1);

        assert_eq!(store.mark_read(conv, b, 3).await.unwrap(), 3, "[{label}]");
        assert_eq!(
            store.mark_read(conv, b, 2).await.unwrap(),
            3,
            "[{label}] never backwards"
        );
        assert_eq!(
            store.mark_read(conv, b, 1_000).await.unwrap(),
            7,
            "[{label}] capped at max_seq"
        );
        assert_eq!(store.member(conv, b).await.unwrap().unwrap().read_seq, 7);
        assert_eq!(store.member(conv, a).await.unwrap().unwrap().read_seq, 0);
        assert!(matches!(
            store.mark_read(conv, c, 1).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.mark_read(-1, b, 1).await,
            Err(StoreError::NotFound)
        ));
    })
    .await;
}
