//! File transfer over HTTPS (SPEC §3.7) against a real server, on every database engine:
//! chunked and resumed uploads, refused chunks (overlap, too long, too large, truncated),
//! hash and image verification with nothing half-stored, content-addressed deduplication,
//! hostile names, range downloads, access control through conversation grants, bearer
//! authentication and avatars.

mod common;

use std::path::{Path, PathBuf};

use common::http::{Api, HttpResponse, request, sha256_hex};
use common::{TestServer, on_every_database, raw_tls};
use parley_server::service::now_ms;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Chunk limit used by these tests (small, so a few KiB make several chunks).
const CHUNK_MAX: usize = 4096;

fn tweak(cfg: &mut parley_server::Config) {
    cfg.max_chunk_bytes = CHUNK_MAX;
    cfg.max_file_bytes = 1024 * 1024;
}

/// Deterministic pseudo-random bytes (distinct per `seed`).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A PNG of `w`×`h` (opaque gradient).
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

async fn api<'a>(server: &'a TestServer, name: &str) -> (Api<'a>, i64) {
    let (client, user) = server.user(name).await;
    let token = client.session_token().expect("session token");
    (Api::new(server, token), user.id)
}

fn files_dir(server: &TestServer) -> PathBuf {
    server.handle.ctx().cfg.files_dir()
}

/// Every regular file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn blob_count(server: &TestServer) -> usize {
    walk(&files_dir(server).join("blobs")).len()
}

fn tmp_count(server: &TestServer) -> usize {
    walk(&files_dir(server).join("tmp")).len()
}

fn upload_id(r: &HttpResponse) -> String {
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["upload_id"].as_str().expect("upload_id").to_string()
}

fn file_id(r: &HttpResponse) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["file"]["file_id"].as_str().expect("file_id").to_string()
}

fn error_code(r: &HttpResponse) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

/// Sends a PATCH whose body stops after `sent` of `declared` bytes, then drops the
/// connection: a chunk lost in transit.
async fn lost_chunk(
    server: &TestServer,
    token: &str,
    upload: &str,
    offset: usize,
    chunk: &[u8],
    sent: usize,
) {
    let mut tls = raw_tls(server.handle.http_addr, &server.fingerprint())
        .await
        .expect("tls");
    let head = format!(
        "PATCH /v1/uploads/{upload} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\
         upload-offset: {offset}\r\ncontent-length: {}\r\n\r\n",
        chunk.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write head");
    tls.write_all(&chunk[..sent]).await.expect("write part");
    tls.flush().await.expect("flush");
    drop(tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_resume_and_refused_chunks() {
    on_every_database(tweak, |server| async move {
        let (alice, _) = api(&server, "alice").await;
        let data = noise(20_000, 1);

        // Three chunks → one file, downloadable byte for byte.
        let start = alice
            .start_upload(&data, "notes.bin", "application/octet-stream")
            .await;
        let id = upload_id(&start);
        assert_eq!(start.json()["received"], 0);
        assert_eq!(start.json()["chunk_max"], CHUNK_MAX);
        let r = alice.patch(&id, 0, &data[..4000]).await;
        assert_eq!((r.status, r.json()["received"].as_i64()), (200, Some(4000)));

        // Chunk 2 is lost half-way: the server keeps what it had; the client asks and resumes.
        lost_chunk(&server, &alice.token, &id, 4000, &data[4000..8000], 1500).await;
        let status = alice.get(&format!("/v1/uploads/{id}"), &[]).await;
        assert_eq!(status.status, 200);
        assert_eq!(status.json()["received"], 4000);
        assert_eq!(status.json()["size"], 20_000);
        assert_eq!(status.json()["upload_id"], id.as_str());

        // A chunk stalled on a connection the server still thinks alive must not block the
        // resume: the newer request takes over and the stalled one is refused.
        let mut stalled = raw_tls(server.handle.http_addr, &server.fingerprint())
            .await
            .expect("tls");
        let head = format!(
            "PATCH /v1/uploads/{id} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\n\
             upload-offset: 4000\r\ncontent-length: 4000\r\n\r\n",
            alice.token
        );
        stalled.write_all(head.as_bytes()).await.expect("write head");
        stalled.write_all(&noise(1000, 12)).await.expect("write part");
        stalled.flush().await.expect("flush");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let resumed = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            alice.patch(&id, 4000, &data[4000..8000]),
        )
        .await
        .expect("the resume is not blocked by the stalled chunk");
        assert_eq!(
            (resumed.status, resumed.json()["received"].as_i64()),
            (200, Some(8000))
        );
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stalled.read(&mut answer))
            .await
            .expect("stalled request answered")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
        assert!(
            answer.contains("superseded") || answer.contains("offset_mismatch"),
            "{answer}"
        );
        drop(stalled);
        // An empty chunk only reports progress.
        let r = alice.patch(&id, 8000, &[]).await;
        assert_eq!(r.json()["received"], 8000);

        // Overlapping (offset below received) and skipping ahead are both refused with `received`.
        for offset in [7000, 9000] {
            let r = alice.patch(&id, offset, &data[offset..offset + 1000]).await;
            assert_eq!(r.status, 409);
            assert_eq!(error_code(&r), "offset_mismatch");
            assert_eq!(r.json()["received"], 8000);
        }
        // A chunk over chunk_max is refused whole.
        let r = alice.patch(&id, 8000, &data[8000..8000 + CHUNK_MAX]).await;
        assert_eq!(r.status, 200, "exactly chunk_max is fine");
        let at = 8000 + CHUNK_MAX;
        let big = noise(CHUNK_MAX + 1, 9);
        let r = alice.patch(&id, at, &big).await;
        assert_eq!(r.status, 413);
        let r = alice.patch(&id, at, &data[at..at + CHUNK_MAX]).await;
        assert_eq!(r.status, 200);
        let at = at + CHUNK_MAX;
        // A short "final" chunk leaves the upload incomplete, with no file.
        let r = alice.patch(&id, at, &data[at..19_000]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["received"], 19_000);
        assert!(r.json().get("file").is_none());
        assert_eq!(blob_count(&server), 0);
        // Bytes beyond the announced size.
        let r = alice.patch(&id, 19_000, &noise(1001, 3)).await;
        assert_eq!((r.status, error_code(&r).as_str()), (400, "too_long"));
        let r = alice.patch(&id, 19_000, &data[19_000..]).await;
        let fid = file_id(&r);
        assert_eq!(r.json()["received"], 20_000);
        let file = &r.json()["file"];
        assert_eq!(file["size"], 20_000);
        assert_eq!(file["sha256"], sha256_hex(&data).as_str());
        assert_eq!(file["name"], "notes.bin");
        assert_eq!(file["has_thumbnail"], false);

        // The upload is gone; the content is one blob; no temp file is left.
        assert_eq!(alice.get(&format!("/v1/uploads/{id}"), &[]).await.status, 404);
        assert_eq!(blob_count(&server), 1);
        assert_eq!(tmp_count(&server), 0);

        let got = alice.get(&format!("/v1/files/{fid}"), &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, data);
        assert_eq!(
            got.header("content-type").as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(
            got.header("content-disposition").as_deref(),
            Some("attachment; filename*=UTF-8''notes.bin")
        );
        assert_eq!(got.header("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(got.header("etag"), Some(format!("\"{}\"", sha256_hex(&data))));
        assert_eq!(got.header("content-length").as_deref(), Some("20000"));
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_leaves_nothing_half_stored() {
    on_every_database(tweak, |server| async move {
        let (alice, _) = api(&server, "alice").await;

        // Announced hash does not match the bytes.
        let data = noise(5000, 2);
        let other = noise(5000, 3);
        let r = alice
            .json(
                "POST",
                "/v1/uploads",
                serde_json::json!({"size": 5000, "sha256": sha256_hex(&other), "name": "x.bin"}),
            )
            .await;
        let id = upload_id(&r);
        assert_eq!(alice.patch(&id, 0, &data[..4000]).await.status, 200);
        let r = alice.patch(&id, 4000, &data[4000..]).await;
        assert_eq!((r.status, error_code(&r).as_str()), (422, "hash_mismatch"));
        assert_eq!(alice.get(&format!("/v1/uploads/{id}"), &[]).await.status, 404);
        assert_eq!(blob_count(&server), 0);
        assert_eq!(tmp_count(&server), 0);

        // Random bytes claiming to be a PNG, by type and by name.
        for (name, mime) in [
            ("x.png", "image/png"),
            ("x.png", "application/octet-stream"),
            ("x", "image/png"),
        ] {
            let fake = noise(3000, 4);
            let r = alice.upload(&fake, name, mime, CHUNK_MAX).await;
            assert_eq!(
                (r.status, error_code(&r).as_str()),
                (422, "invalid_image"),
                "{name} {mime}"
            );
        }
        assert_eq!(blob_count(&server), 0);
        assert_eq!(tmp_count(&server), 0);

        // Announcement checks.
        let post = |body: serde_json::Value| alice.json("POST", "/v1/uploads", body);
        let sha = sha256_hex(b"x");
        let r = post(serde_json::json!({"size": 2 * 1024 * 1024, "sha256": sha, "name": "big"})).await;
        assert_eq!((r.status, error_code(&r).as_str()), (413, "too_large"));
        let r = post(serde_json::json!({"size": 0, "sha256": sha, "name": "empty"})).await;
        assert_eq!(r.status, 400);
        let r = post(serde_json::json!({"size": 1, "sha256": "abc", "name": "x"})).await;
        assert_eq!(r.status, 400);
        let r = post(serde_json::json!({"size": 1, "sha256": sha, "name": "../"})).await;
        assert_eq!((r.status, error_code(&r).as_str()), (400, "bad_name"));
        let r = post(serde_json::json!({"size": 1, "sha256": sha, "name": "x", "mime": "text/html\r\nx: y"}))
            .await;
        assert_eq!(r.status, 400);
        let r = request(
            &server,
            "POST",
            "/v1/uploads",
            Some(&alice.token),
            &[],
            "{not json",
        )
        .await;
        assert_eq!(r.status, 400);
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_dedup_and_hostile_names() {
    on_every_database(tweak, |server| async move {
        let (alice, _) = api(&server, "alice").await;

        // A real PNG: size known, thumbnail fits in 320×320, served inline as an image.
        let picture = png(800, 600);
        let r = alice
            .upload(&picture, "holiday.png", "image/png", CHUNK_MAX)
            .await;
        let fid = file_id(&r);
        let file = &r.json()["file"];
        assert_eq!(
            (file["width"].as_i64(), file["height"].as_i64()),
            (Some(800), Some(600))
        );
        assert_eq!(file["mime"], "image/png");
        assert_eq!(file["has_thumbnail"], true);
        let thumb = alice.get(&format!("/v1/files/{fid}/thumbnail"), &[]).await;
        assert_eq!(thumb.status, 200);
        assert_eq!(thumb.header("content-type").as_deref(), Some("image/jpeg"));
        let t = image::load_from_memory(&thumb.body).expect("thumbnail decodes");
        assert_eq!((t.width(), t.height()), (320, 240));
        let got = alice.get(&format!("/v1/files/{fid}"), &[]).await;
        assert_eq!(got.body, picture);
        assert_eq!(got.header("content-type").as_deref(), Some("image/png"));
        // Image + thumbnail.
        assert_eq!(blob_count(&server), 2);

        // Same bytes again (another name): the file comes back at once, no bytes travel,
        // nothing new is stored.
        let again = alice.start_upload(&picture, "copy.png", "image/png").await;
        let fid2 = file_id(&again);
        assert_ne!(fid2, fid);
        assert_eq!(again.json()["file"]["width"], 800);
        assert_eq!(again.json()["file"]["has_thumbnail"], true);
        assert_eq!(again.json()["file"]["name"], "copy.png");
        assert_eq!(blob_count(&server), 2);
        let data = noise(6000, 5);
        file_id(&alice.upload(&data, "one.bin", "", CHUNK_MAX).await);
        assert_eq!(blob_count(&server), 3);
        let r = alice.start_upload(&data, "two.bin", "").await;
        assert_eq!(r.json()["file"]["mime"], "application/octet-stream");
        file_id(&r);
        assert_eq!(blob_count(&server), 3);
        let (bob, _) = api(&server, "bob").await;
        // Knowing the hash is not owning the file: Bob has to send the bytes himself.
        let r = bob.start_upload(&data, "bobs.bin", "").await;
        assert_eq!(r.status, 201, "no shortcut for someone who cannot read the file");
        file_id(&bob.upload(&data, "bobs.bin", "", CHUNK_MAX).await);
        assert_eq!(
            blob_count(&server),
            3,
            "same bytes stored once, whoever uploads them"
        );

        // A path-like name keeps only its last component; nothing is written outside
        // the files directory.
        let r = alice
            .upload(&noise(100, 6), "../../etc/passwd", "text/plain", CHUNK_MAX)
            .await;
        let fid = file_id(&r);
        assert_eq!(r.json()["file"]["name"], "passwd");
        let data_dir = server.handle.ctx().cfg.data_dir.clone();
        for path in walk(&data_dir) {
            assert_ne!(
                path.file_name().and_then(|n| n.to_str()),
                Some("passwd"),
                "{}",
                path.display()
            );
        }
        // Under the files directory every name is a hash or an id, never a user's name.
        let root = files_dir(&server);
        for path in walk(&root) {
            let rel = path
                .strip_prefix(&root)
                .expect("under root")
                .to_string_lossy()
                .to_string();
            let ok = rel.split('/').all(|part| {
                let stem = part.strip_suffix(".json").unwrap_or(part);
                matches!(stem, "blobs" | "info" | "tmp") || stem.bytes().all(|b| b.is_ascii_hexdigit())
            });
            assert!(ok, "unexpected path {rel}");
        }
        let got = alice.get(&format!("/v1/files/{fid}"), &[]).await;
        assert_eq!(
            got.header("content-type").as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(
            got.header("content-disposition").as_deref(),
            Some("attachment; filename*=UTF-8''passwd")
        );
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_downloads() {
    on_every_database(tweak, |server| async move {
        let (alice, _) = api(&server, "alice").await;
        let data = noise(10_000, 7);
        let fid = file_id(&alice.upload(&data, "r.bin", "", CHUNK_MAX).await);
        let path = format!("/v1/files/{fid}");

        let r = alice.get(&path, &[("range", "bytes=100-199")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &data[100..200]);
        assert_eq!(r.header("content-range").as_deref(), Some("bytes 100-199/10000"));
        assert_eq!(r.header("content-length").as_deref(), Some("100"));
        assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));

        let r = alice.get(&path, &[("range", "bytes=-300")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &data[9700..]);
        assert_eq!(
            r.header("content-range").as_deref(),
            Some("bytes 9700-9999/10000")
        );

        let r = alice.get(&path, &[("range", "bytes=9000-")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &data[9000..]);

        let r = alice.get(&path, &[("range", "bytes=9990-20000")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body, &data[9990..]);
        assert_eq!(
            r.header("content-range").as_deref(),
            Some("bytes 9990-9999/10000")
        );

        let r = alice.get(&path, &[("range", "bytes=10000-")]).await;
        assert_eq!(r.status, 416);
        assert_eq!(r.header("content-range").as_deref(), Some("bytes */10000"));

        // A resumed download: the rest after what already arrived.
        let first = alice.get(&path, &[("range", "bytes=0-4095")]).await;
        let rest = alice.get(&path, &[("range", "bytes=4096-")]).await;
        assert_eq!([first.body, rest.body].concat(), data);

        // Conditional request by ETag.
        let etag = format!("\"{}\"", sha256_hex(&data));
        let r = alice.get(&path, &[("if-none-match", &etag)]).await;
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_needs_a_grant_and_a_session() {
    on_every_database(tweak, |server| async move {
        let (alice, alice_id) = api(&server, "alice").await;
        let (bob, bob_id) = api(&server, "bob").await;
        let (carol, _) = api(&server, "carol").await;
        let picture = png(64, 48);
        let r = alice.upload(&picture, "p.png", "image/png", CHUNK_MAX).await;
        let fid = file_id(&r);
        let path = format!("/v1/files/{fid}");

        // Not sent anywhere yet: only the uploader reads it; others cannot tell it exists.
        for (who, api) in [("bob", &bob), ("carol", &carol)] {
            let r = api.get(&path, &[]).await;
            assert_eq!((r.status, error_code(&r).as_str()), (404, "not_found"), "{who}");
            assert_eq!(
                api.get(&format!("{path}/thumbnail"), &[]).await.status,
                404,
                "{who}"
            );
        }
        let missing = bob.get("/v1/files/123456789", &[]).await;
        assert_eq!(
            (missing.status, missing.json()),
            (404, bob.get(&path, &[]).await.json())
        );
        assert_eq!(bob.get("/v1/files/not-a-number", &[]).await.status, 404);
        // Nor can anyone else see or feed someone's upload.
        let up = upload_id(&alice.start_upload(&noise(10, 8), "u.bin", "").await);
        assert_eq!(bob.get(&format!("/v1/uploads/{up}"), &[]).await.status, 404);
        assert_eq!(bob.patch(&up, 0, &noise(10, 8)).await.status, 404);

        // Sent to a conversation with Bob: Bob reads it, Carol still does not.
        let store = &server.handle.ctx().store;
        let (conv, _) = store
            .open_direct(alice_id, bob_id, now_ms())
            .await
            .expect("open direct");
        store
            .grant_file(fid.parse().expect("id"), conv.id)
            .await
            .expect("grant");
        let r = bob.get(&path, &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, picture);
        assert_eq!(bob.get(&format!("{path}/thumbnail"), &[]).await.status, 200);
        assert_eq!(carol.get(&path, &[]).await.status, 404);

        // Bearer authentication on every endpoint.
        let bogus = "ab".repeat(32);
        for (method, p) in [
            ("GET", path.as_str()),
            ("GET", &format!("{path}/thumbnail")),
            ("POST", "/v1/uploads"),
            ("GET", &format!("/v1/uploads/{up}")),
            ("PATCH", &format!("/v1/uploads/{up}")),
            ("PUT", "/v1/me/avatar"),
            ("DELETE", "/v1/me/avatar"),
            ("GET", &format!("/v1/users/{alice_id}/avatar")),
        ] {
            for token in [None, Some(bogus.as_str()), Some("not-hex")] {
                let r = request(&server, method, p, token, &[], "").await;
                assert_eq!(r.status, 401, "{method} {p} {token:?}");
                assert_eq!(error_code(&r), "unauthenticated");
                assert!(r.json()["message"].is_string());
            }
        }
        // A logged-out session stops working.
        let (dave_client, _) = server.user("dave").await;
        let dave_token = dave_client.session_token().expect("token");
        assert_eq!(
            Api::new(&server, dave_token.clone()).get(&path, &[]).await.status,
            404
        );
        dave_client.logout().await.expect("logout");
        assert_eq!(Api::new(&server, dave_token).get(&path, &[]).await.status, 401);
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avatars() {
    on_every_database(tweak, |server| async move {
        let (alice, alice_id) = api(&server, "alice").await;
        let (bob, bob_id) = api(&server, "bob").await;
        let avatar_path = format!("/v1/users/{alice_id}/avatar");
        assert_eq!(bob.get(&avatar_path, &[]).await.status, 404, "no avatar yet");

        let picture = png(400, 400);
        let pic = file_id(&alice.upload(&picture, "me.png", "image/png", CHUNK_MAX).await);
        let doc = file_id(
            &alice
                .upload(&noise(50, 10), "doc.txt", "text/plain", CHUNK_MAX)
                .await,
        );
        let bobs = file_id(&bob.upload(&png(10, 10), "b.png", "image/png", CHUNK_MAX).await);

        let r = alice
            .json("PUT", "/v1/me/avatar", serde_json::json!({"file_id": doc}))
            .await;
        assert_eq!((r.status, error_code(&r).as_str()), (400, "not_an_image"));
        let r = alice
            .json("PUT", "/v1/me/avatar", serde_json::json!({"file_id": bobs}))
            .await;
        assert_eq!(r.status, 404, "only one's own uploads");
        let r = alice
            .json("PUT", "/v1/me/avatar", serde_json::json!({"file_id": pic}))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["avatar_file_id"], pic.as_str());

        // Any logged-in user sees the avatar thumbnail (not the original).
        let r = bob.get(&avatar_path, &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type").as_deref(), Some("image/jpeg"));
        let t = image::load_from_memory(&r.body).expect("decodes");
        assert_eq!((t.width(), t.height()), (320, 320));
        assert_eq!(bob.get(&format!("/v1/files/{pic}"), &[]).await.status, 404);
        let user = server
            .handle
            .ctx()
            .store
            .user_by_id(alice_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.avatar_file_id, Some(pic.parse().unwrap()));

        let r = alice
            .json("DELETE", "/v1/me/avatar", serde_json::Value::Null)
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(bob.get(&avatar_path, &[]).await.status, 404);
        assert_eq!(
            bob.get(&format!("/v1/users/{bob_id}/avatar"), &[]).await.status,
            404
        );
        assert_eq!(bob.get("/v1/users/999/avatar", &[]).await.status, 404);
        server
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_file_with_default_limits() {
    on_every_database(
        |_| {},
        |server| async move {
            let (alice, _) = api(&server, "alice").await;
            let chunk_max = server.handle.ctx().cfg.max_chunk_bytes;
            let data = noise(2 * chunk_max + chunk_max / 2, 11);
            let start = alice.start_upload(&data, "big.bin", "").await;
            assert_eq!(start.json()["chunk_max"], chunk_max);
            let id = upload_id(&start);
            let mut last = None;
            for (i, part) in data.chunks(chunk_max).enumerate() {
                let r = alice.patch(&id, i * chunk_max, part).await;
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                last = Some(r);
            }
            let fid = file_id(&last.expect("chunks sent"));
            let got = alice.get(&format!("/v1/files/{fid}"), &[]).await;
            assert_eq!(got.body.len(), data.len());
            assert!(got.body == data, "content differs");
            let tail = alice
                .get(&format!("/v1/files/{fid}"), &[("range", "bytes=-1000000")])
                .await;
            assert_eq!(tail.status, 206);
            assert!(tail.body == data[data.len() - 1_000_000..]);
            server
        },
    )
    .await;
}
