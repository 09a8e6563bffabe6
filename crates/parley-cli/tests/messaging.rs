//! The messaging commands run as processes against the SDK's in-process
//! test server and its fake file server: send, conversations, history,
//! files, search, groups, avatars and the interactive chat (driven through
//! a pipe, the way scripts and tmux sessions use it).

#[path = "../../parley-client/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Output, Stdio};

use support::TestServer;
use tokio::io::AsyncWriteExt;

const BOB_CONV: i64 = 102;

fn command(cfg: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley-cli"));
    command
        .args(args)
        .env("PARLEY_CONFIG_DIR", cfg)
        .env_remove("PARLEY_SERVER")
        .env_remove("PARLEY_PASSWORD")
        .env_remove("PARLEY_LOG")
        .stdin(Stdio::null());
    command
}

async fn cli(cfg: &Path, args: &[&str]) -> Output {
    command(cfg, args).output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    text(&out.stdout)
}

async fn logged_in() -> (TestServer, tempfile::TempDir) {
    let server = TestServer::start(10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let addr = server.addr.to_string();
    let pin = server.fingerprint.clone();
    ok(&cli(
        dir.path(),
        &[
            "--server",
            &addr,
            "--fingerprint",
            &pin,
            "login",
            "alice",
            "--password",
            "pw",
        ],
    )
    .await);
    (server, dir)
}

#[tokio::test]
async fn send_list_history_and_search() {
    let (server, dir) = logged_in().await;
    let cfg = dir.path();
    let pin = ["--fingerprint", &server.fingerprint];
    server.append(BOB_CONV, 2, "hi alice");

    let out = ok(&cli(cfg, &[&pin[..], &["send", "bob", "hello bob"]].concat()).await);
    assert_eq!(out.trim(), "sent to conversation 102 as #2");
    let out = ok(&cli(
        cfg,
        &[&pin[..], &["--json", "send", "--conv", "102", "again"]].concat(),
    )
    .await);
    let ack: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (ack["seq"].as_i64(), ack["duplicate"].as_bool()),
        (Some(3), Some(false))
    );

    let out = ok(&cli(cfg, &[&pin[..], &["conversations"]].concat()).await);
    assert!(out.starts_with("ID"), "{out}");
    assert!(
        out.contains("102") && out.contains("bob") && out.contains("alice: again"),
        "{out}"
    );

    let out = ok(&cli(cfg, &[&pin[..], &["history", "bob", "--limit", "2"]].concat()).await);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "(older: --before 2)");
    assert!(lines[1].ends_with("#2 alice: hello bob"), "{out}");
    assert!(lines[2].ends_with("#3 alice: again"), "{out}");
    let out = ok(&cli(cfg, &[&pin[..], &["--json", "history", "102"]].concat()).await);
    let history: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(3));
    assert_eq!(history["messages"][0]["text"], "hi alice");

    let out = ok(&cli(cfg, &[&pin[..], &["search", "hello"]].concat()).await);
    assert!(out.contains("alice: hello bob"), "{out}");
    let out = ok(&cli(cfg, &[&pin[..], &["search", "--users", "carol"]].concat()).await);
    assert!(out.contains("carol"), "{out}");

    let out = cli(cfg, &[&pin[..], &["send", "--conv", "102", "a", "b"]].concat()).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn files_go_up_and_come_back_verified() {
    let (server, dir) = logged_in().await;
    let cfg = dir.path();
    let pin = ["--fingerprint", &server.fingerprint];
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("report.txt");
    std::fs::write(&path, b"quarterly numbers").unwrap();
    let path_text = path.display().to_string();

    let out = ok(&cli(
        cfg,
        &[
            &pin[..],
            &["--json", "send-file", "bob", &path_text, "--caption", "fyi"],
        ]
        .concat(),
    )
    .await);
    let sent: serde_json::Value = serde_json::from_str(&out).unwrap();
    let file_id = sent["file"]["file_id"].as_i64().unwrap();
    assert_eq!(sent["file"]["name"], "report.txt");
    {
        let stats = server.stats.lock().unwrap();
        let message = stats.chat.conversations[&BOB_CONV].last().unwrap().clone();
        assert_eq!(message.kind, parley_client::pb::MessageKind::File as i32);
        assert_eq!(message.text, "fyi");
    }

    let dest = work.path().join("copy.txt");
    let out = ok(&cli(
        cfg,
        &[
            &pin[..],
            &[
                "download",
                &file_id.to_string(),
                "-o",
                &dest.display().to_string(),
            ],
        ]
        .concat(),
    )
    .await);
    assert!(out.contains("saved report.txt"), "{out}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"quarterly numbers");

    // Without -o the file lands under its own (cleaned) name.
    let evil = server
        .stats
        .lock()
        .unwrap()
        .store
        .add("../../evil.txt", "text/plain", b"x");
    let out = command(cfg, &[&pin[..], &["download", &evil.to_string()]].concat())
        .current_dir(work.path())
        .output()
        .await
        .unwrap();
    ok(&out);
    assert_eq!(std::fs::read(work.path().join("evil.txt")).unwrap(), b"x");

    let image = work.path().join("me.png");
    std::fs::write(&image, b"\x89PNG").unwrap();
    let out = ok(&cli(
        cfg,
        &[&pin[..], &["avatar", "set", &image.display().to_string()]].concat(),
    )
    .await);
    assert!(out.starts_with("avatar set to me.png"), "{out}");
    let saved = work.path().join("avatar.png");
    ok(&cli(
        cfg,
        &[&pin[..], &["avatar", "get", "-o", &saved.display().to_string()]].concat(),
    )
    .await);
    assert_eq!(std::fs::read(&saved).unwrap(), b"\x89PNG");

    let out = cli(cfg, &[&pin[..], &["download", "999999"]].concat()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: downloading file 999999"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn groups_are_managed_by_name() {
    let (server, dir) = logged_in().await;
    let cfg = dir.path();
    let pin = ["--fingerprint", &server.fingerprint];
    let out = ok(&cli(
        cfg,
        &[&pin[..], &["--json", "group", "create", "team", "bob"]].concat(),
    )
    .await);
    let group: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(group["kind"], "group");
    let id = group["id"].as_i64().unwrap().to_string();
    let out = ok(&cli(cfg, &[&pin[..], &["group", "rename", &id, "pals"]].concat()).await);
    assert!(out.contains("renamed"), "{out}");
    let out = ok(&cli(cfg, &[&pin[..], &["group", "members", &id]].concat()).await);
    assert!(out.starts_with("USERNAME") && out.contains("bob"), "{out}");
    ok(&cli(cfg, &[&pin[..], &["group", "invite", &id, "carol"]].concat()).await);
    ok(&cli(cfg, &[&pin[..], &["group", "kick", &id, "carol"]].concat()).await);
    ok(&cli(cfg, &[&pin[..], &["group", "leave", &id]].concat()).await);
}

#[tokio::test]
async fn chat_shows_history_sends_lines_and_runs_commands() {
    let (server, dir) = logged_in().await;
    let cfg = dir.path();
    let pin = ["--fingerprint", &server.fingerprint];
    server.append(BOB_CONV, 2, "are you there?");
    let mut child = command(cfg, &[&pin[..], &["chat", "bob"]].concat())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"yes, here\n/edit 2 yes, right here\n/help\n/nonsense\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the chat ends when its input does")
        .unwrap();
    let screen = ok(&out);
    assert!(screen.contains("── bob · conversation 102"), "{screen}");
    assert!(screen.contains("#1 bob: are you there?"), "{screen}");
    assert!(screen.contains("#2 alice: yes, here"), "{screen}");
    assert!(screen.contains("commands: /image PATH"), "{screen}");
    assert!(screen.contains("unknown or incomplete command"), "{screen}");
    let stats = server.stats.lock().unwrap();
    let log = &stats.chat.conversations[&BOB_CONV];
    assert_eq!(log[1].text, "yes, here");
    assert_eq!(
        (log[2].kind, log[2].target_seq),
        (parley_client::pb::MessageKind::Edit as i32, 2)
    );
    assert!(
        stats.chat.marks.contains(&(BOB_CONV, 1)),
        "history was marked read"
    );
}
