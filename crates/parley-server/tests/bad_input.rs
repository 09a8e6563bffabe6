//! Hostile and broken clients over real sockets: oversized and malformed
//! frames, protocol violations, idle peers, a 1 000-connection garbage burst,
//! the connection limit. The server must answer with typed errors or close,
//! and keep serving well-behaved clients throughout.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::{raw_tls, start_server};
use futures_util::{SinkExt as _, StreamExt as _};
use parley_client::pb::{self, client_frame::Body as Req, server_frame::Body as Resp};
use parley_proto::{FrameCodec, PROTOCOL_VERSION};
use parley_store::testing::test_databases;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::codec::Framed;

type Raw = Framed<
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    FrameCodec<pb::ServerFrame, pb::ClientFrame>,
>;

async fn sqlite_server(
    tweak: impl Fn(&mut parley_server::Config),
) -> (common::TestServer, parley_store::testing::TestDb) {
    let db = test_databases()
        .await
        .into_iter()
        .find(|d| d.label == "sqlite")
        .expect("sqlite");
    (start_server(&db, tweak).await, db)
}

async fn raw(server: &common::TestServer) -> Raw {
    let tls = raw_tls(server.handle.client_addr, &server.fingerprint())
        .await
        .expect("tls");
    Framed::new(tls, FrameCodec::new(1 << 20))
}

fn frame(request_id: u64, body: Req) -> pb::ClientFrame {
    pb::ClientFrame {
        request_id,
        body: Some(body),
    }
}

fn hello(version: u32) -> Req {
    Req::Hello(pb::Hello {
        protocol_version: version,
        client_name: "raw-test".into(),
    })
}

async fn recv(conn: &mut Raw) -> Option<pb::ServerFrame> {
    match tokio::time::timeout(Duration::from_secs(10), conn.next()).await {
        Ok(Some(Ok(f))) => Some(f),
        Ok(_) => None,
        Err(_) => panic!("server neither answered nor closed"),
    }
}

async fn greeted(server: &common::TestServer) -> Raw {
    let mut conn = raw(server).await;
    conn.send(frame(1, hello(PROTOCOL_VERSION))).await.unwrap();
    let welcome = recv(&mut conn).await.expect("welcome");
    assert!(matches!(welcome.body, Some(Resp::Welcome(_))), "{welcome:?}");
    conn
}

fn error_code(f: &pb::ServerFrame) -> pb::ErrorCode {
    match &f.body {
        Some(Resp::Error(e)) => e.kind(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Reads until the server closes; fails if it keeps the connection open.
async fn expect_closed(conn: &mut Raw) {
    while recv(conn).await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_get_typed_errors() {
    let (server, _db) = sqlite_server(|_| {}).await;

    // An oversized frame: refused from its length prefix, then closed.
    let mut conn = greeted(&server).await;
    let mut header = BytesMut::new();
    header.put_u32(2 * 1024 * 1024);
    conn.get_mut().write_all(&header).await.unwrap();
    let f = recv(&mut conn).await.expect("error frame");
    assert_eq!((f.request_id, error_code(&f)), (0, pb::ErrorCode::FrameTooLarge));
    expect_closed(&mut conn).await;

    // Undecodable protobuf inside a well-sized frame.
    let mut conn = greeted(&server).await;
    conn.get_mut()
        .write_all(&[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let f = recv(&mut conn).await.expect("error frame");
    assert_eq!(error_code(&f), pb::ErrorCode::BadRequest);
    expect_closed(&mut conn).await;

    // Anything before Hello.
    let mut conn = raw(&server).await;
    conn.send(frame(1, Req::ListFriends(pb::ListFriends {})))
        .await
        .unwrap();
    assert_eq!(
        error_code(&recv(&mut conn).await.unwrap()),
        pb::ErrorCode::BadRequest
    );
    expect_closed(&mut conn).await;

    // A protocol version we do not speak.
    let mut conn = raw(&server).await;
    conn.send(frame(9, hello(PROTOCOL_VERSION + 1))).await.unwrap();
    let f = recv(&mut conn).await.unwrap();
    assert_eq!(
        (f.request_id, error_code(&f)),
        (9, pb::ErrorCode::UnsupportedVersion)
    );
    expect_closed(&mut conn).await;

    // An unknown request type (a field this version lacks) is refused, the connection lives on.
    let mut conn = greeted(&server).await;
    let mut unknown = BytesMut::new();
    // request_id = 5 (field 1, varint), then field 999 as 3 length-delimited bytes.
    let payload = [0x08, 0x05, 0xba, 0x3e, 0x03, b'a', b'b', b'c'];
    unknown.put_u32(payload.len() as u32);
    unknown.put_slice(&payload);
    conn.get_mut().write_all(&unknown).await.unwrap();
    let f = recv(&mut conn).await.unwrap();
    assert_eq!((f.request_id, error_code(&f)), (5, pb::ErrorCode::BadRequest));
    conn.send(frame(6, Req::Ping(pb::Ping { nonce: 42 })))
        .await
        .unwrap();
    let f = recv(&mut conn).await.unwrap();
    assert_eq!(f.body, Some(Resp::Pong(pb::Pong { nonce: 42 })));

    // A request without an id cannot be answered: closed.
    conn.send(frame(0, Req::Ping(pb::Ping { nonce: 1 })))
        .await
        .unwrap();
    assert_eq!(
        error_code(&recv(&mut conn).await.unwrap()),
        pb::ErrorCode::BadRequest
    );
    expect_closed(&mut conn).await;

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let (server, _db) = sqlite_server(|cfg| {
        cfg.heartbeat = Duration::from_millis(200);
        cfg.idle_timeout = Duration::from_millis(600);
    })
    .await;
    let mut conn = greeted(&server).await;
    let f = recv(&mut conn).await.expect("idle error");
    assert_eq!(error_code(&f), pb::ErrorCode::IdleTimeout);
    expect_closed(&mut conn).await;
    // The SDK's heartbeat keeps a real client alive past the idle timeout.
    let c = server.client().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.register("still-here", "", "long enough").await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_garbage_burst_of_1000_connections() {
    let (server, _db) = sqlite_server(|_| {}).await;
    let addr = server.handle.client_addr;
    let fp = server.fingerprint();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u32 {
        let fp = fp.clone();
        tasks.spawn(async move {
            let junk: Vec<u8> = (0..256u32)
                .map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8)
                .collect();
            if i % 2 == 0 {
                // Garbage instead of a TLS handshake.
                if let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await {
                    let _ = tcp.write_all(&junk).await;
                    let mut buf = [0u8; 64];
                    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
                }
            } else if let Ok(mut tls) = raw_tls(addr, &fp).await {
                // A good handshake, then garbage frames.
                let _ = tls.write_all(&junk).await;
                let mut buf = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    // A normal client is served as if nothing happened.
    let (c, _) = server.user("after-the-storm").await;
    assert_eq!(c.sessions().await.unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_extra_connections() {
    let (server, _db) = sqlite_server(|cfg| cfg.max_connections = 2).await;
    let _a = greeted(&server).await;
    let _b = greeted(&server).await;
    // The third is closed right after accept: the TLS handshake cannot complete.
    let third = raw_tls(server.handle.client_addr, &server.fingerprint()).await;
    if let Ok(mut tls) = third {
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "third connection must be closed");
    }
    drop(_a);
    // A freed slot is usable again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _c = greeted(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_speaks_the_same_frames() {
    let (server, _db) = sqlite_server(|_| {}).await;
    let tls = raw_tls(server.handle.http_addr, &server.fingerprint())
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws", server.handle.http_addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("websocket upgrade");
    use prost::Message as _;
    use tokio_tungstenite::tungstenite::Message;
    let send = |f: pb::ClientFrame| Message::Binary(f.encode_to_vec().into());
    ws.send(send(frame(1, hello(PROTOCOL_VERSION)))).await.unwrap();
    ws.send(send(frame(
        2,
        Req::Register(pb::Register {
            username: "websocket-user".into(),
            display_name: "".into(),
            password: "long enough".into(),
        }),
    )))
    .await
    .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Binary(b))) => got.push(pb::ServerFrame::decode(&b[..]).unwrap()),
            Some(Ok(_)) => {}
            other => panic!("websocket ended: {other:?}"),
        }
    }
    assert!(matches!(got[0].body, Some(Resp::Welcome(_))));
    assert_eq!(got[1].request_id, 2);
    assert!(matches!(got[1].body, Some(Resp::Registered(_))), "{:?}", got[1]);
    // Text messages are not frames: typed error, then close.
    ws.send(Message::Text("hello?".into())).await.unwrap();
    let mut saw_error = false;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        if let Message::Binary(b) = msg {
            let f = pb::ServerFrame::decode(&b[..]).unwrap();
            saw_error |= error_code(&f) == pb::ErrorCode::BadRequest;
        }
    }
    assert!(saw_error);
    server.stop().await;
}

async fn https_get(server: &common::TestServer, path: &str) -> String {
    let mut tls = raw_tls(server.handle.http_addr, &server.fingerprint())
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap_or_default();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_over_https() {
    let (server, _db) = sqlite_server(|_| {}).await;
    let (c, _) = server.user("metrics-user").await;
    c.friends().await.unwrap();
    let health = https_get(&server, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok\n"), "{health}");
    let metrics = https_get(&server, "/metrics").await;
    for name in [
        "parley_connections",
        "parley_requests_total",
        "parley_db_seconds",
        "parley_request_seconds",
    ] {
        assert!(metrics.contains(name), "missing {name} in:\n{metrics}");
    }
    assert!(
        !metrics.contains("password-metrics-user"),
        "secrets never reach metrics"
    );
    server.stop().await;
}
