//! Conversations, members, files and message search on every engine.

mod support;

use parley_store::{ConvKind, Effect, FileRow, NewMessage, Role, Store, StoreError, UploadRow};
use support::{T0, group, on_each_db, text, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_direct_is_idempotent_even_when_racing() {
    on_each_db(async |store, label| {
        let (a, b) = (user(&store, "a").await, user(&store, "b").await);
        // Eight concurrent opens, from both sides: one conversation, created exactly once.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            let (x, y) = if i % 2 == 0 { (a, b) } else { (b, a) };
            tasks.push(tokio::spawn(
                async move { store.open_direct(x, y, T0).await.unwrap() },
            ));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        let created = results.iter().filter(|(_, c)| *c).count();
        assert_eq!(created, 1, "[{label}]");
        let conv = &results[0].0;
        assert!(results.iter().all(|(r, _)| r == conv), "[{label}]");
        assert_eq!(conv.kind, ConvKind::Direct);
        assert_eq!(conv.member_limit, 2);
        assert_eq!(
            conv.direct_key.as_deref(),
            Some(format!("{}:{}", a.min(b), a.max(b)).as_str())
        );
        let members = store.members(conv.id).await.unwrap();
        assert_eq!(members.len(), 2, "[{label}]");
        assert!(members.iter().all(|m| m.role == Role::Member));

        let (again, created) = store.open_direct(b, a, T0 + 9).await.unwrap();
        assert_eq!((&again, created), (conv, false));
        // With yourself: one member.
        let (me, _) = store.open_direct(a, a, T0).await.unwrap();
        assert_eq!(store.member_count(me.id).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn groups_members_roles_and_listing() {
    on_each_db(async |store, label| {
        let (a, b, c) = (
            user(&store, "a").await,
            user(&store, "b").await,
            user(&store, "c").await,
        );
        let g = store.create_group(a, "team", &[b, b, a], 10, T0).await.unwrap();
        assert_eq!(
            (g.kind, g.name.as_str(), g.owner_id, g.max_seq),
            (ConvKind::Group, "team", a, 0)
        );
        assert_eq!(
            store.conversation(g.id).await.unwrap(),
            Some(g.clone()),
            "[{label}]"
        );
        assert_eq!(store.conversation(-1).await.unwrap(), None);
        let roles: Vec<(i64, Role)> = store
            .members(g.id)
            .await
            .unwrap()
            .iter()
            .map(|m| (m.user_id, m.role))
            .collect();
        assert_eq!(roles, vec![(a, Role::Owner), (b, Role::Member)], "[{label}]");

        assert_eq!(
            store.add_members(g.id, &[b, c, c], T0 + 1).await.unwrap(),
            vec![c]
        );
        assert_eq!(
            store.add_members(g.id, &[b, c], T0 + 2).await.unwrap(),
            Vec::<i64>::new()
        );
        assert_eq!(store.member_count(g.id).await.unwrap(), 3);
        let mc = store.member(g.id, c).await.unwrap().unwrap();
        assert_eq!(
            (mc.role, mc.joined_at, mc.read_seq, mc.cleared_seq),
            (Role::Member, T0 + 1, 0, 0)
        );

        assert!(store.set_role(g.id, c, Role::Admin).await.unwrap());
        assert!(
            store.set_role(g.id, c, Role::Admin).await.unwrap(),
            "[{label}] same value still matches"
        );
        assert!(!store.set_role(g.id, -5, Role::Admin).await.unwrap());
        let roles: Vec<Role> = store
            .members(g.id)
            .await
            .unwrap()
            .iter()
            .map(|m| m.role)
            .collect();
        assert_eq!(roles, vec![Role::Owner, Role::Admin, Role::Member]);

        assert!(store.rename_conversation(g.id, "renamed").await.unwrap());
        assert!(!store.rename_conversation(-1, "x").await.unwrap());
        assert_eq!(store.conversation(g.id).await.unwrap().unwrap().name, "renamed");

        assert!(store.remove_member(g.id, b).await.unwrap());
        assert!(!store.remove_member(g.id, b).await.unwrap());
        assert_eq!(store.member(g.id, b).await.unwrap(), None);

        // Listing: most recent activity first.
        let (d, _) = store.open_direct(a, c, T0 + 5).await.unwrap();
        let listed: Vec<i64> = store
            .user_conversations(a)
            .await
            .unwrap()
            .iter()
            .map(|(c, _)| c.id)
            .collect();
        assert_eq!(listed, vec![d.id, g.id], "[{label}]");
        store
            .append_messages(&[text(g.id, a, "1", "hi")], T0 + 10)
            .await
            .unwrap();
        let list = store.user_conversations(a).await.unwrap();
        assert_eq!(list[0].0.id, g.id, "[{label}] a message moves it up");
        assert_eq!((list[0].0.max_seq, list[0].1.role), (1, Role::Owner));
        assert_eq!(store.user_conversations(b).await.unwrap(), vec![]);

        assert!(matches!(
            store.add_members(-1, &[a], T0).await,
            Err(StoreError::NotFound)
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_limit_holds_under_concurrent_adds() {
    on_each_db(async |store, label| {
        let owner = user(&store, "owner").await;
        let mut users = Vec::new();
        for i in 0..12 {
            users.push(user(&store, &format!("u{i}")).await);
        }
        let over = store.create_group(owner, "g", &users[..3], 3, T0).await;
        assert!(matches!(over, Err(StoreError::LimitExceeded)), "[{label}]");
        let g = store.create_group(owner, "g", &[], 10, T0).await.unwrap();

        // Four concurrent adds of three users each: only three fit in the 9 free places.
        let mut tasks = Vec::new();
        for chunk in users.chunks(3) {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            tasks.push(tokio::spawn(
                async move { store.add_members(g.id, &chunk, T0).await },
            ));
        }
        let (mut ok, mut full) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(added) => {
                    assert_eq!(added.len(), 3);
                    ok += 1;
                }
                Err(StoreError::LimitExceeded) => full += 1,
                Err(e) => panic!("[{label}] {e}"),
            }
        }
        assert_eq!((ok, full), (3, 1), "[{label}]");
        assert_eq!(store.member_count(g.id).await.unwrap(), 10);
        // Already-members do not count against the limit; the refused call added no one.
        assert_eq!(
            store.add_members(g.id, &[owner], T0).await.unwrap(),
            Vec::<i64>::new()
        );
        let direct = store.open_direct(users[0], users[1], T0).await.unwrap().0;
        assert!(matches!(
            store.add_members(direct.id, &[owner], T0).await,
            Err(StoreError::LimitExceeded)
        ));
    })
    .await;
}

fn upload(store: &Store, user_id: i64) -> UploadRow {
    UploadRow {
        id: store.next_id(),
        user_id,
        size: 100,
        sha256: vec![7; 32],
        name: "a.bin".into(),
        mime: "application/octet-stream".into(),
        received: 0,
        created_at: T0,
        updated_at: T0,
    }
}

#[tokio::test]
async fn uploads_advance_by_compare_and_set() {
    on_each_db(async |store, label| {
        let a = user(&store, "a").await;
        let u = upload(&store, a);
        store.create_upload(&u).await.unwrap();
        assert!(matches!(store.create_upload(&u).await, Err(StoreError::Conflict)));
        assert_eq!(store.upload(u.id).await.unwrap(), Some(u.clone()), "[{label}]");

        assert!(store.advance_upload(u.id, 0, 40, T0 + 1).await.unwrap());
        // A second writer that also started from 0 loses.
        assert!(
            !store.advance_upload(u.id, 0, 40, T0 + 2).await.unwrap(),
            "[{label}]"
        );
        assert!(store.advance_upload(u.id, 40, 100, T0 + 3).await.unwrap());
        let got = store.upload(u.id).await.unwrap().unwrap();
        assert_eq!((got.received, got.updated_at), (100, T0 + 3));
        assert!(!store.advance_upload(-1, 0, 1, T0).await.unwrap());

        store.delete_upload(u.id).await.unwrap();
        store.delete_upload(u.id).await.unwrap();
        assert_eq!(store.upload(u.id).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn files_are_readable_by_uploader_and_members_only() {
    on_each_db(async |store, label| {
        let (a, b, c) = (
            user(&store, "a").await,
            user(&store, "b").await,
            user(&store, "c").await,
        );
        let f = FileRow {
            id: store.next_id(),
            sha256: vec![1; 32],
            size: 5,
            mime: "image/png".into(),
            name: "cat.png".into(),
            uploader_id: a,
            width: 640,
            height: 480,
            thumb_sha256: Some(vec![2; 32]),
            created_at: T0,
        };
        store.create_file(&f).await.unwrap();
        assert_eq!(store.file(f.id).await.unwrap(), Some(f.clone()), "[{label}]");
        assert_eq!(store.file(-1).await.unwrap(), None);

        let g = group(&store, a, &[b]).await;
        assert!(store.can_read_file(a, f.id).await.unwrap(), "[{label}] uploader");
        assert!(
            !store.can_read_file(b, f.id).await.unwrap(),
            "[{label}] not granted yet"
        );
        store.grant_file(f.id, g.id).await.unwrap();
        store.grant_file(f.id, g.id).await.unwrap(); // idempotent
        assert!(store.can_read_file(b, f.id).await.unwrap(), "[{label}] member");
        assert!(
            !store.can_read_file(c, f.id).await.unwrap(),
            "[{label}] not a member"
        );
        store.remove_member(g.id, b).await.unwrap();
        assert!(
            !store.can_read_file(b, f.id).await.unwrap(),
            "[{label}] left the group"
        );

        store.set_avatar(a, Some(f.id)).await.unwrap();
        assert_eq!(
            store.user_by_id(a).await.unwrap().unwrap().avatar_file_id,
            Some(f.id)
        );
        store.set_avatar(a, None).await.unwrap();
        assert_eq!(store.user_by_id(a).await.unwrap().unwrap().avatar_file_id, None);
    })
    .await;
}

#[tokio::test]
async fn search_finds_substrings_in_any_script_within_the_users_conversations() {
    on_each_db(async |store, label| {
        let (a, b, c) = (
            user(&store, "a").await,
            user(&store, "b").await,
            user(&store, "c").await,
        );
        let ab = group(&store, a, &[b]).await.id;
        let ac = group(&store, a, &[c]).await.id;
        let f = FileRow {
            id: store.next_id(),
            sha256: vec![1; 32],
            size: 5,
            mime: "application/pdf".into(),
            name: "Quarterly-Report.pdf".into(),
            uploader_id: a,
            width: 0,
            height: 0,
            thumb_sha256: None,
            created_at: T0,
        };
        store.create_file(&f).await.unwrap();
        let batch = [
            text(ab, a, "1", "Lunch at the Café tomorrow?"), // 1
            text(ab, b, "2", "我们明天去北京吃烤鸭"),        // 2
            text(ab, a, "3", "rust 🦀 is fun"),              // 3
            text(ab, b, "4", "100% sure, a_b not axb"),      // 4
            text(ac, a, "5", "lunch with c"),                // ac 1
            NewMessage {
                kind: 3,
                file_id: Some(f.id),
                ..text(ab, a, "6", "") // 5: file, no caption
            },
            NewMessage {
                kind: 4,                             // SYSTEM: not searchable
                ..text(ab, a, "7", "lunch created")  // 6
            },
        ];
        let out = store.append_messages(&batch, T0).await.unwrap();
        let ids = |rows: Vec<parley_store::MessageRow>| rows.into_iter().map(|m| m.id).collect::<Vec<_>>();
        let search = |user, conv, q: &'static str| {
            let store = store.clone();
            async move { ids(store.search_messages(user, conv, q, 0, 50).await.unwrap()) }
        };

        // Case- and accent-insensitive, newest first, across the user's conversations.
        assert_eq!(
            search(a, None, "LUNCH").await,
            vec![out[4].id, out[0].id],
            "[{label}]"
        );
        assert_eq!(
            search(a, None, "cafe").await,
            vec![out[0].id],
            "[{label}] accents"
        );
        assert_eq!(
            search(a, Some(ab), "lunch").await,
            vec![out[0].id],
            "[{label}] one conversation"
        );
        assert_eq!(
            search(b, None, "lunch").await,
            vec![out[0].id],
            "[{label}] only b's conversations"
        );
        assert_eq!(
            search(b, Some(ac), "lunch").await,
            Vec::<i64>::new(),
            "[{label}] not a member"
        );
        // CJK substrings, emoji, long and short (< 3 characters) queries.
        assert_eq!(
            search(b, None, "北京").await,
            vec![out[1].id],
            "[{label}] short CJK"
        );
        assert_eq!(
            search(b, None, "明天去北京").await,
            vec![out[1].id],
            "[{label}] CJK"
        );
        assert_eq!(search(b, None, "🦀").await, vec![out[2].id], "[{label}] emoji");
        assert_eq!(
            search(b, None, "🎉").await,
            Vec::<i64>::new(),
            "[{label}] other emoji"
        );
        assert_eq!(search(b, None, "rust 🦀").await, vec![out[2].id]);
        // LIKE wildcards and FTS syntax are literal.
        assert_eq!(
            search(b, None, "a_b").await,
            vec![out[3].id],
            "[{label}] underscore"
        );
        assert_eq!(search(b, None, "0%").await, vec![out[3].id], "[{label}] percent");
        assert_eq!(search(b, None, "100% sure").await, vec![out[3].id]);
        assert_eq!(search(b, None, "%").await, vec![out[3].id]);
        assert_eq!(search(b, None, "\"sure OR").await, Vec::<i64>::new());
        // File names; non-searchable kinds are skipped; blank queries find nothing.
        assert_eq!(
            search(b, None, "quarterly").await,
            vec![out[5].id],
            "[{label}] file name"
        );
        assert_eq!(search(a, Some(ab), "created").await, Vec::<i64>::new());
        assert_eq!(search(a, None, "  ").await, Vec::<i64>::new());

        // Paging by id.
        let page = store.search_messages(a, None, "lunch", 0, 1).await.unwrap();
        assert_eq!(ids(page.clone()), vec![out[4].id]);
        let next = store
            .search_messages(a, None, "lunch", page[0].id, 1)
            .await
            .unwrap();
        assert_eq!(ids(next), vec![out[0].id], "[{label}] second page");

        // Edits re-index, recalls and delete-for-me remove.
        let edit = NewMessage {
            kind: 7,
            effect: Effect::Edit {
                target_seq: 1,
                text: "Dinner instead".into(),
            },
            ..text(ab, a, "e", "Dinner instead")
        };
        let recall = NewMessage {
            kind: 8,
            effect: Effect::Recall { target_seq: 3 },
            ..text(ab, a, "r", "")
        };
        store.append_messages(&[edit, recall], T0 + 1).await.unwrap();
        assert_eq!(
            search(a, Some(ab), "lunch").await,
            Vec::<i64>::new(),
            "[{label}] edited away"
        );
        assert_eq!(
            search(a, None, "dinner").await,
            vec![out[0].id],
            "[{label}] edited in"
        );
        assert_eq!(
            search(a, None, "rust").await,
            Vec::<i64>::new(),
            "[{label}] recalled"
        );
        store.hide_messages(b, ab, &[2], T0).await.unwrap();
        assert_eq!(
            search(b, None, "北京").await,
            Vec::<i64>::new(),
            "[{label}] hidden"
        );
        assert_eq!(
            search(a, None, "北京").await,
            vec![out[1].id],
            "[{label}] hidden for b only"
        );
    })
    .await;
}
