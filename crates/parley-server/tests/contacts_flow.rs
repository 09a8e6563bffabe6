//! The acceptance path over TLS through the SDK, on every database engine:
//! register → two devices → friend request → accept → presence on both
//! devices → block → the blocked user's requests vanish.

mod common;

use std::time::Duration;

use common::{assert_no_event, on_every_database, wait_event};
use parley_client::pb::{self, event::Kind as Ev};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_presence_and_blocking() {
    on_every_database(
        |_| {},
        |server| async move {
            let (alice1, alice) = server.user("alice").await;
            let alice2 = server.device("alice").await;
            let (bob, bob_user) = server.user("bob").await;
            let (mut ev1, mut ev2, mut bob_ev) = (alice1.events(), alice2.events(), bob.events());

            // Bob finds Alice by prefix and asks; both of Alice's devices see it.
            let page = bob.search_users("ali", 10, "").await.unwrap();
            assert_eq!(
                page.users.iter().map(|u| u.id).collect::<Vec<_>>(),
                vec![alice.id]
            );
            bob.send_friend_request(alice.id, "hi, it's Bob").await.unwrap();
            let pick = |k: &Ev| match k {
                Ev::FriendRequestReceived(r) => Some(r.clone()),
                _ => None,
            };
            let req = wait_event(&mut ev1, "request on device 1", pick).await;
            let req2 = wait_event(&mut ev2, "request on device 2", pick).await;
            assert_eq!(req.id, req2.id);
            assert_eq!(req.note, "hi, it's Bob");
            assert_eq!(req.from.as_ref().map(|u| u.id), Some(bob_user.id));
            let lists = alice2.friend_requests().await.unwrap();
            assert_eq!(lists.incoming.len(), 1);
            assert_eq!(bob.friend_requests().await.unwrap().outgoing.len(), 1);

            // Accept on device 1: Bob hears the answer; both sides get the friend.
            alice1.answer_friend_request(req.id, true).await.unwrap();
            let answered = wait_event(&mut bob_ev, "answer", |k| match k {
                Ev::FriendRequestAnswered(a) => Some(*a),
                _ => None,
            })
            .await;
            assert!(answered.accepted);
            let added = wait_event(&mut bob_ev, "friend added", |k| match k {
                Ev::FriendAdded(f) => Some(f.clone()),
                _ => None,
            })
            .await;
            assert_eq!(added.user.as_ref().map(|u| u.id), Some(alice.id));
            assert_eq!(added.presence.as_ref().map(|p| p.online), Some(true));
            wait_event(&mut ev2, "friend added on device 2", |k| {
                matches!(k, Ev::FriendAdded(_)).then_some(())
            })
            .await;
            assert!(alice2.friend_requests().await.unwrap().incoming.is_empty());

            let friends = alice1.friends().await.unwrap();
            assert_eq!(friends.len(), 1);
            assert_eq!(friends[0].presence.as_ref().map(|p| p.online), Some(true));
            alice1.set_remark(bob_user.id, "Bobby").await.unwrap();
            assert_eq!(alice2.friends().await.unwrap()[0].remark, "Bobby");

            // Bob goes offline and comes back: presence reaches both of Alice's devices.
            bob.close().await;
            let presence = |online: bool| {
                let bob_id = bob_user.id;
                move |k: &Ev| match k {
                    Ev::PresenceChanged(p)
                        if p.user_id == bob_id && p.presence.as_ref().map(|x| x.online) == Some(online) =>
                    {
                        p.presence
                    }
                    _ => None,
                }
            };
            let off = wait_event(&mut ev1, "bob offline on device 1", presence(false)).await;
            assert!(off.last_seen_ms > 0);
            wait_event(&mut ev2, "bob offline on device 2", presence(false)).await;
            let friends = alice1.friends().await.unwrap();
            assert_eq!(friends[0].presence.as_ref().map(|p| p.online), Some(false));
            let bob = server.device("bob").await;
            wait_event(&mut ev1, "bob online on device 1", presence(true)).await;
            wait_event(&mut ev2, "bob online on device 2", presence(true)).await;

            // One of Alice's two devices leaving does not make her offline.
            let mut bob_ev = bob.events();
            alice2.close().await;
            assert_no_event(
                &mut bob_ev,
                Duration::from_millis(300),
                "alice offline",
                |k| matches!(k, Ev::PresenceChanged(p) if p.user_id == alice.id),
            )
            .await;

            // Carol asks, Alice blocks her: the pending request vanishes, new ones are
            // accepted on the wire (Carol cannot tell) and never arrive.
            let (carol, carol_user) = server.user("carol").await;
            carol.send_friend_request(alice.id, "first").await.unwrap();
            wait_event(&mut ev1, "carol's request", |k| {
                matches!(k, Ev::FriendRequestReceived(_)).then_some(())
            })
            .await;
            alice1.block(carol_user.id).await.unwrap();
            assert!(alice1.friend_requests().await.unwrap().incoming.is_empty());
            carol.send_friend_request(alice.id, "again").await.unwrap();
            assert_no_event(
                &mut ev1,
                Duration::from_millis(300),
                "request from a blocked user",
                |k| matches!(k, Ev::FriendRequestReceived(_)),
            )
            .await;
            assert!(alice1.friend_requests().await.unwrap().incoming.is_empty());
            assert_eq!(
                alice1
                    .blocked()
                    .await
                    .unwrap()
                    .iter()
                    .map(|u| u.id)
                    .collect::<Vec<_>>(),
                vec![carol_user.id]
            );
            // Alice cannot ask someone she blocked without unblocking first.
            let err = alice1.send_friend_request(carol_user.id, "").await.unwrap_err();
            assert_eq!(err.code(), Some(pb::ErrorCode::Forbidden));
            alice1.unblock(carol_user.id).await.unwrap();
            assert!(alice1.blocked().await.unwrap().is_empty());

            // Removing a friend tells both sides.
            let mut bob_ev = bob.events();
            alice1.remove_friend(bob_user.id).await.unwrap();
            wait_event(&mut bob_ev, "friend removed", |k| match k {
                Ev::FriendRemoved(r) if r.user_id == alice.id => Some(()),
                _ => None,
            })
            .await;
            assert!(bob.friends().await.unwrap().is_empty());
            server
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cancel_decline_and_cross_requests() {
    on_every_database(
        |_| {},
        |server| async move {
            let (dan, dan_user) = server.user("dan").await;
            let (eve, eve_user) = server.user("eve").await;
            let mut eve_ev = eve.events();

            dan.send_friend_request(eve_user.id, "one").await.unwrap();
            let id = dan.friend_requests().await.unwrap().outgoing[0].id;
            dan.cancel_friend_request(id).await.unwrap();
            wait_event(&mut eve_ev, "cancel", |k| match k {
                Ev::FriendRequestCancelled(c) if c.request_id == id => Some(()),
                _ => None,
            })
            .await;
            assert!(eve.friend_requests().await.unwrap().incoming.is_empty());
            // Answering a cancelled request, or someone else's, is NOT_FOUND.
            let err = eve.answer_friend_request(id, true).await.unwrap_err();
            assert_eq!(err.code(), Some(pb::ErrorCode::NotFound));

            dan.send_friend_request(eve_user.id, "two").await.unwrap();
            let id = eve.friend_requests().await.unwrap().incoming[0].id;
            let err = dan.answer_friend_request(id, true).await.unwrap_err();
            assert_eq!(
                err.code(),
                Some(pb::ErrorCode::NotFound),
                "the sender cannot accept for the recipient"
            );
            eve.answer_friend_request(id, false).await.unwrap();
            assert!(dan.friends().await.unwrap().is_empty());

            // Eve asks Dan while Dan's request to Eve is pending: they become friends.
            dan.send_friend_request(eve_user.id, "three").await.unwrap();
            eve.send_friend_request(dan_user.id, "oh hi").await.unwrap();
            assert_eq!(dan.friends().await.unwrap().len(), 1);
            assert_eq!(eve.friends().await.unwrap().len(), 1);
            let err = dan.send_friend_request(eve_user.id, "").await.unwrap_err();
            assert_eq!(err.code(), Some(pb::ErrorCode::AlreadyExists));
            let err = dan.send_friend_request(dan_user.id, "").await.unwrap_err();
            assert_eq!(err.code(), Some(pb::ErrorCode::InvalidArgument));
            let err = dan.send_friend_request(123_456_789, "").await.unwrap_err();
            assert_eq!(err.code(), Some(pb::ErrorCode::NotFound));
            let err = dan.set_remark(123_456_789, "x").await.unwrap_err();
            assert_eq!(err.code(), Some(pb::ErrorCode::NotFound));

            // Profiles: anyone can read; only the owner edits; friends hear about it.
            let mut dan_ev = dan.events();
            let me = eve
                .update_profile(Some("Eve 🌙"), Some("out for lunch"))
                .await
                .unwrap();
            assert_eq!(me.display_name, "Eve 🌙");
            let seen = wait_event(&mut dan_ev, "profile update", |k| match k {
                Ev::ProfileUpdated(u) => Some(u.clone()),
                _ => None,
            })
            .await;
            assert_eq!(seen.status_line, "out for lunch");
            assert_eq!(dan.profile(eve_user.id).await.unwrap().display_name, "Eve 🌙");
            assert_eq!(dan.profile_by_username("EVE").await.unwrap().id, eve_user.id);
            let err = dan.update_profile(Some(&"x".repeat(65)), None).await.unwrap_err();
            assert_eq!(err.code(), Some(pb::ErrorCode::InvalidArgument));
            server
        },
    )
    .await;
}
