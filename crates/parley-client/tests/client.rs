//! The SDK against a small in-process TLS server (see `support/mod.rs`):
//! trust settings, request matching, events, heartbeat and reconnect.

mod support;

use std::time::Duration;

use parley_client::{Client, ClientError, ClientEvent, ConnectionState, Trust, pb};
use support::{Control, TestServer, wait_for};

fn is_state(state: ConnectionState) -> impl Fn(&ClientEvent) -> bool {
    move |e| matches!(e, ClientEvent::State(s) if *s == state)
}

fn is_reconnecting(e: &ClientEvent) -> bool {
    matches!(e, ClientEvent::State(ConnectionState::Reconnecting { .. }))
}

#[tokio::test]
async fn pinned_fingerprint_connects_and_a_wrong_pin_is_refused() {
    let server = TestServer::start(10_000).await;
    let client = Client::connect(server.pinned()).await.unwrap();
    assert_eq!(client.welcome().heartbeat_interval_ms, 10_000);
    let identity = client.server_identity().unwrap();
    assert_eq!(identity.fingerprint, server.fingerprint);
    assert!(!identity.newly_trusted);
    client.close().await;

    let wrong = "ab".repeat(32);
    match Client::connect(server.config(Trust::Pinned(wrong.clone()))).await {
        Err(ClientError::CertificateChanged { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, server.fingerprint);
        }
        other => panic!("expected CertificateChanged, got {other:?}"),
    }
}

#[tokio::test]
async fn ca_trust_checks_the_server_name() {
    let server = TestServer::start(10_000).await;
    let ca = Trust::CaPem(server.cert_pem.clone().into_bytes());
    let client = Client::connect(server.config(ca.clone())).await.unwrap();
    client.close().await;

    let mut config = server.config(ca);
    config.server_name = "elsewhere.example".into();
    let err = Client::connect(config).await.unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err:?}");

    // Nobody vouches for a self-signed certificate.
    let err = Client::connect(server.config(Trust::SystemRoots))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn trust_on_first_use_records_then_insists() {
    let server = TestServer::start(10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("known_hosts");
    let trust = Trust::FirstUse(file.clone());

    let first = Client::connect(server.config(trust.clone())).await.unwrap();
    assert!(first.server_identity().unwrap().newly_trusted);
    first.close().await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&format!("{} {}", server.addr, server.fingerprint)));

    let second = Client::connect(server.config(trust.clone())).await.unwrap();
    assert!(!second.server_identity().unwrap().newly_trusted);
    second.close().await;

    // The certificate "changes": the recorded fingerprint no longer matches.
    let recorded = "cd".repeat(32);
    std::fs::write(&file, format!("{} {recorded}\n", server.addr)).unwrap();
    match Client::connect(server.config(trust)).await {
        Err(err @ ClientError::CertificateChanged { .. }) => {
            assert!(err.to_string().contains("CHANGED"));
            let ClientError::CertificateChanged { expected, actual } = err else {
                unreachable!()
            };
            assert_eq!(expected, recorded);
            assert_eq!(actual, server.fingerprint);
        }
        other => panic!("expected CertificateChanged, got {other:?}"),
    }
    // And the file was not silently rewritten.
    assert!(std::fs::read_to_string(&file).unwrap().contains(&recorded));
}

#[tokio::test]
async fn responses_are_matched_to_their_requests() {
    let server = TestServer::start(10_000).await;
    let client = Client::connect(server.pinned()).await.unwrap();
    // "slow" is answered after "fast" although it was sent first.
    let (slow, fast) = tokio::join!(client.profile_by_username("slow"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.profile_by_username("fast").await
    });
    assert_eq!(slow.unwrap().username, "slow");
    assert_eq!(fast.unwrap().username, "fast");

    let err = client.profile_by_username("missing").await.unwrap_err();
    assert_eq!(err.code(), Some(pb::ErrorCode::NotFound));
    let err = client.login("alice", "bad").await.unwrap_err();
    assert_eq!(err.code(), Some(pb::ErrorCode::WrongCredentials));
    assert_eq!(client.session_token(), None);

    let friends = client.friends().await.unwrap();
    assert_eq!(friends.len(), 1);
    assert_eq!(friends[0].remark, "bobby");
    client.close().await;
}

#[tokio::test]
async fn unanswered_requests_time_out() {
    let server = TestServer::start(10_000).await;
    let mut config = server.pinned();
    config.request_timeout = Duration::from_millis(200);
    let client = Client::connect(config).await.unwrap();
    let err = client.profile_by_username("never").await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    // The connection is still fine afterwards.
    assert_eq!(client.profile_by_username("x").await.unwrap().username, "x");
    client.close().await;
}

#[tokio::test]
async fn pushed_events_reach_subscribers() {
    let server = TestServer::start(10_000).await;
    let client = Client::connect(server.pinned()).await.unwrap();
    let mut events = client.events();
    let kind = pb::event::Kind::FriendRemoved(pb::FriendRemoved { user_id: 42 });
    server.control(Control::Push(Box::new(kind)));
    let event = wait_for(&mut events, |e| matches!(e, ClientEvent::Server(_))).await;
    assert!(matches!(
        event,
        ClientEvent::Server(pb::event::Kind::FriendRemoved(pb::FriendRemoved { user_id: 42 }))
    ));
    client.close().await;
}

#[tokio::test]
async fn idle_clients_send_heartbeats() {
    let server = TestServer::start(100).await;
    let client = Client::connect(server.pinned()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert!(server.stats.lock().unwrap().pings >= 3);
    client.close().await;
}

#[tokio::test]
async fn reconnects_and_resumes_the_session() {
    let server = TestServer::start(10_000).await;
    let client = Client::connect(server.pinned()).await.unwrap();
    let logged_in = client.login("alice", "pw").await.unwrap();
    assert_eq!(client.session_token().as_deref(), Some(logged_in.token.as_str()));
    assert_eq!(client.user().unwrap().username, "alice");
    let mut events = client.events();

    // An in-flight request fails with Disconnected when the link goes.
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.profile_by_username("slow").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.control(Control::DropAll);
    let err = in_flight.await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::Disconnected), "{err:?}");

    wait_for(&mut events, is_reconnecting).await;
    wait_for(&mut events, is_state(ConnectionState::Connected)).await;
    assert_eq!(
        server.stats.lock().unwrap().resumes,
        vec![logged_in.token.clone()]
    );
    assert_eq!(client.session_token(), Some(logged_in.token));
    assert_eq!(client.profile_by_username("y").await.unwrap().username, "y");
    client.close().await;
}

#[tokio::test]
async fn a_silent_server_is_abandoned_and_reconnected() {
    let server = TestServer::start(100).await;
    let client = Client::connect(server.pinned()).await.unwrap();
    let mut events = client.events();
    server.control(Control::Mute);
    wait_for(&mut events, is_reconnecting).await;
    wait_for(&mut events, is_state(ConnectionState::Connected)).await;
    assert_eq!(server.stats.lock().unwrap().hellos, 2);
    client.close().await;
}

#[tokio::test]
async fn a_refused_resume_logs_out_and_stops() {
    let server = TestServer::start(10_000).await;
    let client = Client::connect(server.pinned()).await.unwrap();
    let token = client.login("alice", "pw").await.unwrap().token;
    let mut events = client.events();
    server.expire(&token);
    server.control(Control::DropAll);
    wait_for(&mut events, is_state(ConnectionState::LoggedOut)).await;
    assert_eq!(client.session_token(), None);
    assert_eq!(client.user(), None);
    let err = client.profile_by_username("z").await.unwrap_err();
    assert!(matches!(err, ClientError::Disconnected), "{err:?}");
}

#[tokio::test]
async fn a_revoked_session_logs_out_without_reconnecting() {
    let server = TestServer::start(10_000).await;
    let client = Client::connect(server.pinned()).await.unwrap();
    let logged_in = client.login("alice", "pw").await.unwrap();
    let mut events = client.events();
    server.control(Control::Revoke(logged_in.session_id));
    let event = wait_for(&mut events, |_| true).await;
    assert!(matches!(
        event,
        ClientEvent::Server(pb::event::Kind::SessionRevoked(_))
    ));
    let event = wait_for(&mut events, |_| true).await;
    assert!(
        matches!(event, ClientEvent::State(ConnectionState::LoggedOut)),
        "{event:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.stats.lock().unwrap().hellos, 1);
    assert_eq!(client.session_token(), None);
}

#[tokio::test]
async fn resume_on_a_new_client_then_logout_stops_reconnects() {
    let server = TestServer::start(10_000).await;
    let first = Client::connect(server.pinned()).await.unwrap();
    let token = first.login("alice", "pw").await.unwrap().token;
    first.close().await;

    let client = Client::connect(server.pinned()).await.unwrap();
    let resumed = client.resume(&token).await.unwrap();
    assert!(resumed.token.is_empty());
    assert_eq!(client.session_token(), Some(token));
    client.logout().await.unwrap();
    assert_eq!(client.session_token(), None);

    let mut events = client.events();
    server.control(Control::DropAll);
    wait_for(&mut events, is_state(ConnectionState::Closed)).await;
    assert_eq!(server.stats.lock().unwrap().hellos, 2);
}

#[tokio::test]
async fn close_fails_in_flight_requests_and_does_not_reconnect() {
    let server = TestServer::start(10_000).await;
    let client = Client::connect(server.pinned()).await.unwrap();
    let mut events = client.events();
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.profile_by_username("never").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.close().await;
    let err = in_flight.await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::Disconnected), "{err:?}");
    wait_for(&mut events, is_state(ConnectionState::Closed)).await;
    let err = client.friends().await.unwrap_err();
    assert!(matches!(err, ClientError::Disconnected), "{err:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.stats.lock().unwrap().hellos, 1);
}

#[tokio::test]
async fn connecting_to_nothing_fails_quickly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let config = parley_client::ClientConfig::new(addr.to_string(), Trust::Pinned("00".repeat(32)));
    let err = Client::connect(config).await.unwrap_err();
    assert!(matches!(err, ClientError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn revoking_the_own_session_still_gets_its_answer() {
    let server = TestServer::start(10_000).await;
    let client = Client::connect(server.pinned()).await.unwrap();
    let logged_in = client.login("alice", "pw").await.unwrap();
    let mut events = client.events();
    client.revoke_session(logged_in.session_id).await.unwrap();
    wait_for(&mut events, is_state(ConnectionState::LoggedOut)).await;
    assert_eq!(client.session_token(), None);
    assert_eq!(server.stats.lock().unwrap().hellos, 1);
}
