//! `parley-bench throughput`: durable message throughput through the server,
//! ack and end-to-end latency, lost and duplicated deliveries, server CPU per
//! message, then baseline (a) — the database's own batched-INSERT rate — on
//! the same database in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::baseline::{self, Shape};
use crate::report::{self, Latency, SummaryDelta, round};
use crate::setup;
use crate::sys;
use crate::target::{self, DbArgs, DbKind, Target, TargetArgs};
use crate::traffic::{self, Counters, Pace, Received, Sent};

/// Options of `parley-bench throughput`.
#[derive(Clone, Debug, clap::Args)]
pub struct ThroughputArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub db: DbArgs,
    /// Sending users, one connection each (direct mode adds one partner user per sender).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Put the senders in groups of this size (every member sends) instead of direct pairs.
    #[arg(long)]
    pub group_size: Option<usize>,
    /// Connections per user: the first sends, every one of them receives.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Messages to send in total.
    #[arg(long, default_value_t = 50_000)]
    pub messages: u64,
    /// Send for this many seconds instead (the message count still caps it).
    #[arg(long)]
    pub duration: Option<f64>,
    /// In-flight sends per sending connection.
    #[arg(long, default_value_t = 32)]
    pub pipeline: usize,
    /// Total send rate in messages per second (open loop); unlimited if unset.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Rows per transaction for the baseline (repeatable); default: the server's observed mean
    /// commit batch and the server's batch limit.
    #[arg(long)]
    pub baseline_batch: Vec<usize>,
    /// Runs of the baseline per batch size; the median counts.
    #[arg(long, default_value_t = 3)]
    pub baseline_repeat: usize,
    /// Skip the database baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Let the SDK fill gaps and drop duplicates (default: check the raw push stream).
    #[arg(long)]
    pub sdk_sync: bool,
    /// Seconds to keep waiting for missing deliveries after the last ack.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
    /// CI smoke: 1 000 connections (100 users × 10 devices), 10 s at 200 msg/s, no
    /// baseline; fails unless every acked message reached every device exactly once.
    #[arg(long)]
    pub smoke: bool,
}

impl ThroughputArgs {
    fn apply_smoke(&mut self) {
        if self.smoke {
            self.connections = 50;
            self.group_size = None;
            self.devices = 10;
            self.duration = Some(10.0);
            self.rate = Some(200.0);
            self.messages = u64::MAX / 2;
            self.no_baseline = true;
        }
    }
}

/// Who talks where.
struct Layout {
    users: usize,
    /// Sender user index and its conversation index.
    senders: Vec<(usize, usize)>,
    /// Member user indices per conversation.
    members: Vec<Vec<usize>>,
}

fn layout(args: &ThroughputArgs) -> anyhow::Result<Layout> {
    let c = args.connections.max(1);
    match args.group_size {
        None | Some(0 | 1) => Ok(Layout {
            users: 2 * c,
            senders: (0..c).map(|i| (2 * i, i)).collect(),
            members: (0..c).map(|i| vec![2 * i, 2 * i + 1]).collect(),
        }),
        Some(g) => {
            anyhow::ensure!(c >= g, "--connections must be at least --group-size");
            let groups = c / g;
            Ok(Layout {
                users: groups * g,
                senders: (0..groups * g).map(|u| (u, u / g)).collect(),
                members: (0..groups).map(|k| (k * g..(k + 1) * g).collect()).collect(),
            })
        }
    }
}

/// Runs the benchmark; the JSON report and whether the delivery checks passed.
pub async fn run(mut args: ThroughputArgs) -> anyhow::Result<(serde_json::Value, bool)> {
    args.apply_smoke();
    anyhow::ensure!(
        !args.target.plaintext,
        "--plaintext is only for `connections` (the SDK always uses TLS)"
    );
    let lay = layout(&args)?;
    let devices = args.devices.max(1);
    let total_conns = lay.users * devices;
    let target = Target::start(&args.target, &args.db, total_conns + 64).await?;
    eprintln!(
        "server: {} at {} ({} database); {} users × {devices} devices = {total_conns} connections",
        target.mode,
        target.addr,
        target.database_url.as_deref().map_or("external", db_name),
        lay.users
    );
    let tag = setup::run_tag();
    let (users, setup_time) =
        report::timed(setup::users(&target, &tag, lay.users, devices, args.sdk_sync)).await;
    let users = users?;
    let (convs, conv_time) = match args.group_size {
        None | Some(0 | 1) => {
            let pairs: Vec<(usize, usize)> = lay.members.iter().map(|m| (m[0], m[1])).collect();
            report::timed(setup::direct_conversations(&users, &pairs)).await
        }
        Some(_) => report::timed(setup::groups(&users, &lay.members, &tag)).await,
    };
    let convs = convs?;
    eprintln!(
        "setup: users in {:.1}s, conversations in {:.1}s",
        setup_time.as_secs_f64(),
        conv_time.as_secs_f64()
    );

    let counters = Arc::new(Counters::default());
    let stop_rx = CancellationToken::new();
    let mut receivers = Vec::new();
    for user in &users {
        let per_user: Vec<_> = user
            .clients
            .iter()
            .map(|c| {
                tokio::spawn(traffic::receive_loop(
                    c.events(),
                    user.id,
                    counters.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        receivers.push(per_user);
    }
    // Let set-up events (system notices, presence) go by.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let metrics_before = target.metrics_or_empty().await;
    let (server_before, self_before) = (target.sample(), sys::sample_self());
    // The database server's own CPU (MariaDB/MySQL on this machine), for the cost picture.
    let db_pid = match args.db.database {
        DbKind::Mysql => sys::find_process(&["mariadbd", "mysqld"]),
        DbKind::Sqlite => None,
    };
    let db_before = db_pid.and_then(sys::sample);
    let stop_progress = CancellationToken::new();
    let progress = {
        let c = counters.clone();
        let mut last = (Instant::now(), 0u64);
        report::progress(stop_progress.clone(), "throughput", move || {
            let acked = c.acked.load(Relaxed);
            let rate = (acked - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), acked);
            format!(
                "sent {} acked {} ({rate:.0}/s) delivered {} errors {} dup {} lagged {}",
                c.sent.load(Relaxed),
                acked,
                c.delivered.load(Relaxed),
                c.errors.load(Relaxed),
                c.duplicates.load(Relaxed),
                c.lagged.load(Relaxed)
            )
        })
    };

    let pace = Pace {
        pipeline: args.pipeline,
        rate: args.rate,
        deadline: args
            .duration
            .map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d)),
        body_bytes: args.body_bytes,
    };
    let budget = Arc::new(AtomicI64::new(i64::try_from(args.messages).unwrap_or(i64::MAX)));
    let started = Instant::now();
    let senders: Vec<_> = lay
        .senders
        .iter()
        .enumerate()
        .map(|(s, &(u, conv))| {
            tokio::spawn(traffic::send_loop(
                u32::try_from(s).unwrap_or(u32::MAX),
                lay.senders.len(),
                users[u].clients[0].clone(),
                convs[conv],
                pace.clone(),
                budget.clone(),
                counters.clone(),
            ))
        })
        .collect();
    let mut sent: Vec<Sent> = Vec::new();
    for s in senders {
        sent.push(s.await?);
    }
    let send_elapsed = started.elapsed();

    // Wait for the pushes of every acked message to arrive.
    let expected: u64 = sent
        .iter()
        .zip(&lay.senders)
        .map(|(s, &(_, conv))| s.acked.len() as u64 * (lay.members[conv].len() * devices) as u64)
        .sum();
    let drain_started = Instant::now();
    let (mut last_seen, mut last_change) = (counters.delivered.load(Relaxed), Instant::now());
    while counters.delivered.load(Relaxed) < expected && last_change.elapsed().as_secs_f64() < args.drain_secs
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = counters.delivered.load(Relaxed);
        if now != last_seen {
            (last_seen, last_change) = (now, Instant::now());
        }
    }
    let drain_elapsed = drain_started.elapsed();
    let (server_after, self_after) = (target.sample(), sys::sample_self());
    let db_after = db_pid.and_then(sys::sample);
    let metrics_after = target.metrics_or_empty().await;
    stop_progress.cancel();
    let _ = progress.await;
    stop_rx.cancel();
    let mut received: Vec<Vec<Received>> = Vec::new();
    for per_user in receivers {
        let mut v = Vec::new();
        for r in per_user {
            v.push(r.await?);
        }
        received.push(v);
    }

    // Every acked message must have reached every connection of every member exactly once.
    let mut lost = 0u64;
    for (s, (out, &(_, conv))) in sent.iter().zip(&lay.senders).enumerate() {
        for &n in &out.acked {
            let k = traffic::key(u32::try_from(s).unwrap_or(u32::MAX), n);
            for &m in &lay.members[conv] {
                lost += received[m].iter().filter(|r| !r.seen.contains(&k)).count() as u64;
            }
        }
    }
    let duplicated: u64 = received.iter().flatten().map(|r| r.duplicates).sum();
    let lagged: u64 = received.iter().flatten().map(|r| r.lagged).sum();
    let mut ack_hist = report::histogram();
    let mut e2e_hist = report::histogram();
    for s in &sent {
        ack_hist.add(&s.ack_latency)?;
    }
    for r in received.iter().flatten() {
        e2e_hist.add(&r.e2e)?;
    }
    let acked: u64 = sent.iter().map(|s| s.acked.len() as u64).sum();
    let errors = counters.errors.load(Relaxed);
    let deliveries = counters.delivered.load(Relaxed);
    let error_samples: Vec<String> = sent
        .iter()
        .flat_map(|s| s.error_samples.clone())
        .take(5)
        .collect();
    let acked_per_s = acked as f64 / send_elapsed.as_secs_f64().max(1e-9);
    let ack = Latency::of(&ack_hist);
    let e2e = Latency::of(&e2e_hist);

    let cpu_report = |before: Option<sys::ProcSample>, after: Option<sys::ProcSample>| match (before, after) {
        (Some(b), Some(a)) => {
            let cpu_us = (a.cpu - b.cpu).as_secs_f64() * 1e6;
            Some(json!({
                "cpu_s": round(cpu_us / 1e6, 3),
                "cpu_us_per_acked_msg": round(cpu_us / acked.max(1) as f64, 2),
                "cpu_us_per_delivery": round(cpu_us / deliveries.max(1) as f64, 2),
                "cpu_utilisation_cores": round(cpu_us / 1e6 / (send_elapsed + drain_elapsed).as_secs_f64(), 2),
                "rss_kib": a.rss_kib,
                "peak_rss_kib": a.hwm_kib,
                "threads": a.threads,
            }))
        }
        _ => None,
    };
    let server_cpu = cpu_report(server_before, server_after);
    let process_cpu = cpu_report(Some(self_before), Some(self_after));
    let db_cpu = cpu_report(db_before, db_after);
    let batch = SummaryDelta::between(&metrics_before, &metrics_after, "parley_commit_batch_size");
    let commit = SummaryDelta::between(&metrics_before, &metrics_after, "parley_commit_seconds");

    let conversations = convs.len();
    let db_url = target.database_url.clone();
    let (mode, in_process) = (target.mode, target.in_process());
    setup::close_all(users).await;
    let _dir = target.stop().await;

    let mut baselines = Vec::new();
    if !args.no_baseline
        && let Some(url) = &db_url
    {
        let mut batches = args.baseline_batch.clone();
        if batches.is_empty() {
            let limit = args
                .target
                .commit_batch
                .unwrap_or(parley_server::Config::default().commit_batch);
            batches.push((batch.mean.round() as usize).clamp(1, limit));
            batches.push(limit);
            batches.dedup();
        }
        let shape = Shape {
            rows: acked.max(1000),
            conversations,
            body_bytes: args.body_bytes,
        };
        baselines = baseline::run(url, &shape, &batches, args.baseline_repeat).await?;
    }
    let same_batch = baselines.first().map(|b| round(acked_per_s / b.rows_per_s, 3));
    let best = baselines.iter().map(|b| b.rows_per_s).fold(0.0, f64::max);
    let vs_best = (best > 0.0).then(|| round(acked_per_s / best, 3));
    let mysql = match (&args.db.database, &db_url) {
        (DbKind::Mysql, Some(url)) => target::mysql_settings(url).await,
        _ => Vec::new(),
    };

    let ok = lost == 0 && duplicated == 0 && errors == 0 && acked > 0;
    eprintln!(
        "throughput: {acked} acked in {:.2}s = {acked_per_s:.0} msg/s; errors {errors}; lost {lost}; duplicated {duplicated}",
        send_elapsed.as_secs_f64()
    );
    eprintln!("ack latency: {ack}");
    eprintln!("delivery latency: {e2e}");
    if let Some(r) = same_batch {
        eprintln!("ratio vs baseline at the observed batch size: {r}; vs best baseline: {vs_best:?}");
    }
    let report = json!({
        "bench": "throughput",
        "machine": sys::machine(),
        "server_mode": mode,
        "server_nodes": args.target.nodes.max(1),
        "database": args.db.database,
        "mysql_settings": mysql.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "config": {
            "sending_connections": lay.senders.len(),
            "users": lay.users,
            "devices_per_user": devices,
            "connections": total_conns,
            "conversations": conversations,
            "group_size": args.group_size,
            "pipeline": args.pipeline,
            "rate": args.rate,
            "messages": if args.duration.is_some() { None } else { Some(args.messages) },
            "duration_s": args.duration,
            "body_bytes": args.body_bytes,
            "sdk_sync": args.sdk_sync,
        },
        "sent": counters.sent.load(Relaxed),
        "acked": acked,
        "errors": errors,
        "error_samples": error_samples,
        "elapsed_s": round(send_elapsed.as_secs_f64(), 3),
        "acked_per_s": round(acked_per_s, 1),
        "ack_latency": ack,
        "delivery_latency": e2e,
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "drain_s": round(drain_elapsed.as_secs_f64(), 3),
        "lost": lost,
        "duplicated": duplicated,
        "lagged_events": lagged,
        "server_process": server_cpu,
        "bench_process": process_cpu,
        "database_process": db_cpu,
        "bench_process_includes_server": in_process,
        "commit_batch_size": batch,
        "commit_seconds": commit,
        "baseline": baselines,
        "ratio_vs_baseline_same_batch": same_batch,
        "ratio_vs_best_baseline": vs_best,
        "ok": ok,
    });
    Ok((report, ok))
}

fn db_name(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "SQLite"
    } else {
        "MariaDB/MySQL"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ThroughputArgs,
    }

    #[test]
    fn layouts() {
        let mut a = Cli::parse_from(["x", "--connections", "4"]).args;
        let l = layout(&a).unwrap();
        assert_eq!(l.users, 8);
        assert_eq!(l.senders[1], (2, 1));
        assert_eq!(l.members[1], vec![2, 3]);
        a.group_size = Some(3);
        a.connections = 7;
        let l = layout(&a).unwrap();
        assert_eq!(l.users, 6);
        assert_eq!(l.senders[4], (4, 1));
        assert_eq!(l.members[1], vec![3, 4, 5]);
    }

    #[test]
    fn smoke_is_a_thousand_connections() {
        let mut a = Cli::parse_from(["x", "--smoke"]).args;
        a.apply_smoke();
        let l = layout(&a).unwrap();
        assert_eq!(l.users * a.devices, 1000);
        assert!(a.no_baseline);
    }
}
