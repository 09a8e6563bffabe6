//! `parley-bench typing`: the in-memory path. Typing notices are never stored;
//! the server checks membership, rate-limits and fans each notice out to the
//! other members' connections.
//!
//! The same load — G groups of S members, each member sending `SetTyping` at a
//! fixed rate over a raw protocol connection — runs twice: against the Parley
//! server, then (baseline b) against `parley-bench forwarder`, a minimal tokio
//! program that only relays frames between group members over the same TLS
//! and framing. Offer more than either can deliver and the ratio of delivered
//! notices per second is the server's in-memory efficiency against that
//! ceiling; both CPU costs per notice come from `/proc`.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _, stream};
use parley_proto::pb;
use pb::client_frame::Body as Req;
use pb::server_frame::Body as Resp;
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::report::{self, round};
use crate::sys::{self, ProcSample};
use crate::target::{DbArgs, Target, TargetArgs};
use crate::{raw, setup};

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
    /// Seconds of typing per target.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Typing requests per member per second (servers this benchmark starts have no typing limit).
    #[arg(long, default_value_t = 1.0)]
    pub per_member_rate: f64,
    /// Most unanswered requests per member; a tick with that many outstanding is skipped.
    #[arg(long, default_value_t = 4)]
    pub window: u64,
    /// Skip the forwarder baseline.
    #[arg(long)]
    pub no_baseline: bool,
}

/// Live counters of one run.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    ok: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    delivered: AtomicU64,
}

/// Runs the benchmark; the JSON report and whether it ran without errors.
pub async fn run(args: TypingArgs) -> anyhow::Result<(serde_json::Value, bool)> {
    let g = args.group_size.max(2);
    let groups = args.groups.max(1);
    anyhow::ensure!(
        !args.target.plaintext,
        "--plaintext is only for `connections` (the SDK always uses TLS)"
    );
    let users_n = g * groups;
    // The SDK clients of the setup may still count while the raw connections open.
    let target = Target::start(&args.target, &args.db, 2 * users_n + 64).await?;
    eprintln!(
        "server: {} at {}; {groups} groups of {g}",
        target.mode, target.addr
    );
    let tag = setup::run_tag();
    let users = setup::users(&target, &tag, users_n, 1, false).await?;
    let lists: Vec<Vec<usize>> = (0..groups).map(|k| (k * g..(k + 1) * g).collect()).collect();
    let convs = setup::groups(&users, &lists, &tag).await?;
    let tokens: Vec<String> = users
        .iter()
        .map(|u| u.clients[0].session_token().context("user without a session"))
        .collect::<anyhow::Result<_>>()?;
    // The raw connections below resume the same sessions; the SDK clients are done.
    setup::close_all(users).await;
    let members: Vec<(String, i64)> = tokens
        .into_iter()
        .enumerate()
        .map(|(u, token)| (token, convs[u / g]))
        .collect();

    let connector = target
        .connector()
        .cloned()
        .context("the server has no TLS connector")?;
    let server = drive(&args, "server", &connector, target.addr, &members, || {
        target.sample()
    })
    .await?;
    target.stop().await;

    let baseline = if args.no_baseline {
        None
    } else {
        let fwd = Forwarder::spawn().await?;
        let connector = crate::tls::pinned_connector(&fwd.fingerprint)?;
        let report = drive(&args, "forwarder", &connector, fwd.addr, &members, || {
            sys::sample(fwd.pid)
        })
        .await?;
        Some(report)
    };

    let ok = server.errors == 0 && baseline.as_ref().is_none_or(|b| b.errors == 0);
    let ratio = baseline
        .as_ref()
        .map(|b| round(server.notices_per_s / b.notices_per_s.max(1.0), 3));
    let cpu_ratio = baseline
        .as_ref()
        .and_then(|b| match (server.cpu_us_per_notice, b.cpu_us_per_notice) {
            (Some(s), Some(f)) if s > 0.0 => Some(round(f / s, 3)),
            _ => None,
        });
    if let Some(r) = ratio {
        eprintln!("typing: server delivers {r} × the forwarder's notices/s");
    }
    let report = json!({
        "bench": "typing",
        "machine": sys::machine(),
        "server_mode": target_mode(&args),
        "database": args.db.database,
        "config": {
            "groups": groups,
            "group_size": g,
            "users": users_n,
            "duration_s": args.duration,
            "per_member_rate": args.per_member_rate,
            "window": args.window,
            "offered_notices_per_s": round(args.per_member_rate * users_n as f64 * (g - 1) as f64, 0),
        },
        "server": server.json,
        "forwarder_baseline": baseline.as_ref().map(|b| b.json.clone()),
        "ratio_notices_per_s": ratio,
        "ratio_cpu_efficiency": cpu_ratio,
        "ok": ok,
    });
    Ok((report, ok))
}

fn target_mode(args: &TypingArgs) -> &'static str {
    if args.target.server.is_some() {
        "external"
    } else if args.target.spawn_server {
        "spawned"
    } else {
        "in-process"
    }
}

/// What one run measured.
struct RunReport {
    notices_per_s: f64,
    cpu_us_per_notice: Option<f64>,
    errors: u64,
    json: serde_json::Value,
}

/// Connects every member, lets each join, then offers the load for `duration`.
async fn drive(
    args: &TypingArgs,
    label: &'static str,
    connector: &TlsConnector,
    addr: SocketAddr,
    members: &[(String, i64)],
    sample: impl Fn() -> Option<ProcSample>,
) -> anyhow::Result<RunReport> {
    let conns: Vec<raw::Transport> = stream::iter(members.iter())
        .map(|(token, _)| raw::resume(Some(connector), addr, None, token))
        .buffered(64)
        .map(|r| r.map(|(t, _)| t))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("connecting to the {label}"))?;
    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let joined = Arc::new(AtomicU64::new(0));
    let period = Duration::from_secs_f64(1.0 / args.per_member_rate.max(0.01));
    let n = members.len();
    let mut tasks = Vec::new();
    for (i, (t, (_, conv))) in conns.into_iter().zip(members).enumerate() {
        let phase = period.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(member(
            t,
            *conv,
            period,
            phase,
            args.window,
            counts.clone(),
            joined.clone(),
            go_rx.clone(),
            stop.clone(),
        )));
    }
    // Every member joins (the forwarder learns groups from the first notice) before counting.
    let wait = Instant::now();
    while joined.load(Relaxed) < n as u64 && wait.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::ensure!(
        joined.load(Relaxed) == n as u64,
        "{label}: not every member joined"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (before, self_before) = (sample(), sys::sample_self());
    counts.delivered.store(0, Relaxed);
    let stop_progress = CancellationToken::new();
    let progress = {
        let c = counts.clone();
        report::progress(stop_progress.clone(), label, move || {
            format!(
                "requests sent {} ok {} refused {} skipped {} errors {} notices delivered {}",
                c.sent.load(Relaxed),
                c.ok.load(Relaxed),
                c.refused.load(Relaxed),
                c.skipped.load(Relaxed),
                c.errors.load(Relaxed),
                c.delivered.load(Relaxed)
            )
        })
    };
    let started = Instant::now();
    let _ = go_tx.send(true);
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let delivered = counts.delivered.load(Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let (after, self_after) = (sample(), sys::sample_self());
    stop_progress.cancel();
    let _ = progress.await;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let cpu = |a: Option<ProcSample>, b: Option<ProcSample>| match (a, b) {
        (Some(a), Some(b)) => Some((b.cpu - a.cpu).as_secs_f64() * 1e6),
        _ => None,
    };
    let target_cpu = cpu(before, after);
    let per_notice = target_cpu.map(|us| us / delivered.max(1) as f64);
    let notices_per_s = delivered as f64 / secs;
    let errors = counts.errors.load(Relaxed);
    eprintln!(
        "{label}: {delivered} notices in {secs:.1}s = {notices_per_s:.0}/s, {} µs CPU per notice",
        per_notice.map_or("?".to_string(), |u| format!("{u:.2}"))
    );
    let json = json!({
        "notices_delivered": delivered,
        "notices_per_s": round(notices_per_s, 1),
        "requests_sent": counts.sent.load(Relaxed),
        "requests_ok": counts.ok.load(Relaxed),
        "requests_refused_rate_limited": counts.refused.load(Relaxed),
        "ticks_skipped_window_full": counts.skipped.load(Relaxed),
        "errors": errors,
        "cpu_s": target_cpu.map(|us| round(us / 1e6, 3)),
        "cpu_us_per_notice": per_notice.map(|u| round(u, 3)),
        "rss_kib": after.map(|a| a.rss_kib),
        "bench_cpu_s": round((self_after.cpu - self_before.cpu).as_secs_f64(), 3),
    });
    Ok(RunReport {
        notices_per_s,
        cpu_us_per_notice: per_notice,
        errors,
        json,
    })
}

/// One member: joins with a first notice, then sends one per `period` once `go`
/// flips, counting replies and the notices the others' typing brings.
#[allow(clippy::too_many_arguments)]
async fn member(
    t: raw::Transport,
    conv: i64,
    period: Duration,
    phase: Duration,
    window: u64,
    counts: Arc<Counts>,
    joined: Arc<AtomicU64>,
    mut go: tokio::sync::watch::Receiver<bool>,
    stop: CancellationToken,
) {
    let (mut tx, mut rx) = t.split();
    let typing = |request_id| pb::ClientFrame {
        request_id,
        body: Some(Req::SetTyping(pb::SetTyping { conv_id: conv })),
    };
    let mut next_id = 100u64;
    let mut answered = 0u64;
    if tx.send(typing(next_id)).await.is_err() {
        counts.errors.fetch_add(1, Relaxed);
        return;
    }
    let mut joined_once = false;
    let mut tick: Option<tokio::time::Interval> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = go.changed(), if tick.is_none() => {
                if changed.is_err() {
                    return;
                }
                tick = Some(tokio::time::interval_at(tokio::time::Instant::now() + phase, period));
            }
            () = next_tick(&mut tick) => {
                if next_id - 100 - answered >= window {
                    counts.skipped.fetch_add(1, Relaxed);
                    continue;
                }
                next_id += 1;
                counts.sent.fetch_add(1, Relaxed);
                if tx.send(typing(next_id)).await.is_err() {
                    counts.errors.fetch_add(1, Relaxed);
                    return;
                }
            }
            frame = rx.next() => match frame {
                None | Some(Err(_)) => {
                    if !stop.is_cancelled() {
                        counts.errors.fetch_add(1, Relaxed);
                    }
                    return;
                }
                Some(Ok(f)) => match f.body {
                    Some(Resp::Event(pb::Event { kind: Some(pb::event::Kind::Typing(_)), .. })) => {
                        counts.delivered.fetch_add(1, Relaxed);
                    }
                    Some(Resp::Ok(_)) if f.request_id >= 100 => {
                        if joined_once {
                            answered += 1;
                            counts.ok.fetch_add(1, Relaxed);
                        } else {
                            joined_once = true;
                            joined.fetch_add(1, Relaxed);
                        }
                    }
                    Some(Resp::Error(e)) if f.request_id >= 100 => {
                        answered += u64::from(joined_once);
                        if e.code() == pb::ErrorCode::RateLimited {
                            counts.refused.fetch_add(1, Relaxed);
                        } else {
                            counts.errors.fetch_add(1, Relaxed);
                        }
                        if !joined_once {
                            joined_once = true;
                            joined.fetch_add(1, Relaxed);
                        }
                    }
                    _ => {}
                },
            },
        }
    }
}

/// The next tick of `tick`, or never while there is none.
async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// `parley-bench forwarder` running as a child process.
struct Forwarder {
    addr: SocketAddr,
    fingerprint: String,
    pid: u32,
    _child: tokio::process::Child,
}

impl Forwarder {
    async fn spawn() -> anyhow::Result<Forwarder> {
        let exe = std::env::current_exe()?;
        let mut child = tokio::process::Command::new(exe)
            .arg("forwarder")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the forwarder")?;
        let pid = child.id().context("forwarder without a pid")?;
        let stdout = child.stdout.take().context("no forwarder stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut addr, mut fingerprint) = (None, None);
        let read = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(a) = line.strip_prefix("forwarder listening on ") {
                    addr = Some(a.trim().parse::<SocketAddr>()?);
                } else if let Some(fp) = line.strip_prefix("certificate sha256 fingerprint: ") {
                    fingerprint = Some(fp.trim().to_string());
                }
                if addr.is_some() && fingerprint.is_some() {
                    return Ok(());
                }
            }
            anyhow::bail!("the forwarder exited before it listened")
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .context("the forwarder did not start")??;
        Ok(Forwarder {
            addr: addr.context("no forwarder address")?,
            fingerprint: fingerprint.context("no forwarder fingerprint")?,
            pid,
            _child: child,
        })
    }
}
