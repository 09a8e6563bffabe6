//! Durability: a server child process is killed with SIGKILL while clients
//! stream messages; after a restart on the same storage, every message that
//! had been acked is there exactly once. On every database engine.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ServerProcess, free_port, spawn_server_process};
use parley_client::{Client, ClientConfig, Trust};
use parley_store::testing::test_databases;

fn spawn_server(db_url: &str, data_dir: &std::path::Path, port: u16, http_port: u16) -> ServerProcess {
    spawn_server_process(db_url, data_dir, port, http_port, &[])
}

fn config(port: u16, fingerprint: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(
        format!("127.0.0.1:{port}"),
        Trust::Pinned(fingerprint.to_string()),
    );
    cfg.server_name = "localhost".into();
    cfg.backoff_initial = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(200);
    cfg.send_timeout = Duration::from_secs(2);
    cfg.request_timeout = Duration::from_secs(2);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_sigkill() {
    common::init_tracing();
    for db in test_databases().await {
        eprintln!("--- running on {}", db.label);
        let dir = tempfile::tempdir().unwrap();
        let (port, http_port) = (free_port(), free_port());
        let mut server = spawn_server(&db.url, dir.path(), port, http_port);

        let a = Client::connect(config(port, &server.fingerprint)).await.unwrap();
        let b = Client::connect(config(port, &server.fingerprint)).await.unwrap();
        a.register("writer", "", "long enough").await.unwrap();
        b.register("reader", "", "long enough").await.unwrap();
        a.login("writer", "long enough").await.unwrap();
        let ub = b.login("reader", "long enough").await.unwrap().user.unwrap();
        a.send_friend_request(ub.id, "").await.unwrap();
        let req = b.friend_requests().await.unwrap().incoming[0].id;
        b.answer_friend_request(req, true).await.unwrap();
        let conv = a.open_direct(ub.id).await.unwrap().id;

        let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..4 {
            let (a, acked) = (a.clone(), acked.clone());
            writers.spawn(async move {
                for i in 0.. {
                    let msg = parley_client::OutgoingMessage::text(conv, format!("w{w} #{i}"));
                    let id = msg.client_msg_id.clone();
                    match a.send(msg).await {
                        Ok(ack) => acked.lock().unwrap().push((id, ack.seq)),
                        Err(_) => return,
                    }
                }
            });
        }
        // Let the writers get going, then pull the plug mid-stream.
        while acked.lock().unwrap().len() < 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.child.kill().expect("SIGKILL");
        let _ = server.child.wait();
        while writers.join_next().await.is_some() {}
        a.close().await;
        b.close().await;
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= 200);

        let mut server = spawn_server(&db.url, dir.path(), port, http_port);
        let c = Client::connect(config(port, &server.fingerprint)).await.unwrap();
        c.login("writer", "long enough").await.unwrap();
        let mut stored: HashMap<String, i64> = HashMap::new();
        let mut seqs = Vec::new();
        let mut after = 0;
        loop {
            let batch = c.sync(conv, after, 500).await.unwrap();
            for m in batch.messages {
                assert!(
                    stored.insert(m.client_msg_id.clone(), m.seq).is_none(),
                    "stored twice"
                );
                seqs.push(m.seq);
            }
            after = batch.through_seq;
            if !batch.has_more {
                break;
            }
        }
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "gap-free after the crash"
        );
        let mut seen = HashSet::new();
        for (id, seq) in &acked {
            assert_eq!(stored.get(id), Some(seq), "acked message {id} lost or moved");
            assert!(seen.insert(id));
        }
        eprintln!(
            "{}: {} acked before SIGKILL, {} stored",
            db.label,
            acked.len(),
            stored.len()
        );
        c.close().await;
        let _ = server.child.kill();
        let _ = server.child.wait();
    }
}
