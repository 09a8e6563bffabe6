//! Uploads and downloads against the fake file server: chunking, resuming
//! after a hang-up, de-duplication by hash, Range resumes, and the SHA-256
//! check that refuses corrupted bytes.

mod support;

use std::sync::{Arc, Mutex};

use parley_client::{Client, ClientError, ClientEvent, pb};
use support::{TestServer, wait_for};

async fn logged_in(server: &TestServer) -> Client {
    let client = Client::connect(server.pinned()).await.unwrap();
    client.login("alice", "pw").await.unwrap();
    client
}

type Reports = Arc<Mutex<Vec<(u64, u64)>>>;

/// A progress callback that records every report.
fn recorder() -> (Reports, impl Fn(u64, u64) + Send + Sync) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |done, total| sink.lock().unwrap().push((done, total)))
}

#[tokio::test]
async fn uploads_are_chunked_resumed_and_deduplicated() {
    let server = TestServer::start(10_000).await;
    let client = logged_in(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"hello, parley!").unwrap();
    let (progress, report) = recorder();
    let file = client.upload_file(&path, None, report).await.unwrap();
    assert_eq!(file.name, "notes.txt");
    assert_eq!(file.mime, "text/plain");
    assert_eq!(file.size, 14);
    assert_eq!(
        server.stats.lock().unwrap().store.files[&file.file_id]
            .bytes
            .as_ref(),
        b"hello, parley!"
    );
    let reports = progress.lock().unwrap().clone();
    assert_eq!(reports.first(), Some(&(0, 14)));
    assert_eq!(reports.last(), Some(&(14, 14)));
    assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0), "{reports:?}");
    assert_eq!(
        server.stats.lock().unwrap().store.chunks,
        4,
        "chunk_max is 4 bytes"
    );

    // Same bytes again: the server knows them, nothing is sent.
    let again = client
        .upload_bytes("copy.txt", &b"hello, parley!"[..], None, |_, _| {})
        .await
        .unwrap();
    assert_eq!(again.file_id, file.file_id);
    assert_eq!(server.stats.lock().unwrap().store.chunks, 4);
    client.close().await;
}

#[tokio::test]
async fn an_upload_resumes_after_the_connection_drops() {
    let server = TestServer::start(10_000).await;
    let client = logged_in(&server).await;
    server.stats.lock().unwrap().store.hang_up_after_chunk = 2;
    let bytes: Vec<u8> = (0..30u8).collect();
    let file = client
        .upload_bytes("data.bin", bytes.clone(), None, |_, _| {})
        .await
        .unwrap();
    let store = &server.stats.lock().unwrap().store;
    assert_eq!(store.files[&file.file_id].bytes.as_ref(), &bytes[..]);
    assert_eq!(store.bytes_received, 30, "no chunk was sent twice");
    assert_eq!(file.mime, "application/octet-stream");
}

#[tokio::test]
async fn downloads_resume_with_range_and_verify_the_hash() {
    let server = TestServer::start(10_000).await;
    let client = logged_in(&server).await;
    let content: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let file_id = {
        let mut stats = server.stats.lock().unwrap();
        stats.store.cut_next_download = Some(1000);
        stats.store.add("pic.png", "image/png", &content)
    };
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("pic.png");
    let (progress, report) = recorder();
    let file = client.download_file(file_id, &dest, report).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), content);
    assert!(!dir.path().join("pic.png.part").exists());
    assert_eq!(
        (file.file_id, file.size, file.name.as_str()),
        (file_id, 5000, "pic.png")
    );
    assert_eq!(file.mime, "image/png");
    assert_eq!(progress.lock().unwrap().last(), Some(&(5000, 5000)));
    assert_eq!(
        server.stats.lock().unwrap().store.ranges,
        vec![String::new(), "bytes=1000-".to_string()]
    );

    // A partial file from an earlier run is resumed too.
    let dest2 = dir.path().join("again.png");
    std::fs::write(dir.path().join("again.png.part"), &content[..4000]).unwrap();
    client.download_file(file_id, &dest2, |_, _| {}).await.unwrap();
    assert_eq!(std::fs::read(&dest2).unwrap(), content);

    assert_eq!(client.thumbnail(file_id).await.unwrap(), b"THUMB");
    client.close().await;
}

#[tokio::test]
async fn corrupted_downloads_are_refused_and_removed() {
    let server = TestServer::start(10_000).await;
    let client = logged_in(&server).await;
    let file_id = {
        let mut stats = server.stats.lock().unwrap();
        stats.store.corrupt = true;
        stats
            .store
            .add("a.bin", "application/octet-stream", b"precious bytes")
    };
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.bin");
    let err = client.download_file(file_id, &dest, |_, _| {}).await.unwrap_err();
    assert!(matches!(err, ClientError::Integrity { .. }), "{err:?}");
    assert!(!dest.exists());
    assert!(!dir.path().join("a.bin.part").exists());

    let err = client.download_file(424242, &dest, |_, _| {}).await.unwrap_err();
    assert_eq!(err.code(), Some(pb::ErrorCode::NotFound));
    client.close().await;
}

#[tokio::test]
async fn avatars_and_images_in_messages() {
    let server = TestServer::start(10_000).await;
    let client = logged_in(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("me.png");
    std::fs::write(&path, b"\x89PNG fake").unwrap();
    let file = client.upload_file(&path, None, |_, _| {}).await.unwrap();
    assert_eq!(file.mime, "image/png");
    client.set_avatar(file.file_id).await.unwrap();
    assert_eq!(client.user().unwrap().avatar_file_id, file.file_id);
    assert_eq!(client.avatar(1).await.unwrap(), b"\x89PNG fake");
    let err = client.set_avatar(7).await.unwrap_err();
    assert!(matches!(err, ClientError::Http { status: 422, .. }), "{err:?}");

    let conv = client.open_direct(2).await.unwrap();
    let mut events = client.events();
    let ack = client
        .send_image(conv.id, &path, "look", |_, _| {})
        .await
        .unwrap();
    let event = wait_for(&mut events, |e| {
        matches!(e, ClientEvent::Server(pb::event::Kind::Message(_)))
    })
    .await;
    let ClientEvent::Server(pb::event::Kind::Message(message)) = event else {
        unreachable!()
    };
    assert_eq!(message.seq, ack.seq);
    assert_eq!(message.kind, pb::MessageKind::Image as i32);
    assert_eq!(message.text, "look");
    assert_eq!(message.file.unwrap().file_id, file.file_id);
    client.close().await;
}

#[tokio::test]
async fn files_need_a_session() {
    let server = TestServer::start(10_000).await;
    let client = Client::connect(server.pinned()).await.unwrap();
    let err = client.thumbnail(1).await.unwrap_err();
    assert!(matches!(err, ClientError::NotLoggedIn), "{err:?}");
    client.close().await;
}

#[tokio::test]
async fn the_file_address_can_be_configured_and_trust_on_first_use_applies() {
    let server = TestServer::start(10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = server.config(parley_client::Trust::FirstUse(dir.path().join("known_hosts")));
    config.http_address = Some(format!("localhost:{}", server.files.addr.port()));
    let client = Client::connect(config).await.unwrap();
    client.login("alice", "pw").await.unwrap();
    let file = client
        .upload_bytes("x.txt", &b"x"[..], None, |_, _| {})
        .await
        .unwrap();
    assert_eq!(file.size, 1);
    client.close().await;
}

/// Applications spawn these futures on multi-threaded runtimes.
#[allow(dead_code)]
fn sdk_futures_are_send(
    client: &Client,
    path: &std::path::Path,
    after: &mut std::collections::HashMap<i64, i64>,
) {
    fn send<T: Send>(_: T) {}
    send(client.login("a", "b"));
    send(client.send(parley_client::OutgoingMessage::text(1, "x")));
    send(client.upload_file(path, None, |_, _| {}));
    send(client.upload_bytes("n", vec![1u8], None, |_, _| {}));
    send(client.download_file(1, path, |_, _| {}));
    send(client.send_image(1, path, "", |_, _| {}));
    send(client.catch_up(after));
    send(client.avatar(1));
}
