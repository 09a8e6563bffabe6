//! `parley-quality`: runs calls over a grid of emulated networks and prints what the callee
//! heard. See docs/call-quality.md for the method and the latest figures.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use parley_quality::call::{self, RunOptions};
use parley_quality::{grid, timeline};
use tokio::task::JoinSet;

#[derive(Parser, Debug)]
#[command(about = "Measures Parley voice calls under emulated loss and jitter")]
struct Args {
    /// Loss percentages to measure.
    #[arg(long, value_delimiter = ',', default_value = "0,5,10,20")]
    loss: Vec<f32>,
    /// Jitter (± ms) values to measure.
    #[arg(long, value_delimiter = ',', default_value = "0,20,50")]
    jitter: Vec<u32>,
    /// Loss models: random, bursty or both.
    #[arg(long, value_delimiter = ',', default_value = "random,bursty")]
    model: Vec<String>,
    /// Seconds of each call after the answer.
    #[arg(long, default_value_t = 30)]
    seconds: u32,
    /// Seconds at the start of each call left out of the figures.
    #[arg(long, default_value_t = 4)]
    warmup: u32,
    /// Calls run at once (each has its own server and relay).
    #[arg(long, default_value_t = 3)]
    parallel: usize,
    /// Seed of the network emulators.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Speech to send (any WAV; resampled to 48 kHz mono). Default: a synthetic speech-like signal.
    #[arg(long)]
    speech: Option<PathBuf>,
    /// Python with the `pesq` and `scipy` packages, to score speech quality.
    #[arg(long)]
    pesq_python: Option<PathBuf>,
    /// The PESQ scoring script.
    #[arg(long, default_value = "scripts/pesq_score.py")]
    pesq_script: PathBuf,
    /// Where sent/heard WAV pairs are written (kept for listening).
    #[arg(long, default_value = "target/call-quality")]
    out: PathBuf,
    /// Also write every result as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Measure video calls (test pattern + speech) instead of voice calls.
    #[arg(long)]
    video: bool,
    /// With --video: also run the bandwidth step (2 → 0.3 → 2 Mbit/s on the sender's uplink).
    #[arg(long)]
    step: bool,
    /// With --video: test pattern size and rate.
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 360)]
    height: u32,
    #[arg(long, default_value_t = 30)]
    fps: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let models = args
        .model
        .iter()
        .map(|m| match m.as_str() {
            "random" => Ok(false),
            "bursty" => Ok(true),
            other => anyhow::bail!("unknown loss model {other:?} (random, bursty)"),
        })
        .collect::<anyhow::Result<Vec<bool>>>()?;
    let speech = match &args.speech {
        Some(path) => {
            use parley_media::AudioSource;
            let mut wav = parley_media::WavSource::open(path, false)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut samples = Vec::with_capacity(wav.len_samples());
            let mut frame = [0i16; parley_media::FRAME_SAMPLES];
            while wav.read_frame(&mut frame)? == parley_media::SourceStatus::Ready {
                samples.extend_from_slice(&frame);
            }
            samples
        }
        None => timeline::synthetic_speech(20, args.seed),
    };
    let networks = grid::networks(&args.loss, &models, &args.jitter);
    if args.video {
        return run_video(&args, networks, speech).await;
    }
    eprintln!(
        "{} calls of {} s, {} at a time",
        networks.len(),
        args.seconds,
        args.parallel.max(1)
    );
    let options = RunOptions {
        seconds: args.seconds,
        warmup: Duration::from_secs(u64::from(args.warmup)),
        speech: Arc::new(speech),
        seed: args.seed,
        wav_dir: Some(args.out.clone()),
    };

    let permits = Arc::new(tokio::sync::Semaphore::new(args.parallel.max(1)));
    let mut calls = JoinSet::new();
    for (index, network) in networks.into_iter().enumerate() {
        let options = options.clone();
        let permits = permits.clone();
        calls.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (index, network, call::run(network, &options).await)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = calls.join_next().await {
        let (index, network, result) = joined?;
        match result {
            Ok(mut result) => {
                if let Some(python) = &args.pesq_python {
                    result.pesq_wb = grid::pesq(python, &args.pesq_script, &result);
                }
                eprintln!(
                    "{}: concealed {:.2} %, mouth-to-ear p50 {:?} ms, PESQ {:?}",
                    network.label(),
                    100.0 * result.concealed_ratio(),
                    result.mouth_to_ear_p50_ms.map(|v| v.round()),
                    result.pesq_wb
                );
                results.push((index, result));
            }
            Err(e) => eprintln!("{}: failed: {e:#}", network.label()),
        }
    }
    results.sort_by_key(|(index, _)| *index);
    let results: Vec<_> = results.into_iter().map(|(_, r)| r).collect();
    print!("{}", grid::table(&results));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Video calls one after another (each encodes and decodes 30 pictures a second; two at once
/// would measure the machine, not the network), then the bandwidth step.
async fn run_video(args: &Args, networks: Vec<call::Network>, speech: Vec<i16>) -> anyhow::Result<()> {
    use parley_quality::video::{self, BandwidthStep, VideoRunOptions};
    let options = VideoRunOptions {
        seconds: args.seconds,
        warmup: Duration::from_secs(u64::from(args.warmup)),
        speech: Arc::new(speech),
        width: args.width,
        height: args.height,
        fps: args.fps,
        seed: args.seed,
    };
    let mut runs: Vec<(call::Network, Option<BandwidthStep>)> =
        networks.into_iter().map(|n| (n, None)).collect();
    if args.step {
        let clean = call::Network {
            loss_percent: 0.0,
            bursty: false,
            jitter_ms: 0,
        };
        runs.push((clean, Some(BandwidthStep::standard())));
    }
    let mut results = Vec::new();
    for (network, step) in runs {
        let mut options = options.clone();
        if let Some(s) = step {
            // The step needs its three phases inside the measured part.
            options.seconds = options.seconds.max(args.warmup + s.up_at.as_secs() as u32 + 12);
        }
        match video::run(network, step, &options).await {
            Ok(r) => {
                eprintln!(
                    "{}{}: {:.1} fps, {} freezes ({:.0} ms), glass p50 {:?} ms, skew p50 {:?} ms, settle {:?} s, recover {:?} s, target {:?} kbit/s",
                    network.label(),
                    if step.is_some() { " + bandwidth step" } else { "" },
                    r.delivered_fps,
                    r.freezes,
                    r.freeze_total_ms,
                    r.glass_p50_ms.map(|v| v.round()),
                    r.skew_p50_ms.map(|v| v.round()),
                    r.settle_down_s,
                    r.recover_s,
                    r.target_kbps.iter().map(|v| v.round()).collect::<Vec<_>>(),
                );
                results.push(r);
            }
            Err(e) => eprintln!("{}: failed: {e:#}", network.label()),
        }
    }
    print!("{}", video::table(&results));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
