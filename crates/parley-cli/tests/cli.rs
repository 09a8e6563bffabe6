//! `parley-cli` run as a process against the SDK's in-process test server:
//! login saves a private session, later commands resume it, trust on first
//! use is announced once, and failures exit with the documented codes.

// The test server lives with the SDK's tests (it allows its unused parts).
#[path = "../../parley-client/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Output;

use support::TestServer;

async fn cli(config_dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_parley-cli"))
        .args(args)
        .env("PARLEY_CONFIG_DIR", config_dir)
        .env_remove("PARLEY_SERVER")
        .env_remove("PARLEY_PASSWORD")
        .env_remove("PARLEY_NEW_PASSWORD")
        .env_remove("PARLEY_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn login_then_commands_resume_the_saved_session() {
    let server = TestServer::start(10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path();
    let addr = server.addr.to_string();

    let out = cli(cfg, &["--server", &addr, "login", "alice", "--password", "pw"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("logged in as alice"));
    let notice = format!("trusting new server certificate sha256 {}", server.fingerprint);
    assert!(text(&out.stderr).contains(&notice), "{}", text(&out.stderr));
    let session = std::fs::read_to_string(cfg.join("session.toml")).unwrap();
    assert!(session.contains("token-"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cfg.join("session.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let out = cli(cfg, &["whoami"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("alice"));
    assert!(text(&out.stderr).is_empty(), "the certificate is known now");
    assert!(!text(&out.stdout).contains("token-"), "tokens are never printed");

    let out = cli(cfg, &["--json", "friends"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let friends: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(friends[0]["user"]["username"], "bob");
    assert_eq!(friends[0]["remark"], "bobby");
    assert_eq!(friends[0]["online"], true);

    let out = cli(cfg, &["friends"]).await;
    let table = text(&out.stdout);
    assert!(table.starts_with("USERNAME"), "{table}");
    assert!(table.contains("bobby") && table.contains("online"));

    let out = cli(cfg, &["profile", "carol"]).await;
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("carol"));

    let out = cli(cfg, &["profile", "missing"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: looking up missing"), "{err}");
    assert_eq!(err.lines().count(), 1);

    let out = cli(cfg, &["logout"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!cfg.join("session.toml").exists());
    let out = cli(cfg, &["whoami"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).starts_with("error: not logged in"));
}

#[tokio::test]
async fn auth_failures_exit_with_3() {
    let server = TestServer::start(10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path();
    let addr = server.addr.to_string();
    let pin = ["--server", &addr, "--fingerprint", &server.fingerprint];

    let out = cli(
        cfg,
        &[&pin[..], &["login", "alice", "--password", "nope"]].concat(),
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(!cfg.join("session.toml").exists());

    // Passwords can come from standard input, too.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_parley-cli"))
        .args([&pin[..], &["login", "alice"]].concat())
        .env("PARLEY_CONFIG_DIR", cfg)
        .env_remove("PARLEY_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"pw\n").await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let session = std::fs::read_to_string(cfg.join("session.toml")).unwrap();
    let token = session
        .lines()
        .find_map(|l| l.strip_prefix("token = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    server.expire(&token);
    let out = cli(cfg, &[&pin[..], &["whoami"]].concat()).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("expired or was revoked"));
    assert!(!cfg.join("session.toml").exists(), "a dead session is forgotten");
}

#[tokio::test]
async fn a_changed_certificate_is_refused_loudly() {
    let server = TestServer::start(10_000).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path();
    let addr = server.addr.to_string();
    std::fs::write(cfg.join("known_hosts"), format!("{addr} {}\n", "ef".repeat(32))).unwrap();
    let out = cli(cfg, &["--server", &addr, "login", "alice", "--password", "pw"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("SERVER CERTIFICATE CHANGED"), "{err}");
    assert!(err.contains(&server.fingerprint));
    assert_eq!(err.lines().count(), 1);
}

#[tokio::test]
async fn usage_and_connection_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path();
    let out = cli(cfg, &["profile", "set"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: nothing to change"));
    let out = cli(cfg, &["no-such-command"]).await;
    assert_eq!(out.status.code(), Some(2));

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let out = cli(
        cfg,
        &["--server", &addr, "register", "bob", "--password", "12345678"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with(&format!("error: connecting to {addr}")), "{err}");
}
