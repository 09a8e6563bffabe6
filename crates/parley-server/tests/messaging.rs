//! The delivery contract end to end, over TLS through the SDK, on every
//! database engine: multi-device fan-out in seq order with acks after commit,
//! offline catch-up, exactly-once under a retry storm, edits/recalls/deletes,
//! read receipts and typing, and refusals that store nothing.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestServer, assert_no_event, code, on_every_database, wait_event};
use parley_client::pb::{self, event::Kind as Ev};
use parley_client::{Client, OutgoingMessage};

/// Two friends; returns their clients, users and the direct conversation id.
async fn friends(server: &TestServer, a: &str, b: &str) -> (Client, pb::User, Client, pb::User, i64) {
    let (ca, ua) = server.user(a).await;
    let (cb, ub) = server.user(b).await;
    ca.send_friend_request(ub.id, "").await.unwrap();
    let req = cb.friend_requests().await.unwrap().incoming[0].id;
    cb.answer_friend_request(req, true).await.unwrap();
    let conv = ca.open_direct(ub.id).await.unwrap();
    (ca, ua, cb, ub, conv.id)
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Collects `n` message events for `conv`, in arrival order.
async fn collect(
    rx: &mut tokio::sync::broadcast::Receiver<parley_client::ClientEvent>,
    conv: i64,
    n: usize,
) -> Vec<pb::Message> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = wait_event(rx, "message", |k| match k {
            Ev::Message(m) if m.conv_id == conv => Some(m.clone()),
            _ => None,
        })
        .await;
        out.push(m);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_image_and_file_reach_all_four_devices_in_order() {
    on_every_database(
        |_| {},
        |server| async move {
            let (a1, _, b1, _, conv) = friends(&server, "ann", "ben").await;
            let a2 = server.device("ann").await;
            let b2 = server.device("ben").await;
            let mut rxs = [a1.events(), a2.events(), b1.events(), b2.events()];
            let store = server.handle.ctx().store.clone();

            let mut acks = Vec::new();
            let ack = a1.send_text(conv, "hello 👋").await.unwrap();
            // The ack means committed: the row is already readable.
            assert!(store.message(conv, ack.seq).await.unwrap().is_some());
            acks.push(ack);
            let image = a1
                .upload_bytes("cat.png", png(64, 48), Some("image/png"), |_, _| {})
                .await
                .unwrap();
            assert_eq!((image.width, image.height), (64, 48));
            let ack = a1
                .send(OutgoingMessage::file(
                    conv,
                    pb::MessageKind::Image,
                    image.file_id,
                    "a cat",
                ))
                .await
                .unwrap();
            assert!(store.message(conv, ack.seq).await.unwrap().is_some());
            acks.push(ack);
            let doc = a1
                .upload_bytes("notes.txt", b"some notes".to_vec(), None, |_, _| {})
                .await
                .unwrap();
            let ack = a1
                .send(OutgoingMessage::file(
                    conv,
                    pb::MessageKind::File,
                    doc.file_id,
                    "",
                ))
                .await
                .unwrap();
            assert!(store.message(conv, ack.seq).await.unwrap().is_some());
            acks.push(ack);
            assert_eq!(acks.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1, 2, 3]);

            for rx in &mut rxs {
                let got = collect(rx, conv, 3).await;
                assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
                assert_eq!(got[0].text, "hello 👋");
                assert_eq!(got[1].kind, pb::MessageKind::Image as i32);
                assert_eq!(got[1].file.as_ref().map(|f| f.has_thumbnail), Some(true));
                assert_eq!(got[2].file.as_ref().map(|f| f.name.as_str()), Some("notes.txt"));
            }
            // Members can fetch what was sent to them.
            let dir = tempfile::tempdir().unwrap();
            b2.download_file(doc.file_id, &dir.path().join("notes.txt"), |_, _| {})
                .await
                .unwrap();
            assert_eq!(
                std::fs::read(dir.path().join("notes.txt")).unwrap(),
                b"some notes"
            );
            assert!(!b1.thumbnail(image.file_id).await.unwrap().is_empty());

            // The conversation list shows the last message and unread count per viewer.
            let list = b1.conversations().await.unwrap();
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].unread, 3);
            assert_eq!(list[0].last_message.as_ref().map(|m| m.seq), Some(3));
            b1.mark_read(conv, 3).await.unwrap();
            assert_eq!(b2.conversations().await.unwrap()[0].unread, 0);
            assert_eq!(a1.conversations().await.unwrap()[0].peer_read_seq, 3);
            server
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_device_catches_up_on_500_messages() {
    let tweak = |cfg: &mut parley_server::Config| cfg.messages_per_minute = 100_000;
    on_every_database(tweak, |server| async move {
        let (a, _, b, _, conv) = friends(&server, "cat", "dog").await;
        a.send_text(conv, "before").await.unwrap();
        let token = b.session_token().unwrap();
        let mut cursors = HashMap::new();
        b.catch_up(&mut cursors).await.unwrap();
        assert_eq!(cursors.get(&conv), Some(&1));
        b.close().await;

        let mut sends = tokio::task::JoinSet::new();
        for chunk in 0..5 {
            let a = a.clone();
            sends.spawn(async move {
                for i in 0..100 {
                    a.send_text(conv, &format!("m{}", chunk * 100 + i)).await.unwrap();
                }
            });
        }
        while let Some(r) = sends.join_next().await {
            r.unwrap();
        }

        let back = server.client().await;
        back.resume(&token).await.unwrap();
        let missed = back.catch_up(&mut cursors).await.unwrap();
        assert_eq!(missed.len(), 500);
        let seqs: Vec<i64> = missed.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (2..=501).collect::<Vec<_>>(),
            "all 500, in order, no duplicates"
        );
        assert_eq!(cursors.get(&conv), Some(&501));
        // History pages backwards on demand.
        let page = back.history(conv, 0, 50).await.unwrap();
        assert_eq!(page.messages.first().map(|m| m.seq), Some(452));
        assert!(page.has_more);
        let older = back.history(conv, 452, 50).await.unwrap();
        assert_eq!(older.messages.last().map(|m| m.seq), Some(451));
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_storm_stores_each_client_id_once() {
    let tweak = |cfg: &mut parley_server::Config| cfg.messages_per_minute = 100_000;
    on_every_database(tweak, |server| async move {
        let (a, ua, _b, _, conv) = friends(&server, "eel", "fox").await;
        let msgs: Vec<OutgoingMessage> = (0..1000)
            .map(|i| OutgoingMessage::text(conv, format!("storm {i}")))
            .collect();
        let session = a
            .sessions()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.current)
            .unwrap()
            .id;
        let hub_ctx = server.handle.ctx().clone();
        // Cut the connection a few times while the sends are in flight.
        let cutter = tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                hub_ctx.hub.end_session(
                    ua.id,
                    session,
                    &pb::ServerFrame::error(0, pb::Error::new(pb::ErrorCode::Internal, "simulated drop")),
                );
            }
        });
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in msgs.chunks(100) {
            let (a, chunk) = (a.clone(), chunk.to_vec());
            tasks.spawn(async move {
                let mut acks = Vec::new();
                for m in chunk {
                    acks.push(a.send(m).await.expect("acked eventually"));
                }
                acks
            });
        }
        let mut first = HashMap::new();
        while let Some(r) = tasks.join_next().await {
            for ack in r.unwrap() {
                first.insert(ack.seq, ack);
            }
        }
        cutter.await.unwrap();
        // And the whole storm once more, on purpose: every one a duplicate.
        for m in &msgs {
            let ack = a.send(m.clone()).await.unwrap();
            assert!(ack.duplicate);
            assert!(first.contains_key(&ack.seq));
        }
        let conv_row = server
            .handle
            .ctx()
            .store
            .conversation(conv)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conv_row.max_seq, 1000, "exactly 1000 stored");
        let mut ids = std::collections::HashSet::new();
        let mut after = 0;
        loop {
            let batch = a.sync(conv, after, 500).await.unwrap();
            for m in &batch.messages {
                assert!(
                    ids.insert(m.client_msg_id.clone()),
                    "duplicate {}",
                    m.client_msg_id
                );
            }
            after = batch.through_seq;
            if !batch.has_more {
                break;
            }
        }
        assert_eq!(ids.len(), 1000);
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_recall_delete_read_and_typing() {
    on_every_database(
        |_| {},
        |server| async move {
            let (a, ua, b, _ub, conv) = friends(&server, "gus", "hal").await;
            let a2 = server.device("gus").await;
            let mut b_ev = b.events();
            let mut a2_ev = a2.events();
            let first = a.send_text(conv, "helo").await.unwrap();
            let second = a.send_text(conv, "oops").await.unwrap();
            collect(&mut b_ev, conv, 2).await;

            a.edit(conv, first.seq, "hello").await.unwrap();
            let edit = collect(&mut b_ev, conv, 1).await.remove(0);
            assert_eq!(
                (edit.kind, edit.target_seq, edit.text.as_str()),
                (pb::MessageKind::Edit as i32, first.seq, "hello")
            );
            a.recall(conv, second.seq).await.unwrap();
            let recall = collect(&mut b_ev, conv, 1).await.remove(0);
            assert_eq!(
                (recall.kind, recall.target_seq),
                (pb::MessageKind::Recall as i32, second.seq)
            );
            a.recall(conv, second.seq).await.unwrap_err();
            let hist = b.history(conv, 0, 50).await.unwrap();
            assert_eq!(hist.messages.len(), 2, "meta messages are applied, not listed");
            assert_eq!(hist.messages[0].text, "hello");
            assert!(hist.messages[0].edited_at_ms > 0);
            assert!(hist.messages[1].recalled);
            assert!(hist.messages[1].text.is_empty());
            // Someone else's message cannot be edited or recalled.
            assert_eq!(
                code(b.edit(conv, first.seq, "mine now").await),
                pb::ErrorCode::Forbidden
            );
            assert_eq!(code(b.recall(conv, first.seq).await), pb::ErrorCode::Forbidden);

            // Delete for me: gone from my history, my other device is told, the peer keeps it.
            a.delete_for_me(conv, &[first.seq]).await.unwrap();
            wait_event(&mut a2_ev, "hidden", |k| match k {
                Ev::MessagesHidden(h) if h.seqs == vec![first.seq] => Some(()),
                _ => None,
            })
            .await;
            assert_eq!(a.history(conv, 0, 50).await.unwrap().messages.len(), 1);
            assert_eq!(b.history(conv, 0, 50).await.unwrap().messages.len(), 2);

            // Read receipts reach the peer; typing is ephemeral and rate limited.
            let mut a_ev = a.events();
            b.mark_read(conv, 4).await.unwrap();
            let receipt = wait_event(&mut a_ev, "read receipt", |k| match k {
                Ev::Read(r) if r.conv_id == conv => Some(*r),
                _ => None,
            })
            .await;
            assert_eq!(receipt.seq, 4);
            b.typing(conv).await.unwrap();
            wait_event(&mut a_ev, "typing", |k| {
                matches!(k, Ev::Typing(t) if t.conv_id == conv).then_some(())
            })
            .await;
            b.typing(conv).await.unwrap();
            b.typing(conv).await.unwrap();
            assert_eq!(code(b.typing(conv).await), pb::ErrorCode::RateLimited);

            // Search finds own history, not recalled messages.
            let found = b.search("hell", None, 10, "").await.unwrap();
            assert_eq!(
                found.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
                vec![first.seq]
            );
            assert!(
                b.search("oops", Some(conv), 10, "")
                    .await
                    .unwrap()
                    .messages
                    .is_empty()
            );
            let _ = ua;
            server
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_store_nothing() {
    on_every_database(
        |_| {},
        |server| async move {
            let (a, _ua, b, ub, conv) = friends(&server, "ida", "jon").await;
            let (stranger, us) = server.user("kay").await;
            assert_eq!(
                code(a.open_direct(us.id).await),
                pb::ErrorCode::Forbidden,
                "not friends"
            );
            assert_eq!(
                code(a.send_text(conv, &"x".repeat(16 * 1024 + 1)).await),
                pb::ErrorCode::InvalidArgument
            );
            assert_eq!(
                code(a.send_text(conv, "   ").await),
                pb::ErrorCode::InvalidArgument
            );
            let mut bad = OutgoingMessage::text(conv, "no id");
            bad.client_msg_id.clear();
            assert_eq!(code(a.send(bad).await), pb::ErrorCode::InvalidArgument);
            let mut sys = OutgoingMessage::text(conv, "fake notice");
            sys.kind = pb::MessageKind::System;
            assert_eq!(code(a.send(sys).await), pb::ErrorCode::InvalidArgument);
            let fake_file = OutgoingMessage::file(conv, pb::MessageKind::File, 987_654_321, "");
            assert_eq!(code(a.send(fake_file).await), pb::ErrorCode::NotFound);
            assert_eq!(
                code(stranger.send_text(conv, "let me in").await),
                pb::ErrorCode::NotFound
            );
            // A file someone else uploaded cannot be smuggled into a conversation.
            let theirs = stranger
                .upload_bytes("secret.txt", b"secret".to_vec(), None, |_, _| {})
                .await
                .unwrap();
            let smuggle = OutgoingMessage::file(conv, pb::MessageKind::File, theirs.file_id, "");
            assert_eq!(code(a.send(smuggle).await), pb::ErrorCode::NotFound);
            // Blocking stops the direct chat both ways.
            b.block(_ua.id).await.unwrap();
            assert_eq!(
                code(a.send_text(conv, "still there?").await),
                pb::ErrorCode::Forbidden
            );
            assert_eq!(code(b.send_text(conv, "bye").await), pb::ErrorCode::Forbidden);
            let row = server
                .handle
                .ctx()
                .store
                .conversation(conv)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.max_seq, 0, "nothing was stored");
            let _ = ub;
            server
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_roles_and_the_outsider_matrix() {
    on_every_database(
        |_| {},
        |server| async move {
            let (owner, uo, m1, u1, _) = friends(&server, "lea", "max").await;
            let (m2, u2) = server.user("ned").await;
            owner.send_friend_request(u2.id, "").await.unwrap();
            let r = m2.friend_requests().await.unwrap().incoming[0].id;
            m2.answer_friend_request(r, true).await.unwrap();
            let (outsider, uout) = server.user("ozzy").await;
            let mut m1_ev = m1.events();

            let group = owner.create_group("Team 🚀", &[u1.id]).await.unwrap();
            assert_eq!(group.member_count, 2);
            let created = collect(&mut m1_ev, group.id, 1).await.remove(0);
            assert_eq!(
                created.system.as_ref().map(|s| s.kind),
                Some(pb::system_notice::Kind::Created as i32)
            );
            owner.invite(group.id, &[u2.id]).await.unwrap();
            let joined = collect(&mut m1_ev, group.id, 1).await.remove(0);
            assert_eq!(
                joined.system.as_ref().map(|s| s.user_ids.clone()),
                Some(vec![u2.id])
            );
            assert_eq!(
                code(owner.invite(group.id, &[uout.id]).await),
                pb::ErrorCode::Forbidden,
                "only friends"
            );
            let ack = m2.send_text(group.id, "hi team").await.unwrap();
            assert_eq!(ack.seq, 3);
            let file = owner
                .upload_bytes("plan.txt", b"the plan".to_vec(), None, |_, _| {})
                .await
                .unwrap();
            owner
                .send(OutgoingMessage::file(
                    group.id,
                    pb::MessageKind::File,
                    file.file_id,
                    "",
                ))
                .await
                .unwrap();

            // Outsiders see nothing: history, sync, members, files, search, sending.
            let g = group.id;
            assert_eq!(code(outsider.history(g, 0, 10).await), pb::ErrorCode::NotFound);
            assert_eq!(code(outsider.sync(g, 0, 10).await), pb::ErrorCode::NotFound);
            assert_eq!(code(outsider.members(g).await), pb::ErrorCode::NotFound);
            assert_eq!(code(outsider.send_text(g, "hi").await), pb::ErrorCode::NotFound);
            assert_eq!(code(outsider.mark_read(g, 1).await), pb::ErrorCode::NotFound);
            assert_eq!(code(outsider.typing(g).await), pb::ErrorCode::NotFound);
            assert_eq!(
                code(outsider.search("team", Some(g), 10, "").await),
                pb::ErrorCode::NotFound
            );
            assert!(
                outsider
                    .search("team", None, 10, "")
                    .await
                    .unwrap()
                    .messages
                    .is_empty()
            );
            let dir = tempfile::tempdir().unwrap();
            assert!(
                outsider
                    .download_file(file.file_id, &dir.path().join("x"), |_, _| {})
                    .await
                    .is_err()
            );
            assert!(!dir.path().join("x").exists());
            assert_eq!(
                code(outsider.invite(g, &[uout.id]).await),
                pb::ErrorCode::NotFound
            );
            assert_eq!(
                code(outsider.rename_group(g, "mine").await),
                pb::ErrorCode::NotFound
            );

            // Roles: members cannot rename or kick; admins kick members; the owner promotes.
            assert_eq!(code(m1.rename_group(g, "x").await), pb::ErrorCode::Forbidden);
            assert_eq!(code(m1.kick(g, u2.id).await), pb::ErrorCode::Forbidden);
            assert_eq!(
                code(m1.set_role(g, u2.id, pb::Role::Admin).await),
                pb::ErrorCode::Forbidden
            );
            owner.set_role(g, u1.id, pb::Role::Admin).await.unwrap();
            owner.rename_group(g, "Team B").await.unwrap();
            let mut m2_ev = m2.events();
            m1.kick(g, u2.id).await.unwrap();
            wait_event(&mut m2_ev, "removed", |k| match k {
                Ev::ConversationRemoved(c) if c.conv_id == g => Some(()),
                _ => None,
            })
            .await;
            assert_eq!(
                code(m1.kick(g, uo.id).await),
                pb::ErrorCode::Forbidden,
                "admins cannot kick the owner"
            );
            // The kicked member lost access to history and the file.
            assert_eq!(code(m2.history(g, 0, 10).await), pb::ErrorCode::NotFound);
            assert!(
                m2.download_file(file.file_id, &dir.path().join("y"), |_, _| {})
                    .await
                    .is_err()
            );
            // The owner leaves: ownership passes to the admin.
            owner.leave_group(g).await.unwrap();
            let members = m1.members(g).await.unwrap();
            assert_eq!(members.len(), 1);
            assert_eq!(members[0].role, pb::Role::Owner as i32);
            let names: Vec<i32> = m1
                .history(g, 0, 50)
                .await
                .unwrap()
                .messages
                .iter()
                .filter_map(|m| m.system.as_ref().map(|s| s.kind))
                .collect();
            use pb::system_notice::Kind as K;
            assert_eq!(
                names,
                vec![
                    K::Created as i32,
                    K::Joined as i32,
                    K::Renamed as i32,
                    K::Kicked as i32,
                    K::Left as i32
                ]
            );
            assert_no_event(&mut m1_ev, Duration::from_millis(10), "nothing", |_| false).await;
            server
        },
    )
    .await;
}
