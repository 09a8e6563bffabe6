//! `parley-bench`: Parley's load generator and benchmarks.
//!
//! * `throughput` — durable message throughput through the server against
//!   the database's own batched-INSERT ceiling in the same run, ack and
//!   end-to-end latency percentiles, lost/duplicated deliveries, server CPU
//!   per message; `--smoke` is the CI check (1 000 connections, 10 s).
//! * `connections` — many idle logged-in connections (raw protocol, spread
//!   over 127.0.0.x source addresses and worker processes) and the server's
//!   memory per connection.
//! * `typing` — the in-memory path: typing notices fanned out in groups,
//!   against a minimal tokio forwarder over the same framing in the same run.
//!
//! Progress goes to stderr once a second; the summary goes to stdout (JSON
//! with `--json`). See `docs/benchmarks.md` for the commands and figures.

mod baseline;
mod connections;
mod forwarder;
mod raw;
mod report;
mod setup;
mod sys;
mod target;
mod throughput;
mod tls;
mod traffic;
mod typing;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

#[derive(Debug, clap::Parser)]
#[command(
    name = "parley-bench",
    version,
    about = "Parley load generator and benchmarks"
)]
struct Cli {
    /// Print the summary as one JSON object on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Durable message throughput vs the database's batched-INSERT ceiling; latency; loss.
    Throughput(throughput::ThroughputArgs),
    /// Idle logged-in connections and the server's memory per connection.
    Connections(connections::ConnectionsArgs),
    /// In-memory path: typing notices delivered per second.
    Typing(typing::TypingArgs),
    /// Internal: the minimal forwarder that `typing` measures as its baseline.
    #[command(hide = true)]
    Forwarder(forwarder::ForwarderArgs),
    /// Internal: one worker process of `connections`.
    #[command(hide = true)]
    ConnectionsWorker(connections::WorkerArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_env("PARLEY_LOG").unwrap_or_else(|_| EnvFilter::new("warn")))
        .init();
    let (soft, hard) = sys::raise_nofile_limit();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Throughput(args) => throughput::run(args).await,
            Command::Connections(args) => connections::run(args, (soft, hard)).await,
            Command::Typing(args) => typing::run(args).await,
            Command::Forwarder(args) => forwarder::run(args)
                .await
                .map(|()| (serde_json::Value::Null, true)),
            Command::ConnectionsWorker(args) => connections::worker(args)
                .await
                .map(|()| (serde_json::Value::Null, true)),
        }
    });
    // Leftover client tasks must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok((serde_json::Value::Null, ok)) => exit(ok),
        Ok((report, ok)) => {
            if json {
                println!("{report}");
            } else {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            }
            if !ok {
                eprintln!("FAILED: see `ok` and the counts above");
            }
            exit(ok)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn exit(ok: bool) -> std::process::ExitCode {
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
