//! Account rules and their negative cases, over TLS through the SDK, on every
//! database engine: names, passwords, login rate limits, sessions and
//! revocation, requests before login.

mod common;

use std::time::Duration;

use common::{code, on_every_database, password, wait_event};
use parley_client::{Client, ClientError, pb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_rules() {
    on_every_database(
        |_| {},
        |server| async move {
            let c = server.client().await;
            let user = c.register("Frank.01", "", "long enough").await.unwrap();
            assert_eq!(user.username, "frank.01", "usernames are case-insensitive");
            assert_eq!(
                user.display_name, "frank.01",
                "display name defaults to the username"
            );
            assert_eq!(
                code(c.register("FRANK.01", "F", "long enough").await),
                pb::ErrorCode::UsernameTaken
            );
            assert_eq!(
                code(c.register("fr", "F", "long enough").await),
                pb::ErrorCode::InvalidUsername
            );
            assert_eq!(
                code(c.register("no spaces", "F", "long enough").await),
                pb::ErrorCode::InvalidUsername
            );
            assert_eq!(
                code(c.register(&"x".repeat(33), "F", "long enough").await),
                pb::ErrorCode::InvalidUsername
            );
            assert_eq!(
                code(c.register("grace", "G", "short").await),
                pb::ErrorCode::WeakPassword
            );
            assert_eq!(
                code(c.register("grace", "G\u{0}", "long enough").await),
                pb::ErrorCode::InvalidArgument
            );
            // Nothing half-stored: the refused names are still free.
            c.register("grace", "Grace", "long enough").await.unwrap();
            server
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_login_are_refused() {
    on_every_database(
        |_| {},
        |server| async move {
            let c = server.client().await;
            assert_eq!(code(c.friends().await), pb::ErrorCode::Unauthenticated);
            assert_eq!(
                code(c.search_users("a", 10, "").await),
                pb::ErrorCode::Unauthenticated
            );
            assert_eq!(code(c.sessions().await), pb::ErrorCode::Unauthenticated);
            assert_eq!(code(c.logout().await), pb::ErrorCode::Unauthenticated);
            assert_eq!(
                code(c.resume(&"00".repeat(32)).await),
                pb::ErrorCode::SessionInvalid
            );
            assert_eq!(code(c.resume("not hex").await), pb::ErrorCode::SessionInvalid);
            server
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_rate_limited() {
    let tweak = |cfg: &mut parley_server::Config| {
        cfg.login_failures_per_account = 3;
        cfg.login_failures_per_address = 6;
    };
    on_every_database(tweak, |server| async move {
        let (_c, _) = server.user("henry").await;
        server.user("iris").await;
        let c = server.client().await;
        for _ in 0..3 {
            assert_eq!(
                code(c.login("henry", "wrong password").await),
                pb::ErrorCode::WrongCredentials
            );
        }
        let err = c.login("henry", &password("henry")).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(pb::ErrorCode::RateLimited),
            "even the right password waits"
        );
        match err {
            ClientError::Server(e) => assert!(e.retry_after_ms > 0),
            other => panic!("{other:?}"),
        }
        // Unknown users count against the address too, with the same answer as a wrong password.
        for _ in 0..3 {
            assert_eq!(
                code(c.login("nobody-here", "whatever1").await),
                pb::ErrorCode::WrongCredentials
            );
        }
        // The address has now used its 6 failures: other accounts are refused from here.
        assert_eq!(
            code(c.login("iris", &password("iris")).await),
            pb::ErrorCode::RateLimited
        );
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_revoke_and_password_change() {
    on_every_database(
        |_| {},
        |server| async move {
            let (laptop, _) = server.user("jane").await;
            let phone = server.device("jane").await;
            let tablet = server.device("jane").await;
            let sessions = laptop.sessions().await.unwrap();
            assert_eq!(sessions.len(), 3);
            assert_eq!(sessions.iter().filter(|s| s.current).count(), 1);

            // Revoking the phone's session tells the phone, and its token is dead.
            let phone_token = phone.session_token().unwrap();
            let phone_session = phone
                .sessions()
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.current)
                .unwrap()
                .id;
            let mut phone_ev = phone.events();
            laptop.revoke_session(phone_session).await.unwrap();
            wait_event(&mut phone_ev, "session revoked", |k| match k {
                pb::event::Kind::SessionRevoked(r) if r.session_id == phone_session => Some(()),
                _ => None,
            })
            .await;
            let fresh = server.client().await;
            assert_eq!(
                code(fresh.resume(&phone_token).await),
                pb::ErrorCode::SessionInvalid
            );
            assert_eq!(
                code(laptop.revoke_session(phone_session).await),
                pb::ErrorCode::NotFound
            );

            // Another user's session id is NOT_FOUND, not revoked.
            let (kim, _) = server.user("kim").await;
            let laptop_session = laptop
                .sessions()
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.current)
                .unwrap()
                .id;
            assert_eq!(
                code(kim.revoke_session(laptop_session).await),
                pb::ErrorCode::NotFound
            );

            // Changing the password revokes every other session.
            let tablet_token = tablet.session_token().unwrap();
            assert_eq!(
                code(laptop.change_password("not it at all", "new password 1").await),
                pb::ErrorCode::WrongCredentials
            );
            assert_eq!(
                code(laptop.change_password(&password("jane"), "short").await),
                pb::ErrorCode::WeakPassword
            );
            laptop
                .change_password(&password("jane"), "new password 1")
                .await
                .unwrap();
            assert_eq!(laptop.sessions().await.unwrap().len(), 1);
            let fresh = server.client().await;
            assert_eq!(
                code(fresh.resume(&tablet_token).await),
                pb::ErrorCode::SessionInvalid
            );
            assert_eq!(
                code(fresh.login("jane", &password("jane")).await),
                pb::ErrorCode::WrongCredentials
            );
            fresh.login("jane", "new password 1").await.unwrap();

            // Resume works on a new connection; logout kills the token.
            let token = laptop.session_token().unwrap();
            let other = server.client().await;
            let li = other.resume(&token).await.unwrap();
            assert!(li.token.is_empty(), "resume never re-sends the secret");
            laptop.logout().await.unwrap();
            let again = server.client().await;
            assert_eq!(code(again.resume(&token).await), pb::ErrorCode::SessionInvalid);
            server
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_reconnects_and_resumes() {
    on_every_database(
        |_| {},
        |server| async move {
            let (c, me) = server.user("leo").await;
            let mut ev = c.events();
            // Kill every live connection of this user from the server side, as a network drop would.
            let session = c
                .sessions()
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.current)
                .unwrap()
                .id;
            server.handle.ctx().hub.end_session(
                me.id,
                session,
                &pb::ServerFrame::error(0, pb::Error::new(pb::ErrorCode::Internal, "simulated drop")),
            );
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut saw_reconnecting = false;
            loop {
                match tokio::time::timeout_at(deadline, ev.recv()).await {
                    Ok(Ok(parley_client::ClientEvent::State(
                        parley_client::ConnectionState::Reconnecting { .. },
                    ))) => saw_reconnecting = true,
                    Ok(Ok(parley_client::ClientEvent::State(parley_client::ConnectionState::Connected))) => {
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => panic!("no reconnect"),
                }
            }
            assert!(saw_reconnecting);
            // The resumed session works without logging in again.
            assert_eq!(c.sessions().await.unwrap().len(), 1);
            let _: Client = c;
            server
        },
    )
    .await;
}
