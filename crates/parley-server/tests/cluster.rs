//! Scale-out: several nodes share one MariaDB database and route live traffic
//! through NATS. Real nodes (in this process, and one as a child process to
//! be SIGKILLed), real NATS, real MariaDB, real TLS sockets through the SDK.
//!
//! NATS is reached at `PARLEY_TEST_NATS_URL` (default `nats://127.0.0.1:4222`)
//! and MariaDB as in `parley_store::testing`. When either is unreachable the
//! tests are skipped with a loud warning, except under `CI=true`, where they
//! fail. Each test runs its nodes under a cluster name of its own, so tests
//! running at the same time on one NATS never see each other's traffic.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestServer, code, free_port, password, spawn_server_process, start_server, wait_event};
use parley_client::pb::{self, event::Kind as Ev};
use parley_client::{Client, ClientConfig, ClientEvent, OutgoingMessage, Trust};
use parley_server::Config;
use parley_store::testing::{TestDb, mysql_db};
use tokio::net::{TcpListener, TcpStream};

const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Heartbeats and node timeout used by the test nodes, so a crash is noticed quickly.
const HEARTBEAT_MS: u64 = 250;
const NODE_TIMEOUT_MS: u64 = 3_000;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The NATS URL if a NATS server answers there, else `None` after a loud warning (a panic
/// under `CI=true`).
async fn nats_url() -> Option<String> {
    let url = std::env::var("PARLEY_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned());
    let addr = url.trim_start_matches("nats://").to_owned();
    let probe = async {
        let mut stream = TcpStream::connect(&addr).await?;
        let mut line = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut line).await?;
        std::io::Result::Ok(&line == b"INFO")
    };
    let why = match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Ok(true)) => return Some(url),
        Ok(Ok(false)) => "not a NATS server".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "connection timed out".to_owned(),
    };
    if in_ci() {
        panic!(
            "NATS unreachable at {url} ({why}) and CI=true: cluster tests must run in CI. Start NATS or set PARLEY_TEST_NATS_URL."
        );
    }
    eprintln!("WARNING: NATS unreachable at {url} ({why}): cluster tests SKIPPED");
    None
}

/// One MariaDB database and one cluster name shared by the nodes of a test.
struct Cluster {
    db: TestDb,
    nats: String,
    name: String,
}

impl Cluster {
    async fn new() -> Option<Cluster> {
        let nats = nats_url().await?;
        let db = mysql_db().await?;
        let name = format!("t{:016x}", rand::random::<u64>());
        Some(Cluster { db, nats, name })
    }

    fn configure(&self, cfg: &mut Config, node_id: u16) {
        cfg.cluster = Some(self.nats.clone());
        cfg.cluster_name = self.name.clone();
        cfg.node_id = node_id;
        cfg.cluster_heartbeat = Duration::from_millis(HEARTBEAT_MS);
        cfg.cluster_node_timeout = Duration::from_millis(NODE_TIMEOUT_MS);
        cfg.messages_per_minute = 1_000_000;
    }

    /// A node in this process.
    async fn node(&self, node_id: u16, tweak: impl FnOnce(&mut Config)) -> TestServer {
        start_server(&self.db, |cfg| {
            self.configure(cfg, node_id);
            tweak(cfg);
        })
        .await
    }
}

/// A client of `server` whose message stream is exactly what the server pushes (no gap
/// filling), so live delivery itself is what a test sees.
async fn raw_client(server: &TestServer) -> Client {
    let mut cfg = server.client_config();
    cfg.message_sync = false;
    Client::connect(cfg).await.expect("connect")
}

async fn login(client: &Client, name: &str) {
    client.login(name, &password(name)).await.expect("login");
}

/// Makes `a` and `b` friends (the request crosses nodes when they are on different ones).
async fn befriend(a: &Client, a_id: i64, b: &Client, b_id: i64) {
    let mut b_events = b.events();
    a.send_friend_request(b_id, "hi").await.unwrap();
    let req = wait_event(&mut b_events, "friend request", |k| match k {
        Ev::FriendRequestReceived(r) if r.from.as_ref().is_some_and(|u| u.id == a_id) => Some(r.id),
        _ => None,
    })
    .await;
    let mut a_events = a.events();
    b.answer_friend_request(req, true).await.unwrap();
    wait_event(&mut a_events, "friend added", |k| match k {
        Ev::FriendAdded(f) if f.user.as_ref().is_some_and(|u| u.id == b_id) => Some(()),
        _ => None,
    })
    .await;
}

fn is_text(m: &pb::Message) -> bool {
    m.kind == pb::MessageKind::Text as i32
}

/// Collects `n` text message events of `conv` (system notices skipped), in arrival order.
async fn messages(
    rx: &mut tokio::sync::broadcast::Receiver<ClientEvent>,
    conv: i64,
    n: usize,
) -> Vec<pb::Message> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(
            wait_event(rx, "message", |k| match k {
                Ev::Message(m) if m.conv_id == conv && is_text(m) => Some(m.clone()),
                _ => None,
            })
            .await,
        );
    }
    out
}

/// Waits until `check` holds, polling; panics with `what` after `within`.
async fn eventually(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn friend_online(client: &Client, friend: i64) -> Option<bool> {
    let friends = client.friends().await.ok()?;
    let f = friends
        .iter()
        .find(|f| f.user.as_ref().is_some_and(|u| u.id == friend))?;
    Some(f.presence.as_ref().is_some_and(|p| p.online))
}

/// Every message of `conv` from the start, through `client`, paging.
async fn everything(client: &Client, conv: i64) -> Vec<pb::Message> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let batch = client.sync(conv, after, 500).await.unwrap();
        all.extend(batch.messages);
        if !batch.has_more {
            return all;
        }
        after = batch.through_seq;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_two_nodes_get_the_full_delivery_contract() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let one = cluster.node(1, |_| {}).await;
    let two = cluster.node(2, |_| {}).await;

    let (ann, ann_user) = one.user("ann").await;
    let (ben, ben_user) = two.user("ben").await;
    let (cat, cat_user) = two.user("cat").await;
    let (ann_id, ben_id, cat_id) = (ann_user.id, ben_user.id, cat_user.id);

    // Friend requests, answers and presence cross nodes.
    befriend(&ann, ann_id, &ben, ben_id).await;
    befriend(&ann, ann_id, &cat, cat_id).await;
    eventually(
        Duration::from_secs(5),
        "ben online as seen from node one",
        async || friend_online(&ann, ben_id).await == Some(true),
    )
    .await;

    // Direct: ann on node one writes, ben on node two reads live, in order, each message once;
    // ann's second device (on node two) sees her own messages too.
    let ben_raw = raw_client(&two).await;
    login(&ben_raw, "ben").await;
    let ann_two = raw_client(&two).await;
    login(&ann_two, "ann").await;
    let conv = ann.open_direct(ben_id).await.unwrap().id;
    let (mut ben_rx, mut ann_two_rx) = (ben_raw.events(), ann_two.events());
    let mut acked = Vec::new();
    for i in 0..20 {
        let ack = ann.send_text(conv, &format!("direct {i}")).await.unwrap();
        // Acked means committed: the other node reads it from the shared database at once.
        let seen = ben.sync(conv, ack.seq - 1, 1).await.unwrap();
        assert_eq!(seen.messages.first().map(|m| m.seq), Some(ack.seq));
        acked.push(ack.seq);
    }
    assert_eq!(acked, (1..=20).collect::<Vec<_>>());
    for rx in [&mut ben_rx, &mut ann_two_rx] {
        let got: Vec<i64> = messages(rx, conv, 20).await.iter().map(|m| m.seq).collect();
        assert_eq!(got, acked, "live, in seq order, once");
    }

    // Exactly once: a resend of the same client id from the other node is the original.
    let msg = OutgoingMessage::text(conv, "only once");
    let first = ann.send(msg.clone()).await.unwrap();
    let again = ann_two.send(msg).await.unwrap();
    assert!(again.duplicate && !first.duplicate);
    assert_eq!((again.seq, again.message_id), (first.seq, first.message_id));

    // Read receipts and typing cross nodes.
    let mut ann_rx = ann.events();
    ben.mark_read(conv, first.seq).await.unwrap();
    wait_event(&mut ann_rx, "read receipt", |k| match k {
        Ev::Read(r) if r.user_id == ben_id && r.seq == first.seq => Some(()),
        _ => None,
    })
    .await;
    ben.typing(conv).await.unwrap();
    wait_event(&mut ann_rx, "typing", |k| match k {
        Ev::Typing(t) if t.user_id == ben_id => Some(()),
        _ => None,
    })
    .await;

    // Group: writers on both nodes; every member device gets every message in seq order.
    let group = ann
        .create_group("both nodes", &[ben_id, cat_id])
        .await
        .unwrap()
        .id;
    let mut cat_rx = cat.events();
    let mut ann_rx = ann.events();
    let (a_side, b_side) = tokio::join!(
        async {
            let mut seqs = Vec::new();
            for i in 0..15 {
                seqs.push(ann.send_text(group, &format!("a{i}")).await.unwrap().seq);
            }
            seqs
        },
        async {
            let mut seqs = Vec::new();
            for i in 0..15 {
                seqs.push(ben.send_text(group, &format!("b{i}")).await.unwrap().seq);
            }
            seqs
        }
    );
    let mut all: Vec<i64> = a_side.iter().chain(&b_side).copied().collect();
    all.sort_unstable();
    let first_seq = all[0];
    assert_eq!(
        all,
        (first_seq..first_seq + 30).collect::<Vec<_>>(),
        "gap-free, no duplicates"
    );
    for rx in [&mut cat_rx, &mut ann_rx] {
        let got: Vec<i64> = messages(rx, group, 30).await.iter().map(|m| m.seq).collect();
        assert_eq!(got, all, "every member sees every message once, in seq order");
    }

    // Offline catch-up: cat leaves, messages are written on node two, cat returns on node one.
    let cat_seen = all.last().copied().unwrap_or(0);
    cat.close().await;
    for i in 0..5 {
        ben.send_text(group, &format!("while away {i}")).await.unwrap();
    }
    let cat_one = one.device("cat").await;
    let caught: Vec<String> = cat_one
        .sync(group, cat_seen, 100)
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        caught,
        (0..5).map(|i| format!("while away {i}")).collect::<Vec<_>>()
    );

    // A kick on node one reaches node two's membership cache: cat can no longer post there.
    let cat_two = two.device("cat").await;
    cat_two.send_text(group, "still in").await.unwrap();
    ann.kick(group, cat_id).await.unwrap();
    eventually(Duration::from_secs(5), "kick seen by node two", async || {
        cat_two.send_text(group, "kicked?").await.is_err()
    })
    .await;
    assert_eq!(
        code(cat_two.send_text(group, "kicked").await),
        pb::ErrorCode::NotFound
    );

    // Revoking a session from node one closes that device on node two.
    let mut ann_two_rx = ann_two.events();
    let ann_two_session = ann
        .sessions()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| !s.current)
        .map(|s| s.id)
        .max()
        .expect("ann's second session");
    ann.revoke_session(ann_two_session).await.unwrap();
    wait_event(&mut ann_two_rx, "session revoked", |k| match k {
        Ev::SessionRevoked(s) if s.session_id == ann_two_session => Some(()),
        _ => None,
    })
    .await;

    // Presence: ben goes away from node two; ann on node one hears it once.
    let mut ann_rx = ann.events();
    ben.close().await;
    ben_raw.close().await;
    let change = wait_event(&mut ann_rx, "ben offline", |k| match k {
        Ev::PresenceChanged(p) if p.user_id == ben_id => Some(*p),
        _ => None,
    })
    .await;
    assert!(!change.presence.is_some_and(|p| p.online));
    common::assert_no_event(
        &mut ann_rx,
        Duration::from_millis(500),
        "second presence change",
        |k| matches!(k, Ev::PresenceChanged(p) if p.user_id == ben_id),
    )
    .await;
    assert_eq!(friend_online(&ann, ben_id).await, Some(false));

    two.stop().await;
    one.stop().await;
}

/// How long the concurrent-writers test writes: 10 s, shorter locally through
/// `PARLEY_CLUSTER_WRITE_SECS` (ignored under CI, which always runs the full 10 s).
fn write_duration() -> Duration {
    let secs = match std::env::var("PARLEY_CLUSTER_WRITE_SECS") {
        Ok(v) if !in_ci() => v.parse().unwrap_or(10),
        _ => 10,
    };
    Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_nodes_keep_seqs_gap_free() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    let one = cluster.node(1, |_| {}).await;
    let two = cluster.node(2, |_| {}).await;

    let (owner, owner_user) = one.user("owner").await;
    let mut writers = Vec::new();
    for (i, node) in [&one, &two, &one, &two].into_iter().enumerate() {
        let name = format!("writer{i}");
        let (c, u) = node.user(&name).await;
        befriend(&owner, owner_user.id, &c, u.id).await;
        writers.push((c, u.id, node.handle.client_addr));
    }
    let ids: Vec<i64> = writers.iter().map(|w| w.1).collect();
    let group = owner.create_group("hammer", &ids).await.unwrap().id;
    let store = one.handle.ctx().store.clone();
    // Seqs before the run (the group's creation notice).
    let base = store.conversation(group).await.unwrap().unwrap().max_seq;
    // A reader on each node, collecting live deliveries while the writers write (the SDK's
    // event ring is bounded, so it is drained as the run goes).
    let readers = [raw_client(&one).await, raw_client(&two).await];
    let mut live: Vec<Arc<Mutex<Vec<i64>>>> = Vec::new();
    for r in &readers {
        login(r, "owner").await;
        let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
        let (mut rx, sink) = (r.events(), seen.clone());
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ClientEvent::Server(Ev::Message(m))) if m.conv_id == group && is_text(&m) => {
                        sink.lock().unwrap().push(m.seq);
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        panic!("reader fell {n} events behind")
                    }
                    Err(_) => return,
                }
            }
        });
        live.push(seen);
    }

    let until = tokio::time::Instant::now() + write_duration();
    let acked: Arc<Mutex<Vec<(i64, String, bool)>>> = Arc::default();
    let mut tasks = Vec::new();
    for (w, (client, _, _)) in writers.into_iter().enumerate() {
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut last: Option<OutgoingMessage> = None;
            while tokio::time::Instant::now() < until {
                // Every tenth send repeats the previous one: it must come back as a duplicate.
                let msg = match (n % 10 == 9, &last) {
                    (true, Some(prev)) => prev.clone(),
                    _ => OutgoingMessage::text(group, format!("w{w} m{n}")),
                };
                let ack = client.send(msg.clone()).await.expect("acked");
                acked
                    .lock()
                    .unwrap()
                    .push((ack.seq, msg.client_msg_id.clone(), ack.duplicate));
                last = Some(msg);
                n += 1;
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }

    let acked = acked.lock().unwrap().clone();
    let fresh: Vec<&(i64, String, bool)> = acked.iter().filter(|a| !a.2).collect();
    let n = fresh.len() as i64;
    assert!(n > 100, "only {n} messages in the run");
    let mut seqs: Vec<i64> = fresh.iter().map(|a| a.0).collect();
    seqs.sort_unstable();
    let want: Vec<i64> = (base + 1..=base + n).collect();
    assert_eq!(seqs, want, "acked seqs follow on, no gap, no repeat");
    // Each duplicate ack names the seq of its original.
    let by_id: HashMap<&str, i64> = fresh.iter().map(|a| (a.1.as_str(), a.0)).collect();
    for dup in acked.iter().filter(|a| a.2) {
        assert_eq!(
            by_id.get(dup.1.as_str()),
            Some(&dup.0),
            "duplicate ack points at its original"
        );
    }
    // Stored exactly once each, seen the same way from both nodes.
    for client in [&readers[0], &readers[1]] {
        let stored: Vec<pb::Message> = everything(client, group)
            .await
            .into_iter()
            .filter(is_text)
            .collect();
        let stored_seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
        assert_eq!(stored_seqs, want);
        let distinct: HashSet<&str> = stored.iter().map(|m| m.client_msg_id.as_str()).collect();
        assert_eq!(distinct.len() as i64, n, "no client id stored twice");
    }
    // And each node pushed every message live to its reader, exactly once.
    for seen in &live {
        eventually(Duration::from_secs(10), "every message pushed live", async || {
            seen.lock().unwrap().len() as i64 >= n
        })
        .await;
        let got = seen.lock().unwrap().clone();
        let distinct: BTreeSet<i64> = got.iter().copied().collect();
        assert_eq!(got.len(), distinct.len(), "no message pushed twice");
        assert_eq!(distinct.into_iter().collect::<Vec<_>>(), want);
    }
    let max_seq = store.conversation(group).await.unwrap().unwrap().max_seq;
    assert_eq!(max_seq, base + n);
    eprintln!(
        "{n} messages from 4 writers on 2 nodes, {} duplicates",
        acked.len() as i64 - n
    );

    for c in clients.iter().chain(&readers).chain([&owner]) {
        c.close().await;
    }
    two.stop().await;
    one.stop().await;
}

/// A node in a child process, to be killed with SIGKILL.
struct ChildNode {
    child: std::process::Child,
    addr: SocketAddr,
    fingerprint: String,
}

fn spawn_node(cluster: &Cluster, node_id: u16, data_dir: &std::path::Path) -> ChildNode {
    let port = free_port();
    let (node_id, heartbeat, timeout) = (
        node_id.to_string(),
        HEARTBEAT_MS.to_string(),
        NODE_TIMEOUT_MS.to_string(),
    );
    let extra = [
        "--node-id",
        &node_id,
        "--cluster",
        &cluster.nats,
        "--cluster-name",
        &cluster.name,
        "--cluster-heartbeat-ms",
        &heartbeat,
        "--cluster-node-timeout-ms",
        &timeout,
    ];
    let process = spawn_server_process(&cluster.db.url, data_dir, port, free_port(), &extra);
    ChildNode {
        child: process.child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        fingerprint: process.fingerprint,
    }
}

/// A TCP load balancer for the test: each connection goes to the first backend that accepts.
async fn balancer(backends: Vec<SocketAddr>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let backends = backends.clone();
            tokio::spawn(async move {
                for backend in backends {
                    if let Ok(mut outbound) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn client_config(addr: SocketAddr, fingerprint: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(addr.to_string(), Trust::Pinned(fingerprint.to_string()));
    cfg.server_name = "localhost".into();
    cfg.backoff_initial = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(300);
    cfg.send_timeout = Duration::from_secs(20);
    cfg.request_timeout = Duration::from_secs(3);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_and_presence_converges() {
    let Some(cluster) = Cluster::new().await else {
        return;
    };
    common::init_tracing();
    // Behind a load balancer the nodes share one certificate: node two gets node one's.
    let dir_one = tempfile::tempdir().unwrap();
    let dir_two = tempfile::tempdir().unwrap();
    let mut one = spawn_node(&cluster, 1, dir_one.path());
    std::fs::create_dir_all(dir_two.path().join("tls")).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(
            dir_one.path().join("tls").join(f),
            dir_two.path().join("tls").join(f),
        )
        .unwrap();
    }
    let data_two = dir_two.path().to_path_buf();
    let two = cluster.node(2, |cfg| cfg.data_dir = data_two).await;
    assert_eq!(two.fingerprint(), one.fingerprint);
    let lb = balancer(vec![one.addr, two.handle.client_addr]).await;

    // Ann and cat come in through the balancer (node one); bob is on node two. Cat's client
    // does not reconnect, so she is gone for good when node one dies.
    let connect = |reconnect: bool| {
        let mut cfg = client_config(lb, &one.fingerprint);
        cfg.reconnect = reconnect;
        Client::connect(cfg)
    };
    let ann = connect(true).await.unwrap();
    ann.register("ann", "Ann", &password("ann")).await.unwrap();
    let ann_id = ann.login("ann", &password("ann")).await.unwrap().user.unwrap().id;
    let cat = connect(false).await.unwrap();
    cat.register("cat", "Cat", &password("cat")).await.unwrap();
    let cat_id = cat.login("cat", &password("cat")).await.unwrap().user.unwrap().id;
    let (bob, bob_user) = two.user("bob").await;
    let bob_id = bob_user.id;
    befriend(&ann, ann_id, &bob, bob_id).await;
    befriend(&cat, cat_id, &bob, bob_id).await;
    let conv = ann.open_direct(bob_id).await.unwrap().id;
    for friend in [ann_id, cat_id] {
        eventually(
            Duration::from_secs(5),
            "friends on node one seen online",
            async || friend_online(&bob, friend).await == Some(true),
        )
        .await;
    }

    // Ann keeps sending while node one is killed under her.
    let (mut bob_rx, mut bob_presence) = (bob.events(), bob.events());
    let sender = tokio::spawn(async move {
        let mut acks = Vec::new();
        for i in 0..60 {
            acks.push(
                ann.send_text(conv, &format!("m{i}"))
                    .await
                    .expect("acked despite the crash"),
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (ann, acks)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    one.child.kill().expect("SIGKILL node one");
    let _ = one.child.wait();

    // Cat's node is gone: bob hears she went offline within the node timeout.
    let change = wait_event(&mut bob_presence, "cat offline", |k| match k {
        Ev::PresenceChanged(p) if p.user_id == cat_id => Some(*p),
        _ => None,
    })
    .await;
    assert!(!change.presence.is_some_and(|p| p.online));

    let (ann, acks) = sender.await.unwrap();
    // A send in flight when the node died is resent to node two and may come back as a
    // duplicate of what node one committed: either way each message has its own seq.
    let acked: Vec<i64> = acks.iter().map(|a| a.seq).collect();
    assert_eq!(acked, (1..=60).collect::<Vec<_>>(), "every send acked, in order");
    // Nothing lost, nothing twice: bob's stream (gap-filled by the SDK) and a fresh sync agree.
    let got: Vec<i64> = messages(&mut bob_rx, conv, 60)
        .await
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(got, acked);
    let stored: Vec<String> = everything(&bob, conv)
        .await
        .into_iter()
        .filter(is_text)
        .map(|m| m.text)
        .collect();
    assert_eq!(stored, (0..60).map(|i| format!("m{i}")).collect::<Vec<_>>());
    // Ann came back through the balancer to node two: she is online there, and sees her own
    // messages when she catches up.
    let mut cursors = HashMap::new();
    let mine = ann.catch_up(&mut cursors).await.unwrap();
    assert_eq!(
        mine.iter().filter(|m| m.conv_id == conv && is_text(m)).count(),
        60
    );
    eventually(
        Duration::from_secs(5),
        "ann online again, cat offline",
        async || {
            friend_online(&bob, ann_id).await == Some(true)
                && friend_online(&bob, cat_id).await == Some(false)
        },
    )
    .await;
    assert!(
        two.handle.ctx().hub.is_local(ann_id),
        "ann's device is on node two now"
    );

    ann.close().await;
    bob.close().await;
    two.stop().await;
}
