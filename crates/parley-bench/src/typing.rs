//! `parley-bench typing`: the in-memory path. Typing notices are never stored;
//! the server checks membership, rate-limits (3 per 3 s per user and
//! conversation) and fans the notice out to the other members' connections.
//! Many groups, every member typing about once a second, measure how many
//! notices per second the server delivers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parley_client::pb::ErrorCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::report::{self, round};
use crate::setup;
use crate::sys;
use crate::target::{DbArgs, Target, TargetArgs};
use crate::traffic::{self, Counters};

/// Options of `parley-bench typing`.
#[derive(Clone, Debug, clap::Args)]
pub struct TypingArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub db: DbArgs,
    /// Members per group.
    #[arg(long, default_value_t = 50)]
    pub group_size: usize,
    /// Number of groups.
    #[arg(long, default_value_t = 4)]
    pub groups: usize,
    /// Seconds of typing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Typing requests per member per second (the server allows 3 per 3 s).
    #[arg(long, default_value_t = 1.0)]
    pub per_member_rate: f64,
}

/// Runs the benchmark; the JSON report and whether it ran without errors.
pub async fn run(args: TypingArgs) -> anyhow::Result<(serde_json::Value, bool)> {
    let g = args.group_size.max(2);
    anyhow::ensure!(
        !args.target.plaintext,
        "--plaintext is only for `connections` (the SDK always uses TLS)"
    );
    let users_n = g * args.groups.max(1);
    let target = Target::start(&args.target, &args.db, users_n + 64).await?;
    eprintln!(
        "server: {} at {}; {} groups of {g}",
        target.mode, target.addr, args.groups
    );
    let tag = setup::run_tag();
    let users = setup::users(&target, &tag, users_n, 1, false).await?;
    let lists: Vec<Vec<usize>> = (0..args.groups.max(1))
        .map(|k| (k * g..(k + 1) * g).collect())
        .collect();
    let convs = setup::groups(&users, &lists, &tag).await?;

    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let receivers: Vec<_> = users
        .iter()
        .map(|u| {
            tokio::spawn(traffic::receive_loop(
                u.clients[0].events(),
                u.id,
                counters.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Only typing notices count from here on.
    counters.delivered.store(0, Relaxed);

    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let before = target.sample();
    let self_before = sys::sample_self();
    let stop_progress = CancellationToken::new();
    let progress = {
        let (c, ok, refused) = (counters.clone(), ok.clone(), refused.clone());
        report::progress(stop_progress.clone(), "typing", move || {
            format!(
                "requests ok {} refused {} errors {} notices delivered {}",
                ok.load(Relaxed),
                refused.load(Relaxed),
                c.errors.load(Relaxed),
                c.delivered.load(Relaxed)
            )
        })
    };
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.duration);
    let period = Duration::from_secs_f64(1.0 / args.per_member_rate.max(0.01));
    let mut typers = Vec::new();
    for (k, members) in lists.iter().enumerate() {
        for (j, &u) in members.iter().enumerate() {
            let client = users[u].clients[0].clone();
            let conv = convs[k];
            let (ok, refused, counters) = (ok.clone(), refused.clone(), counters.clone());
            // Spread the members over one period.
            let first = tokio::time::Instant::now() + period.mul_f64(j as f64 / g as f64);
            typers.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(first, period);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = tokio::time::sleep_until(deadline) => return,
                    }
                    match client.typing(conv).await {
                        Ok(()) => ok.fetch_add(1, Relaxed),
                        Err(e) if e.code() == Some(ErrorCode::RateLimited) => refused.fetch_add(1, Relaxed),
                        Err(_) => counters.errors.fetch_add(1, Relaxed),
                    };
                }
            }));
        }
    }
    for t in typers {
        t.await?;
    }
    let typing_elapsed = started.elapsed();
    // Notices still in flight.
    let expected = ok.load(Relaxed) * (g as u64 - 1);
    let wait = Instant::now();
    while counters.delivered.load(Relaxed) < expected && wait.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = target.sample();
    let self_after = sys::sample_self();
    stop_progress.cancel();
    let _ = progress.await;
    stop.cancel();
    for r in receivers {
        r.await?;
    }
    let delivered = counters.delivered.load(Relaxed);
    let lagged = counters.lagged.load(Relaxed);
    let errors = counters.errors.load(Relaxed);
    let secs = typing_elapsed.as_secs_f64();
    let cpu = |a: Option<sys::ProcSample>, b: Option<sys::ProcSample>| match (a, b) {
        (Some(a), Some(b)) => {
            let us = (b.cpu - a.cpu).as_secs_f64() * 1e6;
            Some(json!({
                "cpu_s": round(us / 1e6, 3),
                "cpu_us_per_notice": round(us / delivered.max(1) as f64, 2),
                "rss_kib": b.rss_kib,
            }))
        }
        _ => None,
    };
    let report = json!({
        "bench": "typing",
        "machine": sys::machine(),
        "server_mode": target.mode,
        "database": args.db.database,
        "config": {
            "groups": args.groups,
            "group_size": g,
            "users": users_n,
            "duration_s": args.duration,
            "per_member_rate": args.per_member_rate,
        },
        "requests_ok": ok.load(Relaxed),
        "requests_refused_rate_limited": refused.load(Relaxed),
        "errors": errors,
        "notices_delivered": delivered,
        "notices_expected": expected,
        "notices_per_s": round(delivered as f64 / secs, 1),
        "requests_per_s": round(ok.load(Relaxed) as f64 / secs, 1),
        "lagged_events": lagged,
        "server_process": cpu(before, after),
        "bench_process": cpu(Some(self_before), Some(self_after)),
        "bench_process_includes_server": target.in_process(),
        "ok": errors == 0 && delivered >= expected,
    });
    eprintln!(
        "typing: {} notices delivered in {secs:.1}s = {:.0}/s ({} requests ok, {} refused)",
        delivered,
        delivered as f64 / secs,
        ok.load(Relaxed),
        refused.load(Relaxed)
    );
    setup::close_all(users).await;
    target.stop().await;
    let passed = errors == 0 && delivered >= expected;
    Ok((report, passed))
}
