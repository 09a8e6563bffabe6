//! Behaviour of the storage API, run against every engine: SQLite always, MariaDB when
//! reachable (required under `CI=true`). Each test body gets a fresh, migrated database.

use std::collections::HashSet;
use std::sync::Arc;

use parley_store::testing::test_databases;
use parley_store::{
    Engine, FriendRequestRow, FriendshipRow, IdGenerator, RequestStatus, SessionRow, Store, StoreError,
    StoreOptions, UserRow,
};

const T0: i64 = 1_750_000_000_000;

/// Rows listed by id, for comparing result order.
trait Ids {
    fn ids(&self) -> Vec<i64>;
}

macro_rules! impl_ids {
    ($($row:ty),*) => {$(
        impl Ids for Vec<$row> {
            fn ids(&self) -> Vec<i64> {
                self.iter().map(|r| r.id).collect()
            }
        }
    )*};
}
impl_ids!(UserRow, SessionRow, FriendRequestRow);

/// Three fresh users named a, b and c.
async fn three_users(store: &Store) -> (i64, i64, i64) {
    (
        user(store, "a").await,
        user(store, "b").await,
        user(store, "c").await,
    )
}

/// Runs `body` once per available engine with a fresh store, labelled for failure messages.
async fn on_each_db(body: impl AsyncFn(Store, &'static str)) {
    for db in test_databases().await {
        let store = db
            .open()
            .await
            .unwrap_or_else(|e| panic!("[{}] open: {e}", db.label));
        body(store.clone(), db.label).await;
        store.close().await;
    }
}

async fn user(store: &Store, name: &str) -> i64 {
    store.create_user(name, name, "hash", T0).await.unwrap().id
}

#[tokio::test]
async fn connect_reports_engine_and_pings() {
    on_each_db(async |store, label| {
        let expected = if label == "sqlite" {
            Engine::Sqlite
        } else {
            Engine::MySql
        };
        assert_eq!(store.engine(), expected);
        store.ping().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn reopening_runs_migrations_idempotently() {
    for db in test_databases().await {
        let first = db.open().await.unwrap();
        first.create_user("alice", "Alice", "h", T0).await.unwrap();
        first.close().await;
        let second = db.open().await.unwrap();
        assert!(
            second.user_by_username("alice").await.unwrap().is_some(),
            "[{}]",
            db.label
        );
        second.close().await;
    }
}

#[tokio::test]
async fn sqlite_creates_missing_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/parley.db");
    let store = Store::connect(&format!("sqlite:{}", path.display()), StoreOptions::default())
        .await
        .unwrap();
    store.create_user("bob", "Bob", "h", T0).await.unwrap();
    store.close().await;
    assert!(path.exists());
}

#[tokio::test]
async fn in_memory_sqlite_works() {
    let store = Store::connect("sqlite::memory:", StoreOptions::default())
        .await
        .unwrap();
    let u = store.create_user("mem", "Mem", "h", T0).await.unwrap();
    assert_eq!(store.user_by_id(u.id).await.unwrap(), Some(u));
}

#[tokio::test]
async fn rejects_bad_urls_and_node_ids() {
    let err = Store::connect("postgres://x/y", StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadUrl(_)), "{err}");
    let opts = StoreOptions {
        node_id: 1024,
        ..StoreOptions::default()
    };
    let err = Store::connect("sqlite::memory:", opts).await.unwrap_err();
    assert!(matches!(err, StoreError::BadOptions(_)), "{err}");
}

#[tokio::test]
async fn users_create_lookup_and_duplicate_conflict() {
    on_each_db(async |store, label| {
        let alice = store.create_user("alice", "Alice", "h1", T0).await.unwrap();
        assert_eq!(alice.status_line, "");
        assert_eq!(alice.last_seen_at, 0);
        assert_eq!(alice.avatar_file_id, None);
        assert_eq!(
            store.user_by_id(alice.id).await.unwrap().as_ref(),
            Some(&alice),
            "[{label}]"
        );
        assert_eq!(
            store.user_by_username("alice").await.unwrap(),
            Some(alice.clone())
        );
        assert_eq!(store.user_by_username("nobody").await.unwrap(), None);
        assert_eq!(store.user_by_id(42).await.unwrap(), None);

        // The caller lowercases, so a second "Alice" registration arrives as "alice".
        let dup = store.create_user("alice", "Other", "h2", T0).await;
        assert!(matches!(dup, Err(StoreError::Conflict)), "[{label}] {dup:?}");
    })
    .await;
}

#[tokio::test]
async fn users_by_ids_handles_empty_missing_and_long_lists() {
    on_each_db(async |store, label| {
        assert!(store.users_by_ids(&[]).await.unwrap().is_empty());
        let mut ids = Vec::new();
        for i in 0..450 {
            ids.push(user(&store, &format!("u{i}")).await);
        }
        let mut wanted = ids.clone();
        wanted.push(-1); // missing ids are skipped
        let found: HashSet<i64> = store
            .users_by_ids(&wanted)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert_eq!(found, ids.iter().copied().collect(), "[{label}]");
    })
    .await;
}

#[tokio::test]
async fn profile_password_and_last_seen_updates() {
    on_each_db(async |store, label| {
        let id = user(&store, "carol").await;
        let u = store
            .update_profile(id, Some("Carol C"), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((u.display_name.as_str(), u.status_line.as_str()), ("Carol C", ""));
        let u = store
            .update_profile(id, None, Some("busy"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (u.display_name.as_str(), u.status_line.as_str()),
            ("Carol C", "busy")
        );
        assert_eq!(
            store.update_profile(-5, Some("x"), None).await.unwrap(),
            None,
            "[{label}]"
        );

        store.set_password_hash(id, "new-hash").await.unwrap();
        store.set_last_seen(id, T0 + 99).await.unwrap();
        let u = store.user_by_id(id).await.unwrap().unwrap();
        assert_eq!(u.password_hash, "new-hash");
        assert_eq!(u.last_seen_at, T0 + 99);
    })
    .await;
}

#[tokio::test]
async fn utf8mb4_round_trips() {
    on_each_db(async |store, label| {
        let name = "Zoë 🦀🎉 李雷";
        let u = store.create_user("zoe", name, "h", T0).await.unwrap();
        assert_eq!(
            store.user_by_id(u.id).await.unwrap().unwrap().display_name,
            name,
            "[{label}]"
        );
        let u = store
            .update_profile(u.id, None, Some("🚀 launching"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.status_line, "🚀 launching");
        let hits = store.search_users("zoë 🦀", 0, 10).await.unwrap();
        assert_eq!(hits.len(), 1, "[{label}]");
    })
    .await;
}

#[tokio::test]
async fn search_pages_by_cursor_and_escapes_wildcards() {
    on_each_db(async |store, label| {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(user(&store, &format!("ann{i}")).await);
        }
        // Matches by display name only, case-insensitively.
        let dn = store.create_user("zed", "Annabel", "h", T0).await.unwrap().id;
        ids.push(dn);
        user(&store, "bob").await;

        let page1 = store.search_users("ANN", 0, 4).await.unwrap();
        let page1_ids: Vec<i64> = page1.ids();
        assert_eq!(page1_ids, ids[..4], "[{label}]");
        let page2 = store.search_users("ann", page1_ids[3], 4).await.unwrap();
        let page2_ids: Vec<i64> = page2.ids();
        assert_eq!(page2_ids, ids[4..], "[{label}]");
        assert!(store.search_users("ann", ids[5], 4).await.unwrap().is_empty());
        assert!(store.search_users("ann", 0, 0).await.unwrap().is_empty());

        // `_` and `%` are literal, not wildcards.
        let a_b = user(&store, "a_b").await;
        user(&store, "axb").await;
        let hits: Vec<i64> = store.search_users("a_b", 0, 10).await.unwrap().ids();
        assert_eq!(hits, vec![a_b], "[{label}]");
        let pct = store.create_user("pct", "100% real", "h", T0).await.unwrap().id;
        store.create_user("pct2", "100 real", "h", T0).await.unwrap();
        let hits: Vec<i64> = store.search_users("100%", 0, 10).await.unwrap().ids();
        assert_eq!(hits, vec![pct], "[{label}]");
        let bang = store.create_user("bang", "hi! there", "h", T0).await.unwrap().id;
        let hits: Vec<i64> = store.search_users("hi!", 0, 10).await.unwrap().ids();
        assert_eq!(hits, vec![bang], "[{label}]");
    })
    .await;
}

fn session(store: &Store, user_id: i64, token: u8, at: i64) -> SessionRow {
    SessionRow {
        id: store.next_id(),
        user_id,
        token_hash: vec![token; 32],
        device_name: format!("device {token}"),
        address: "127.0.0.1".into(),
        created_at: at,
        last_used_at: at,
        revoked_at: None,
    }
}

#[tokio::test]
async fn sessions_create_lookup_touch_and_revoke() {
    on_each_db(async |store, label| {
        let alice = user(&store, "alice").await;
        let bob = user(&store, "bob").await;
        let s1 = session(&store, alice, 1, T0);
        let s2 = session(&store, alice, 2, T0 + 10);
        let s3 = session(&store, alice, 3, T0 + 20);
        let sb = session(&store, bob, 4, T0);
        for s in [&s1, &s2, &s3, &sb] {
            store.create_session(s).await.unwrap();
        }
        // Same token hash twice is a conflict.
        let mut clash = session(&store, bob, 1, T0);
        clash.token_hash = s1.token_hash.clone();
        assert!(matches!(
            store.create_session(&clash).await,
            Err(StoreError::Conflict)
        ));

        assert_eq!(
            store.session_by_token_hash(&[1; 32]).await.unwrap(),
            Some(s1.clone())
        );
        assert_eq!(store.session_by_token_hash(&[9; 32]).await.unwrap(), None);

        store.touch_session(s1.id, T0 + 500).await.unwrap();
        let got = store.session_by_token_hash(&[1; 32]).await.unwrap().unwrap();
        assert_eq!(got.last_used_at, T0 + 500, "[{label}]");

        let listed: Vec<i64> = store.list_sessions(alice).await.unwrap().ids();
        assert_eq!(listed, vec![s3.id, s2.id, s1.id], "[{label}] newest first");

        // Not bob's session; then a real revoke; then already revoked.
        assert!(!store.revoke_session(bob, s2.id, T0 + 1).await.unwrap());
        assert!(store.revoke_session(alice, s2.id, T0 + 1).await.unwrap());
        assert!(!store.revoke_session(alice, s2.id, T0 + 2).await.unwrap());
        assert_eq!(store.session_by_token_hash(&[2; 32]).await.unwrap(), None);

        let mut revoked = store.revoke_other_sessions(alice, s1.id, T0 + 3).await.unwrap();
        revoked.sort();
        assert_eq!(revoked, vec![s3.id], "[{label}] only live, other sessions");
        let listed: Vec<i64> = store.list_sessions(alice).await.unwrap().ids();
        assert_eq!(listed, vec![s1.id]);
        assert!(
            store
                .revoke_other_sessions(alice, s1.id, T0 + 4)
                .await
                .unwrap()
                .is_empty()
        );
        // Bob is untouched.
        assert_eq!(store.list_sessions(bob).await.unwrap(), vec![sb]);
    })
    .await;
}

#[tokio::test]
async fn friend_request_flow_and_accept_transaction() {
    on_each_db(async |store, label| {
        let (a, b, c) = three_users(&store).await;

        let r1 = store.create_friend_request(a, b, "hi", T0).await.unwrap();
        assert_eq!(r1.status, RequestStatus::Pending);
        // A second request while pending updates the note of the same request.
        let again = store
            .create_friend_request(a, b, "hello again", T0 + 5)
            .await
            .unwrap();
        assert_eq!(again.id, r1.id, "[{label}]");
        assert_eq!(again.note, "hello again");
        assert_eq!(again.created_at, T0);
        assert_eq!(store.pending_request(a, b).await.unwrap(), Some(again.clone()));
        assert_eq!(store.pending_request(b, a).await.unwrap(), None);
        assert_eq!(store.friend_request(r1.id).await.unwrap(), Some(again.clone()));

        let r2 = store.create_friend_request(c, b, "", T0 + 10).await.unwrap();
        let incoming: Vec<i64> = store.incoming_requests(b).await.unwrap().ids();
        assert_eq!(incoming, vec![r2.id, r1.id], "[{label}] newest first");
        let outgoing = store.outgoing_requests(a).await.unwrap();
        assert_eq!(outgoing, vec![again]);

        // Accept: status, answered_at and both friendship rows, once.
        let accepted = store
            .accept_friend_request(r1.id, T0 + 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(accepted.status, RequestStatus::Accepted);
        assert_eq!(accepted.answered_at, Some(T0 + 20));
        assert!(store.are_friends(a, b).await.unwrap() && store.are_friends(b, a).await.unwrap());
        assert_eq!(store.accept_friend_request(r1.id, T0 + 21).await.unwrap(), None);
        assert!(
            !store
                .close_friend_request(r1.id, RequestStatus::Declined, T0)
                .await
                .unwrap()
        );
        assert_eq!(store.pending_request(a, b).await.unwrap(), None);
        assert_eq!(store.outgoing_requests(a).await.unwrap(), vec![]);
        assert_eq!(
            store.friends(a).await.unwrap(),
            vec![FriendshipRow {
                friend_id: b,
                remark: String::new(),
                since: T0 + 20
            }]
        );

        // Decline r2; closing twice or with a non-closing status is refused.
        assert!(
            !store
                .close_friend_request(r2.id, RequestStatus::Accepted, T0)
                .await
                .unwrap()
        );
        assert!(
            store
                .close_friend_request(r2.id, RequestStatus::Declined, T0 + 30)
                .await
                .unwrap()
        );
        assert!(
            !store
                .close_friend_request(r2.id, RequestStatus::Cancelled, T0 + 31)
                .await
                .unwrap()
        );
        let r2 = store.friend_request(r2.id).await.unwrap().unwrap();
        assert_eq!(
            (r2.status, r2.answered_at),
            (RequestStatus::Declined, Some(T0 + 30))
        );
        assert!(store.incoming_requests(b).await.unwrap().is_empty());

        // After a closed request a new one may be sent; cancel it.
        let r3 = store.create_friend_request(c, b, "retry", T0 + 40).await.unwrap();
        assert_ne!(r3.id, r2.id, "[{label}]");
        assert!(
            store
                .close_friend_request(r3.id, RequestStatus::Cancelled, T0 + 41)
                .await
                .unwrap()
        );
        assert_eq!(
            store.friend_request(r3.id).await.unwrap().unwrap().status,
            RequestStatus::Cancelled
        );
        assert_eq!(store.accept_friend_request(r3.id, T0).await.unwrap(), None);
        assert!(!store.are_friends(b, c).await.unwrap());
        assert_eq!(store.accept_friend_request(-1, T0).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn concurrent_requests_leave_one_pending() {
    on_each_db(async |store, label| {
        let (a, b) = (user(&store, "a").await, user(&store, "b").await);
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .create_friend_request(a, b, &format!("n{i}"), T0 + i)
                        .await
                        .unwrap()
                        .id
                })
            })
            .collect();
        let mut ids = HashSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap());
        }
        assert_eq!(ids.len(), 1, "[{label}] {ids:?}");
        assert_eq!(store.outgoing_requests(a).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn friendships_remarks_and_removal() {
    on_each_db(async |store, label| {
        let (a, b, c) = three_users(&store).await;
        store.add_friendship(a, b, T0).await.unwrap();
        assert!(store.set_remark(a, b, "Bobby 🐻").await.unwrap());
        // Idempotent: keeps the remark and the original time.
        store.add_friendship(b, a, T0 + 100).await.unwrap();
        store.add_friendship(a, c, T0 + 1).await.unwrap();
        assert_eq!(
            store.friends(a).await.unwrap(),
            vec![
                FriendshipRow {
                    friend_id: b,
                    remark: "Bobby 🐻".into(),
                    since: T0
                },
                FriendshipRow {
                    friend_id: c,
                    remark: String::new(),
                    since: T0 + 1
                },
            ],
            "[{label}]"
        );
        assert_eq!(
            store.friends(b).await.unwrap()[0].remark,
            "",
            "remarks are per side"
        );
        assert!(
            store.set_remark(a, b, "Bobby 🐻").await.unwrap(),
            "[{label}] unchanged value still counts"
        );
        assert!(!store.set_remark(b, c, "x").await.unwrap());

        assert!(store.remove_friendship(b, a).await.unwrap());
        assert!(!store.are_friends(a, b).await.unwrap() && !store.are_friends(b, a).await.unwrap());
        assert!(!store.remove_friendship(a, b).await.unwrap());
        assert_eq!(store.friends(a).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn blocks_and_incoming_requests_hide_blocked_senders() {
    on_each_db(async |store, label| {
        let (a, b, c) = three_users(&store).await;
        let from_a = store.create_friend_request(a, b, "", T0).await.unwrap();
        let from_c = store.create_friend_request(c, b, "", T0 + 1).await.unwrap();

        store.block(b, a, T0 + 2).await.unwrap();
        store.block(b, a, T0 + 3).await.unwrap(); // idempotent
        assert!(store.is_blocked(b, a).await.unwrap());
        assert!(
            !store.is_blocked(a, b).await.unwrap(),
            "[{label}] blocks are one-way"
        );
        assert_eq!(store.blocked(b).await.unwrap(), vec![a]);

        let incoming: Vec<i64> = store.incoming_requests(b).await.unwrap().ids();
        assert_eq!(incoming, vec![from_c.id], "[{label}]");
        // The sender is not told: their request still looks pending to them.
        assert_eq!(store.outgoing_requests(a).await.unwrap(), vec![from_a.clone()]);

        store.block(b, c, T0 + 4).await.unwrap();
        assert_eq!(store.blocked(b).await.unwrap(), vec![a, c]);
        assert!(store.incoming_requests(b).await.unwrap().is_empty());

        assert!(store.unblock(b, a).await.unwrap());
        assert!(!store.unblock(b, a).await.unwrap());
        let incoming: Vec<i64> = store.incoming_requests(b).await.unwrap().ids();
        assert_eq!(incoming, vec![from_a.id]);
    })
    .await;
}

#[test]
fn ids_are_unique_and_increasing_across_threads() {
    let generator = Arc::new(IdGenerator::new(5).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let g = Arc::clone(&generator);
            std::thread::spawn(move || {
                let ids: Vec<i64> = (0..20_000).map(|_| g.next_id()).collect();
                // Strictly increasing as seen by each thread.
                assert!(ids.windows(2).all(|w| w[0] < w[1]));
                ids
            })
        })
        .collect();
    let mut all = HashSet::new();
    for h in handles {
        for id in h.join().unwrap() {
            assert!(id > 0);
            assert_eq!(parley_store::node_of(id), 5);
            assert!(all.insert(id), "duplicate id {id}");
        }
    }
    assert_eq!(all.len(), 160_000);
}

#[tokio::test]
async fn store_ids_carry_the_configured_node() {
    let opts = StoreOptions {
        node_id: 513,
        max_connections: 2,
    };
    let store = Store::connect("sqlite::memory:", opts).await.unwrap();
    let (a, b) = (store.next_id(), store.next_id());
    assert!(b > a);
    assert_eq!(parley_store::node_of(a), 513);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((parley_store::unix_ms_of(a) - now).abs() < 5_000);
}
