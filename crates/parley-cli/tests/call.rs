//! `call` and `answer --auto` run as processes against a real in-process server (its media
//! relay on loopback): the callee's recording carries the caller's tone, both print the call's
//! progress and how it ended.

use std::path::Path;
use std::process::Stdio;

use parley_client::{Client, ClientConfig, Trust};
use parley_media::analysis::dominant_frequency;
use parley_server::{Config, ServerHandle};
use tokio::io::{AsyncBufReadExt, BufReader};

async fn start_server(dir: &Path) -> ServerHandle {
    parley_server::start(Config::loopback(dir)).await.unwrap()
}

fn cli(server: &ServerHandle, cfg: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley-cli"));
    command
        .args([
            "--server",
            &server.client_addr.to_string(),
            "--server-name",
            "localhost",
        ])
        .args(["--fingerprint", server.fingerprint.as_deref().unwrap_or_default()])
        .args(args)
        .env("PARLEY_CONFIG_DIR", cfg)
        .env_remove("PARLEY_SERVER")
        .env_remove("PARLEY_PASSWORD")
        .env_remove("PARLEY_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn ok(mut command: tokio::process::Command) -> String {
    let out = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_and_auto_answer_carry_the_tone() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for name in ["ann", "ben"] {
        let mut cfg = ClientConfig::new(
            server.client_addr.to_string(),
            Trust::Pinned(server.fingerprint.clone().unwrap_or_default()),
        );
        cfg.server_name = "localhost".into();
        let client = Client::connect(cfg).await.unwrap();
        let password = format!("password-{name}");
        client.register(name, name, &password).await.unwrap();
        ids.push(client.login(name, &password).await.unwrap().user.unwrap().id);
        clients.push(client);
        let cfg_dir = dir.path().join(name);
        ok(cli(&server, &cfg_dir, &["login", name, "--password", &password])).await;
    }
    clients[0].send_friend_request(ids[1], "").await.unwrap();
    let request = clients[1].friend_requests().await.unwrap().incoming[0].id;
    clients[1].answer_friend_request(request, true).await.unwrap();

    let recording = dir.path().join("ben.wav");
    let mut answer = cli(
        &server,
        &dir.path().join("ben"),
        &[
            "answer",
            "--auto",
            "--tone",
            "660",
            "--record",
            recording.to_str().unwrap(),
        ],
    );
    let mut callee = answer.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(callee.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    assert!(first.starts_with("waiting for a call"), "{first}");

    let caller = ok(cli(
        &server,
        &dir.path().join("ann"),
        &["call", "ben", "--tone", "440", "--seconds", "2"],
    ))
    .await;
    assert!(caller.contains("\nconnected\n"), "{caller}");
    assert!(caller.contains("ended: completed 00:0"), "{caller}");
    assert!(caller.contains("rtt"), "a stats line: {caller}");

    let mut callee_out = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        callee_out.push_str(&line);
        callee_out.push('\n');
    }
    assert!(callee.wait().await.unwrap().success(), "{callee_out}");
    assert!(callee_out.contains("incoming call from ann"), "{callee_out}");
    assert!(callee_out.contains("ended: completed"), "{callee_out}");

    let wav = recorded_samples(&recording);
    assert!(wav.len() > 48_000, "at least a second recorded");
    let hz = dominant_frequency(&wav).unwrap();
    assert!((hz - 440.0).abs() < 5.0, "ben heard {hz} Hz");
    server.shutdown().await;
}

/// The samples of a 16-bit mono WAV file, read through parley-media's own source.
fn recorded_samples(path: &Path) -> Vec<i16> {
    use parley_media::{AudioSource, FRAME_SAMPLES, SourceStatus, WavSource};
    let mut source = WavSource::open(path, false).unwrap();
    let mut out = Vec::new();
    let mut frame = [0i16; FRAME_SAMPLES];
    while source.read_frame(&mut frame).unwrap() == SourceStatus::Ready {
        out.extend_from_slice(&frame);
    }
    out
}
