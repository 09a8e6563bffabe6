//! A 100 MB upload survives a server restart midway: the SDK reconnects, asks
//! where the upload stands and continues from there, and the downloaded bytes
//! hash to the same SHA-256. On every database engine.

mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::start_server;
use parley_store::testing::test_databases;
use sha2::{Digest, Sha256};

const SIZE: u64 = 100 * 1024 * 1024;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_random_file(path: &std::path::Path) -> String {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..SIZE / block.len() as u64 {
        for chunk in block.chunks_mut(8) {
            // xorshift: incompressible, reproducible.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        hasher.update(&block);
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
    hex::encode(hasher.finalize())
}

fn hash_of(path: &std::path::Path) -> String {
    let mut hasher = Sha256::new();
    let mut f = std::fs::File::open(path).unwrap();
    std::io::copy(&mut f, &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_resumes_across_a_server_restart() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("big.bin");
    let expected = write_random_file(&source);
    for db in test_databases().await {
        eprintln!("--- running on {}", db.label);
        let data = tempfile::tempdir().unwrap();
        let (port, http_port) = (free_port(), free_port());
        let same_place = |cfg: &mut parley_server::Config| {
            cfg.listen = format!("127.0.0.1:{port}").parse().unwrap();
            cfg.http_listen = format!("127.0.0.1:{http_port}").parse().unwrap();
            cfg.data_dir = data.path().to_path_buf();
            // Small chunks so the restart lands mid-upload with many chunks on each side.
            cfg.max_chunk_bytes = 1024 * 1024;
        };
        let server = start_server(&db, same_place).await;
        let (client, _) = server.user("uploader").await;

        let progress = Arc::new(AtomicU64::new(0));
        let seen = progress.clone();
        let up = {
            let (client, source) = (client.clone(), source.clone());
            tokio::spawn(async move {
                client
                    .upload_file(&source, Some("application/octet-stream"), move |done, _total| {
                        seen.store(done, Ordering::Relaxed);
                    })
                    .await
            })
        };
        while progress.load(Ordering::Relaxed) < SIZE / 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.stop().await;
        let at_restart = progress.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let server = start_server(&db, same_place).await;
        let file = tokio::time::timeout(Duration::from_secs(300), up)
            .await
            .expect("upload finishes")
            .unwrap()
            .expect("upload succeeds after the restart");
        assert_eq!(file.sha256, expected);
        assert_eq!(file.size, SIZE);
        assert!(
            (SIZE / 2..SIZE).contains(&at_restart),
            "the restart hit mid-upload"
        );

        let copy = work.path().join(format!("copy-{}.bin", db.label));
        client
            .download_file(file.file_id, &copy, |_, _| {})
            .await
            .unwrap();
        assert_eq!(hash_of(&copy), expected);
        std::fs::remove_file(&copy).unwrap();
        client.close().await;
        server.stop().await;
    }
}
