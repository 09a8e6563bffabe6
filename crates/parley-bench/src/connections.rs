//! `parley-bench connections`: N idle logged-in connections and the server's
//! memory per connection.
//!
//! One account logs in once; every connection resumes that session with its
//! token (the cheapest login there is: no password hash). Connections are raw
//! protocol sockets (pinned TLS + `FrameCodec`), bound to source addresses
//! 127.0.0.1..=127.0.0.S so the ephemeral ports of one source address never
//! run out, and spread over worker processes (this binary again, hidden
//! `connections-worker` subcommand) because one process may open at most the
//! hard open-file limit. Workers report JSON lines on stdout and answer
//! `check` on stdin with how many connections are still up; closing their
//! stdin ends them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{StreamExt as _, stream};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::report::round;
use crate::setup;
use crate::sys;
use crate::target::{DbArgs, Target, TargetArgs};

/// Connections one worker process takes at most by default (below the 20 000 file limit).
const PER_WORKER: usize = 15_000;
/// The environment variable that hands the session token to workers (not the command line).
const TOKEN_ENV: &str = "PARLEY_BENCH_TOKEN";

/// Options of `parley-bench connections`.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub db: DbArgs,
    /// Idle logged-in connections to open.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Worker processes holding the connections (default: one per 15 000).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Source addresses 127.0.0.1 ..= 127.0.0.<sources> to spread the connections over.
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// New connections per second, over all workers.
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    /// Handshakes in flight per worker.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds to hold the connections open once all are up.
    #[arg(long, default_value_t = 10.0)]
    pub hold_secs: f64,
}

/// Options of the hidden worker subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct WorkerArgs {
    #[arg(long)]
    addr: SocketAddr,
    /// Certificate fingerprint; absent for a plaintext server.
    #[arg(long)]
    fingerprint: Option<String>,
    #[arg(long)]
    count: usize,
    /// Global index of this worker's first connection.
    #[arg(long, default_value_t = 0)]
    offset: usize,
    #[arg(long, default_value_t = 8)]
    sources: u8,
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

/// The source address of connection `i`.
fn source(i: usize, sources: u8) -> IpAddr {
    let n = usize::from(sources.max(1));
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % n) as u8))
}

fn line(v: Value) {
    println!("{v}");
}

/// The worker: opens `count` connections, reports, holds them until stdin closes.
pub async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let token = std::env::var(TOKEN_ENV).context("no session token in the environment")?;
    let connector = args
        .fingerprint
        .as_deref()
        .map(crate::tls::pinned_connector)
        .transpose()?;
    let stop = CancellationToken::new();
    let (connected, failed, alive) = (
        Arc::new(AtomicU64::new(0)),
        AtomicU64::new(0),
        Arc::new(AtomicU64::new(0)),
    );
    let reasons = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut errors = Vec::new();
    let progress = {
        let (connected, stop) = (connected.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => line(json!({"connected": connected.load(Relaxed)})),
                }
            }
        })
    };
    let start = tokio::time::Instant::now();
    let per = Duration::from_secs_f64(1.0 / args.rate.max(1.0));
    let mut results = stream::iter(0..args.count)
        .map(|i| {
            let (connector, token) = (connector.as_ref(), token.as_str());
            async move {
                tokio::time::sleep_until(start + per * u32::try_from(i).unwrap_or(u32::MAX)).await;
                crate::raw::resume(
                    connector,
                    args.addr,
                    Some(source(args.offset + i, args.sources)),
                    token,
                )
                .await
                .map(|c| (i, c))
            }
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(result) = results.next().await {
        match result {
            Ok((i, (transport, welcome))) => {
                connected.fetch_add(1, Relaxed);
                alive.fetch_add(1, Relaxed);
                let heartbeat = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(1000)));
                // Spread the pings over the heartbeat interval.
                let first = heartbeat.mul_f64(((args.offset + i) % 997) as f64 / 997.0);
                let (alive, reasons, stop) = (alive.clone(), reasons.clone(), stop.clone());
                tokio::spawn(async move {
                    if let Err(why) = crate::raw::hold(transport, first, heartbeat, stop).await {
                        alive.fetch_sub(1, Relaxed);
                        let mut r = reasons.lock().unwrap_or_else(|e| e.into_inner());
                        if r.len() < 5 {
                            r.push(why);
                        }
                    }
                });
            }
            Err(e) => {
                failed.fetch_add(1, Relaxed);
                if errors.len() < 5 {
                    errors.push(format!("{e:#}"));
                }
            }
        }
    }
    drop(results);
    progress.abort();
    line(json!({
        "ready": true,
        "connected": connected.load(Relaxed),
        "failed": failed.load(Relaxed),
        "errors": errors,
        "seconds": round(start.elapsed().as_secs_f64(), 3),
        "worker_rss_kib": sys::sample_self().rss_kib,
    }));
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(cmd)) = stdin.next_line().await {
        if cmd.trim() == "check" {
            let r = reasons.lock().unwrap_or_else(|e| e.into_inner()).clone();
            line(json!({"alive": alive.load(Relaxed), "close_reasons": r}));
        }
    }
    stop.cancel();
    Ok(())
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
}

/// Runs the benchmark; the JSON report and whether every connection stayed up.
pub async fn run(args: ConnectionsArgs, nofile: (u64, u64)) -> anyhow::Result<(Value, bool)> {
    let mut target_args = args.target.clone();
    if target_args.server.is_none() {
        // Its memory must be measured alone, and one process could not hold both ends.
        target_args.spawn_server = true;
    }
    let target = Target::start(&target_args, &args.db, args.count + 64).await?;
    eprintln!(
        "server: {} at {} (pid {:?})",
        target.mode,
        target.addr,
        target.pid()
    );
    let name = format!("{}conn", setup::run_tag());
    let token =
        crate::raw::register_and_login(target.connector(), target.addr, &name, setup::PASSWORD).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.sample();

    let workers_n = args.workers.unwrap_or(args.count.div_ceil(PER_WORKER)).max(1);
    let exe = std::env::current_exe()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Value)>();
    let mut workers = Vec::new();
    let started = Instant::now();
    for w in 0..workers_n {
        let count = args.count / workers_n + usize::from(w < args.count % workers_n);
        let offset = (0..w)
            .map(|k| args.count / workers_n + usize::from(k < args.count % workers_n))
            .sum::<usize>();
        let mut cmd = Command::new(&exe);
        cmd.arg("connections-worker")
            .args(["--addr", &target.addr.to_string()]);
        if !target.fingerprint.is_empty() {
            cmd.args(["--fingerprint", &target.fingerprint]);
        }
        let mut child = cmd
            .args(["--count", &count.to_string(), "--offset", &offset.to_string()])
            .args(["--sources", &args.sources.to_string()])
            .args(["--rate", &(args.connect_rate / workers_n as f64).to_string()])
            .args(["--concurrency", &args.concurrency.to_string()])
            .env(TOKEN_ENV, &token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    let _ = tx.send((w, v));
                }
            }
        });
        workers.push(Worker { child, stdin });
    }
    drop(tx);

    // Connect phase: progress until every worker is ready.
    let mut connected = vec![0u64; workers_n];
    let mut ready: Vec<Option<Value>> = vec![None; workers_n];
    let mut last_print = Instant::now();
    while ready.iter().any(Option::is_none) {
        let (w, v) = rx.recv().await.context("a worker exited before it was ready")?;
        if let Some(n) = v.get("connected").and_then(Value::as_u64) {
            connected[w] = n;
        }
        if v.get("ready").is_some() {
            ready[w] = Some(v);
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            let rss = target.sample().map_or(0, |s| s.rss_kib);
            eprintln!(
                "[connections {:>4.0}s] connected {} of {} server rss {} MiB",
                started.elapsed().as_secs_f64(),
                connected.iter().sum::<u64>(),
                args.count,
                rss / 1024
            );
            last_print = Instant::now();
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let after_connect = target.sample();
    let ready: Vec<Value> = ready.into_iter().flatten().collect();
    let ok_count: u64 = ready.iter().filter_map(|v| v["connected"].as_u64()).sum();
    let failed: u64 = ready.iter().filter_map(|v| v["failed"].as_u64()).sum();
    let errors: Vec<Value> = ready
        .iter()
        .flat_map(|v| v["errors"].as_array().cloned().unwrap_or_default())
        .collect();

    // Hold: watch the server's memory settle.
    let hold_start = Instant::now();
    let mut max_rss = 0;
    while hold_start.elapsed().as_secs_f64() < args.hold_secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = target.sample().unwrap_or_default();
        max_rss = max_rss.max(s.rss_kib);
        eprintln!(
            "[connections hold {:>3.0}s] server rss {} KiB, {} threads",
            hold_start.elapsed().as_secs_f64(),
            s.rss_kib,
            s.threads
        );
    }
    let held = target.sample();
    // Is the server still answering new connections promptly?
    let t = Instant::now();
    let hello = crate::raw::hello(target.connector(), target.addr, None).await;
    let hello_ms = t.elapsed().as_secs_f64() * 1000.0;

    for w in &mut workers {
        w.stdin.write_all(b"check\n").await?;
        w.stdin.flush().await?;
    }
    let mut alive = vec![None; workers_n];
    let mut close_reasons = Vec::new();
    while alive.iter().any(Option::is_none) {
        let Some((w, v)) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .ok()
            .flatten()
        else {
            break;
        };
        if let Some(a) = v.get("alive").and_then(Value::as_u64) {
            alive[w] = Some(a);
            close_reasons.extend(v["close_reasons"].as_array().cloned().unwrap_or_default());
        }
    }
    let alive_total: u64 = alive.iter().flatten().sum();
    for w in workers {
        drop(w.stdin);
        let mut child = w.child;
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
    target.stop().await;

    let kib = |a: Option<sys::ProcSample>, b: Option<sys::ProcSample>| match (a, b) {
        (Some(a), Some(b)) if ok_count > 0 => {
            Some(round((b.rss_kib as f64 - a.rss_kib as f64) / ok_count as f64, 2))
        }
        _ => None,
    };
    let cpu_per_conn = match (before, after_connect) {
        (Some(a), Some(b)) if ok_count > 0 => {
            Some(round((b.cpu - a.cpu).as_secs_f64() * 1e6 / ok_count as f64, 1))
        }
        _ => None,
    };
    let all_up = ok_count == args.count as u64 && alive_total == ok_count && hello.is_ok();
    eprintln!(
        "connections: {ok_count}/{} up in {connect_secs:.1}s, {alive_total} alive after holding; server RSS \
         {:?} KiB per connection",
        args.count,
        kib(before, held)
    );
    let report = json!({
        "bench": "connections",
        "machine": sys::machine(),
        "server_mode": target_args.server.as_ref().map_or("spawned", |_| "external"),
        "database": args.db.database,
        "open_files_limit": {"soft": nofile.0, "hard": nofile.1},
        "config": {
            "count": args.count,
            "workers": workers_n,
            "sources": args.sources,
            "connect_rate": args.connect_rate,
            "hold_s": args.hold_secs,
            "tls": !target_args.plaintext,
        },
        "connected": ok_count,
        "failed": failed,
        "errors": errors,
        "connect_s": round(connect_secs, 3),
        "connects_per_s": round(ok_count as f64 / connect_secs.max(1e-9), 1),
        "alive_after_hold": alive_total,
        "close_reasons": close_reasons,
        "server_rss_kib": {
            "before": before.map(|s| s.rss_kib),
            "after_connect": after_connect.map(|s| s.rss_kib),
            "after_hold": held.map(|s| s.rss_kib),
            "max_during_hold": max_rss,
            "peak": held.map(|s| s.hwm_kib),
        },
        "server_kib_per_connection": kib(before, held),
        "server_kib_per_connection_after_connect": kib(before, after_connect),
        "server_cpu_us_per_connect": cpu_per_conn,
        "worker_rss_kib": ready.iter().map(|v| v["worker_rss_kib"].clone()).collect::<Vec<_>>(),
        "new_connection_hello_ms": hello.as_ref().ok().map(|_| round(hello_ms, 2)),
        "new_connection_error": hello.err().map(|e| format!("{e:#}")),
        "ok": all_up,
    });
    Ok((report, all_up))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sources_cycle() {
        assert_eq!(super::source(0, 4).to_string(), "127.0.0.1");
        assert_eq!(super::source(5, 4).to_string(), "127.0.0.2");
    }
}
