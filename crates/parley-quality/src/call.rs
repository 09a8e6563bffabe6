//! One measured call: a private server, an impairing relay in front of its media port, two
//! SDK users who are friends, a call from one to the other, and the figures of what the
//! callee heard.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use parley_client::{Client, ClientConfig, Trust, pb};
use parley_media::{NullSink, ReceiveStats, SilenceSource, WavSource};
use parley_server::{Config, ServerHandle};
use parley_voice::{CallOptions, VoiceCall, next_incoming_call};
use serde::Serialize;
use str0m_netem::{GilbertElliot, NetemConfig, Probability, RandomLoss};
use tokio::net::UdpSocket;

use crate::analysis::{self, AlignConfig};
use crate::relay::{ImpairedRelay, Impairment};
use crate::timeline::{RecordingSink, RecordingSource, Timeline, snapshot};

/// The address clients are told the media relay has; the impairing relay listens there and
/// the real one on 127.0.0.1 with the same port. All of 127/8 is loopback on Linux.
const ADVERTISED_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Mean length of a loss burst in the bursty model, in packets (60 ms of audio).
const BURST_PACKETS: f32 = 3.0;
/// Delay every impaired packet has on top of its jitter, so jitter never makes it negative.
const BASE_LATENCY: Duration = Duration::from_millis(5);
const SIGNALLING_WAIT: Duration = Duration::from_secs(15);

/// The emulated network between the relay and the callee.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Network {
    /// Packet loss, percent.
    pub loss_percent: f32,
    /// Gilbert-Elliot bursts (mean length 3 packets) instead of independent losses.
    pub bursty: bool,
    /// Uniform delay variation of ± this many ms.
    pub jitter_ms: u32,
}

impl Network {
    /// The one-way delay the emulator adds on average; reported latencies exclude it.
    pub fn mean_delay(&self) -> Duration {
        BASE_LATENCY + Duration::from_millis(u64::from(self.jitter_ms))
    }

    pub(crate) fn netem(&self) -> NetemConfig {
        let p = (self.loss_percent / 100.0).clamp(0.0, 0.99);
        let config = NetemConfig::new()
            .latency(self.mean_delay())
            .jitter(Duration::from_millis(u64::from(self.jitter_ms)));
        if p <= 0.0 {
            config
        } else if self.bursty {
            // Stationary loss p = P(bad) = g / (g + b) with b the burst length, so the good
            // run lasts b (1 - p) / p packets on average.
            let good = BURST_PACKETS * (1.0 - p) / p;
            config.loss(
                GilbertElliot::new()
                    .good_duration(good)
                    .bad_duration(BURST_PACKETS),
            )
        } else {
            config.loss(RandomLoss::new(Probability::new(p)))
        }
    }

    /// "10 % bursty ±20 ms".
    pub fn label(&self) -> String {
        let model = if self.loss_percent <= 0.0 {
            ""
        } else if self.bursty {
            " bursty"
        } else {
            " random"
        };
        format!("{} %{model} ±{} ms", self.loss_percent, self.jitter_ms)
    }
}

/// How a call is run and what is kept of it.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Length of the call from the answer on.
    pub seconds: u32,
    /// Start of the call left out of the figures (the jitter buffer's first fill).
    pub warmup: Duration,
    /// What the caller says, 48 kHz mono, looped.
    pub speech: Arc<Vec<i16>>,
    /// Seed of the emulator.
    pub seed: u64,
    /// Where the sent and heard speech is written as WAV for a speech-quality score.
    pub wav_dir: Option<PathBuf>,
}

/// The figures of one call.
#[derive(Debug, Clone, Serialize)]
pub struct CallResult {
    pub network: Network,
    pub seed: u64,
    /// Frames played in the measured part of the call.
    pub frames_played: u64,
    /// Of those, frames invented by loss concealment.
    pub concealed_frames: u64,
    /// Of those, frames rebuilt from the next packet's FEC copy.
    pub fec_frames: u64,
    /// Silent frames while the buffer refilled after an underrun.
    pub rebuffer_frames: u64,
    /// Packets that came after their playout time.
    pub late_packets: u64,
    /// Datagrams the relay took in and passed on towards the callee (loss as it happened).
    pub downlink_in: u64,
    pub downlink_out: u64,
    /// Mouth-to-ear latency, network delay excluded, ms: median and 95th percentile.
    pub mouth_to_ear_p50_ms: Option<f64>,
    pub mouth_to_ear_p95_ms: Option<f64>,
    /// Emulated mean one-way delay that was subtracted, ms.
    pub network_delay_ms: f64,
    /// Windows of heard speech that were found in the sent speech.
    pub windows_located: usize,
    /// Jitter buffer level, ms: mean and 95th percentile over the measured part.
    pub buffer_mean_ms: f64,
    pub buffer_p95_ms: f64,
    /// Mean target delay of the jitter buffer, ms.
    pub target_mean_ms: f64,
    /// Sent and heard speech of the measured part, when kept.
    pub reference_wav: Option<PathBuf>,
    pub degraded_wav: Option<PathBuf>,
    /// Speech-quality score, filled in by the caller of [`run`] when a scorer is available.
    pub pesq_wb: Option<f64>,
}

impl CallResult {
    /// Share of played frames that were concealed.
    pub fn concealed_ratio(&self) -> f64 {
        if self.frames_played == 0 {
            0.0
        } else {
            self.concealed_frames as f64 / self.frames_played as f64
        }
    }
}

/// A private server with the impairing relay in front of its media port.
pub(crate) struct Testbed {
    _dir: tempfile::TempDir,
    pub server: ServerHandle,
    pub relay: ImpairedRelay,
}

impl Testbed {
    /// Starts the server and the relay; nobody is impaired until [`ImpairedRelay::set`].
    pub async fn start(seed: u64) -> anyhow::Result<Testbed> {
        let dir = tempfile::tempdir()?;
        let listen = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ADVERTISED_IP), 0))
            .await
            .context("binding the impairing relay on 127.0.0.2 (on macOS: ifconfig lo0 alias 127.0.0.2)")?;
        let port = listen.local_addr()?.port();
        let mut config = Config::loopback(dir.path());
        config.media_listen = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        config.media_public_ip = Some(IpAddr::V4(ADVERTISED_IP));
        let server = parley_server::start(config)
            .await
            .context("starting the server")?;
        let relay = ImpairedRelay::start(listen, server.media_addr, Impairment::default(), seed)?;
        Ok(Testbed {
            _dir: dir,
            server,
            relay,
        })
    }

    /// Two new users who are friends, and their direct conversation.
    pub async fn friends(&self) -> anyhow::Result<(Client, Client, i64)> {
        let (caller, _) = user(&self.server, "caller").await?;
        let (callee, callee_user) = user(&self.server, "callee").await?;
        caller.send_friend_request(callee_user.id, "").await?;
        let requests = callee.friend_requests().await?;
        let request = requests.incoming.first().context("no friend request arrived")?.id;
        callee.answer_friend_request(request, true).await?;
        let conv = caller.open_direct(callee_user.id).await?.id;
        Ok((caller, callee, conv))
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// Runs one call over `network` and measures it.
pub async fn run(network: Network, options: &RunOptions) -> anyhow::Result<CallResult> {
    let bed = Testbed::start(options.seed).await?;
    // Both clients bind 127.0.0.1; only what reaches them is impaired, and only the callee's
    // hearing is measured.
    bed.relay.set(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        Impairment {
            uplink: None,
            downlink: Some(network.netem()),
        },
    );
    let relay = &bed.relay;
    let (caller, callee, conv) = bed.friends().await?;

    let call_options = CallOptions {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..CallOptions::default()
    };
    let (source, sent_log) = RecordingSource::new(WavSource::from_samples(options.speech.to_vec(), true));
    let (sink, heard_log) = RecordingSink::new();
    let mut events = callee.events();
    let caller_call =
        VoiceCall::place(&caller, conv, source, NullSink::default(), call_options.clone()).await?;
    let incoming = tokio::time::timeout(SIGNALLING_WAIT, next_incoming_call(&mut events))
        .await
        .context("the call did not ring")?
        .context("the callee's connection closed")?;
    let callee_call = VoiceCall::answer(&callee, incoming.call_id, SilenceSource, sink, call_options).await?;

    // The figures end where the observation ends: after the hang-up the callee's buffer
    // plays out and conceals, which is not the network's doing.
    let measured = observe(&callee_call, options).await;
    let _ = caller_call.hang_up().await;
    drop(callee_call.finish().await?);
    let (start, end, samples) = measured?;

    let sent = snapshot(&sent_log);
    let heard = snapshot(&heard_log);
    let from = usize::try_from(start.frames_played + start.silence_frames).unwrap_or(0)
        * parley_media::FRAME_SAMPLES;
    let located = analysis::locate(&sent, &heard, from, AlignConfig::default());
    let excluded = network.mean_delay();
    let latencies: Vec<Duration> = located
        .iter()
        .map(|w| w.latency.saturating_sub(excluded))
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;

    let mut result = CallResult {
        network,
        seed: options.seed,
        frames_played: end.frames_played - start.frames_played,
        concealed_frames: end.concealed_frames - start.concealed_frames,
        fec_frames: end.fec_frames - start.fec_frames,
        rebuffer_frames: end.silence_frames - start.silence_frames,
        late_packets: end.late_packets - start.late_packets,
        downlink_in: relay
            .counters()
            .down_in
            .load(std::sync::atomic::Ordering::Relaxed),
        downlink_out: relay
            .counters()
            .down_out
            .load(std::sync::atomic::Ordering::Relaxed),
        mouth_to_ear_p50_ms: analysis::quantile(&latencies, 0.5).map(ms),
        mouth_to_ear_p95_ms: analysis::quantile(&latencies, 0.95).map(ms),
        network_delay_ms: ms(excluded),
        windows_located: located.len(),
        buffer_mean_ms: mean(&samples.buffer),
        buffer_p95_ms: analysis::quantile_f64(&samples.buffer, 0.95).unwrap_or(0.0),
        target_mean_ms: mean(&samples.target),
        reference_wav: None,
        degraded_wav: None,
        pesq_wb: None,
    };
    if let Some(wav_dir) = &options.wav_dir {
        write_pair(
            wav_dir,
            &network,
            options.seed,
            &sent,
            &heard,
            &located,
            from,
            &mut result,
        )?;
    }
    bed.stop().await;
    Ok(result)
}

struct Samples {
    buffer: Vec<f64>,
    target: Vec<f64>,
}

/// Follows the callee's statistics for the length of the call: the snapshot at the end of
/// the warm-up and the buffer level every 100 ms after it.
async fn observe<K: parley_media::AudioSink + Send + 'static>(
    call: &VoiceCall<K>,
    options: &RunOptions,
) -> anyhow::Result<(ReceiveStats, ReceiveStats, Samples)> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let total = Duration::from_secs(u64::from(options.seconds));
    let began = tokio::time::Instant::now();
    let mut start = None;
    let mut end = ReceiveStats::default();
    let mut samples = Samples {
        buffer: Vec::new(),
        target: Vec::new(),
    };
    while began.elapsed() < total {
        tick.tick().await;
        let stats = call.stats();
        if let parley_voice::CallPhase::Ended(end) = call.phase() {
            bail!("the call ended early: {end:?}");
        }
        if began.elapsed() < options.warmup {
            continue;
        }
        let receive = stats.receive;
        end = receive;
        if start.is_none() {
            start = Some(receive);
        }
        samples.buffer.push(receive.current_delay_ms);
        samples.target.push(receive.target_delay_ms);
    }
    let start = start.context("the call was shorter than its warm-up")?;
    Ok((start, end, samples))
}

/// Writes the heard speech of the measured part and the sent speech it lines up with.
#[allow(clippy::too_many_arguments)]
fn write_pair(
    dir: &std::path::Path,
    network: &Network,
    seed: u64,
    sent: &Timeline,
    heard: &Timeline,
    located: &[analysis::Located],
    from: usize,
    result: &mut CallResult,
) -> anyhow::Result<()> {
    let mut shifts: Vec<i64> = located
        .iter()
        .map(|w| w.sent_at as i64 - w.played_at as i64)
        .collect();
    shifts.sort_unstable();
    let Some(shift) = shifts.get(shifts.len() / 2).copied() else {
        return Ok(());
    };
    // PESQ is made for utterances of up to about 20 s; 10 s is plenty.
    let len = (10 * parley_media::SAMPLE_RATE as usize)
        .min(heard.samples.len().saturating_sub(from))
        .min(usize::try_from(sent.samples.len() as i64 - (from as i64 + shift)).unwrap_or(0));
    let Ok(sent_from) = usize::try_from(from as i64 + shift) else {
        return Ok(());
    };
    if len < parley_media::SAMPLE_RATE as usize {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let stem = format!(
        "loss{}{}-jitter{}-seed{seed}",
        network.loss_percent,
        if network.bursty { "b" } else { "r" },
        network.jitter_ms
    );
    let reference = dir.join(format!("{stem}-sent.wav"));
    let degraded = dir.join(format!("{stem}-heard.wav"));
    write_wav(&reference, &sent.samples[sent_from..sent_from + len])?;
    write_wav(&degraded, &heard.samples[from..from + len])?;
    result.reference_wav = Some(reference);
    result.degraded_wav = Some(degraded);
    Ok(())
}

fn write_wav(path: &std::path::Path, samples: &[i16]) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: parley_media::SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    for s in samples {
        writer.write_sample(*s)?;
    }
    writer.finalize()?;
    Ok(())
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

async fn user(server: &ServerHandle, name: &str) -> anyhow::Result<(Client, pb::User)> {
    let mut cfg = ClientConfig::new(
        server.client_addr.to_string(),
        Trust::Pinned(server.fingerprint.clone().unwrap_or_default()),
    );
    cfg.server_name = "localhost".into();
    let client = Client::connect(cfg).await?;
    let password = format!("password-of-{name}");
    client.register(name, name, &password).await?;
    let logged_in = client.login(name, &password).await?;
    let user = logged_in.user.context("login without a user")?;
    Ok((client, user))
}
