//! A tiny in-process Parley server for the SDK's tests.
//!
//! It speaks just enough of the protocol (Hello, Ping, Login, Resume, Logout,
//! GetProfile, ListFriends, and the messaging requests in `messaging.rs`)
//! over real TLS with a fresh self-signed certificate, and can be told to
//! push events, drop every connection, revoke a session or go silent, so the
//! client's reconnect paths can be driven from a test. Profiles named "slow"
//! answer late and "never" not at all. A fake file server (`files.rs`) runs
//! beside it with the same certificate.

// Each test binary uses a different part of the server.
#![allow(dead_code)]

pub mod files;
pub mod messaging;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parley_client::{ClientConfig, ClientEvent, Trust, pb};
use parley_proto::FrameCodec;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;

/// What a test can make the server do to its live connections.
#[derive(Clone, Debug)]
pub enum Control {
    Push(Box<pb::event::Kind>),
    DropAll,
    /// Send `SessionRevoked` on the connection of this session, then close it.
    Revoke(i64),
    /// Stop answering anything, pings included.
    Mute,
}

/// Counters and sessions, visible to the test.
#[derive(Default, Debug)]
pub struct Stats {
    pub hellos: u32,
    pub pings: u32,
    pub resumes: Vec<String>,
    /// token -> session id
    pub tokens: HashMap<String, i64>,
    /// Conversations, messages and sends.
    pub chat: messaging::Chat,
    /// The file server's files and uploads.
    pub store: files::Store,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub cert_pem: String,
    pub stats: Arc<Mutex<Stats>>,
    pub files: files::FileServer,
    control: broadcast::Sender<Control>,
}

impl TestServer {
    pub async fn start(heartbeat_ms: u32) -> TestServer {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert_der: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Mutex::new(Stats::default()));
        let (control, _) = broadcast::channel(1024);
        let files = files::FileServer::start(acceptor.clone(), stats.clone()).await;
        let http_port = files.addr.port();
        let server = TestServer {
            addr,
            fingerprint: parley_client::cert_fingerprint(&cert_der),
            cert_pem: certified.cert.pem(),
            stats: stats.clone(),
            files,
            control: control.clone(),
        };
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let stats = stats.clone();
                let control_tx = control.clone();
                let control = control.subscribe();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let link = Link {
                            stats,
                            control_tx,
                            heartbeat_ms,
                            http_port,
                        };
                        serve(tls, link, control).await;
                    }
                });
            }
        });
        server
    }

    pub fn control(&self, c: Control) {
        let _ = self.control.send(c);
    }

    /// Forgets a token, as if the session expired while nobody was connected.
    pub fn expire(&self, token: &str) {
        self.stats.lock().unwrap().tokens.remove(token);
    }

    /// Stores a message from `sender_id` without pushing it: a lost push.
    pub fn append(&self, conv_id: i64, sender_id: i64, text: &str) -> pb::Message {
        self.stats
            .lock()
            .unwrap()
            .chat
            .append(conv_id, sender_id, pb::MessageKind::Text, text)
    }

    /// Stores a message and pushes it to every connection.
    pub fn post(&self, conv_id: i64, sender_id: i64, text: &str) -> pb::Message {
        let message = self.append(conv_id, sender_id, text);
        self.push_message(message.clone());
        message
    }

    /// Pushes a message (again) to every connection.
    pub fn push_message(&self, message: pb::Message) {
        self.control(Control::Push(Box::new(pb::event::Kind::Message(message))));
    }

    pub fn config(&self, trust: Trust) -> ClientConfig {
        let mut config = ClientConfig::new(self.addr.to_string(), trust);
        config.server_name = "localhost".into();
        config.backoff_initial = Duration::from_millis(10);
        config.backoff_max = Duration::from_millis(50);
        config.request_timeout = Duration::from_secs(5);
        config
    }

    pub fn pinned(&self) -> ClientConfig {
        self.config(Trust::Pinned(self.fingerprint.clone()))
    }
}

/// What one connection of the server knows.
struct Link {
    stats: Arc<Mutex<Stats>>,
    control_tx: broadcast::Sender<Control>,
    heartbeat_ms: u32,
    http_port: u16,
}

pub fn user(id: i64, username: &str) -> pb::User {
    pb::User {
        id,
        username: username.into(),
        display_name: username.to_uppercase(),
        ..Default::default()
    }
}

async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    link: Link,
    mut control: broadcast::Receiver<Control>,
) {
    let Link {
        stats,
        control_tx,
        heartbeat_ms,
        http_port,
    } = link;
    use pb::client_frame::Body as Req;
    use pb::server_frame::Body as Resp;
    let mut framed = Framed::new(tls, FrameCodec::<pb::ClientFrame, pb::ServerFrame>::new(1 << 20));
    let (late_tx, mut late_rx) = mpsc::unbounded_channel::<pb::ServerFrame>();
    let mut session_id = 0i64;
    let mut muted = false;
    loop {
        tokio::select! {
            frame = framed.next() => {
                let Some(Ok(frame)) = frame else { return };
                if muted { continue; }
                let id = frame.request_id;
                let reply = |body| Some(pb::ServerFrame::reply(id, body));
                let error = |code| Some(pb::ServerFrame::error(id, pb::Error::new(code, "test")));
                let out = match frame.body {
                    Some(Req::Hello(_)) => {
                        stats.lock().unwrap().hellos += 1;
                        reply(Resp::Welcome(pb::Welcome {
                            protocol_version: 1,
                            server_name: "test".into(),
                            heartbeat_interval_ms: heartbeat_ms,
                            idle_timeout_ms: heartbeat_ms * 3,
                            max_frame_bytes: 1 << 20,
                            http_port: u32::from(http_port),
                        }))
                    }
                    Some(Req::Ping(p)) => {
                        stats.lock().unwrap().pings += 1;
                        reply(Resp::Pong(pb::Pong { nonce: p.nonce }))
                    }
                    Some(Req::Login(l)) if l.password == "pw" => {
                        let mut s = stats.lock().unwrap();
                        session_id = s.tokens.len() as i64 + 100;
                        let token = format!("token-{session_id}");
                        s.tokens.insert(token.clone(), session_id);
                        reply(Resp::LoggedIn(pb::LoggedIn {
                            user: Some(user(1, &l.username)),
                            session_id,
                            token,
                        }))
                    }
                    Some(Req::Login(_)) => error(pb::ErrorCode::WrongCredentials),
                    Some(Req::Resume(r)) => {
                        let mut s = stats.lock().unwrap();
                        s.resumes.push(r.token.clone());
                        match s.tokens.get(&r.token) {
                            Some(id) => {
                                session_id = *id;
                                reply(Resp::LoggedIn(pb::LoggedIn {
                                    user: Some(user(1, "alice")),
                                    session_id,
                                    token: String::new(),
                                }))
                            }
                            None => error(pb::ErrorCode::SessionInvalid),
                        }
                    }
                    Some(Req::RevokeSession(r)) if r.session_id == session_id => {
                        // The event deliberately overtakes the answer.
                        stats.lock().unwrap().tokens.retain(|_, s| *s != session_id);
                        let kind = pb::event::Kind::SessionRevoked(pb::SessionRevoked { session_id });
                        let _ = framed.send(pb::ServerFrame::event(kind)).await;
                        let _ = framed.send(pb::ServerFrame::reply(id, Resp::Ok(pb::Ok {}))).await;
                        return;
                    }
                    Some(Req::Logout(_)) => {
                        stats.lock().unwrap().tokens.retain(|_, id| *id != session_id);
                        session_id = 0;
                        reply(Resp::Ok(pb::Ok {}))
                    }
                    Some(Req::GetProfile(pb::GetProfile { who: Some(pb::get_profile::Who::Username(name)) })) => {
                        match name.as_str() {
                            "never" => None,
                            "missing" => error(pb::ErrorCode::NotFound),
                            "slow" => {
                                let late = late_tx.clone();
                                tokio::spawn(async move {
                                    tokio::time::sleep(Duration::from_millis(300)).await;
                                    let _ = late.send(pb::ServerFrame::reply(
                                        id,
                                        Resp::Profile(pb::Profile { user: Some(user(2, "slow")) }),
                                    ));
                                });
                                None
                            }
                            "alice" | "bob" => {
                                let id = if name == "alice" { 1 } else { 2 };
                                reply(Resp::Profile(pb::Profile { user: Some(messaging::user_by_id(id)) }))
                            }
                            _ => reply(Resp::Profile(pb::Profile { user: Some(user(3, &name)) })),
                        }
                    }
                    Some(Req::GetProfile(pb::GetProfile { who: Some(pb::get_profile::Who::UserId(id)) })) => {
                        reply(Resp::Profile(pb::Profile { user: Some(messaging::user_by_id(id)) }))
                    }
                    Some(body) if messaging::handles(&body) => {
                        match messaging::answer(&stats, &control_tx, body) {
                            messaging::Answer::Reply(body) => reply(*body),
                            messaging::Answer::Error(code) => error(code),
                            messaging::Answer::Hangup => return,
                        }
                    }
                    Some(Req::ListFriends(_)) => reply(Resp::FriendList(pb::FriendList {
                        friends: vec![pb::Friend {
                            user: Some(user(4, "bob")),
                            remark: "bobby".into(),
                            presence: Some(pb::Presence { online: true, last_seen_ms: 0 }),
                            since_ms: 1,
                        }],
                    })),
                    _ => error(pb::ErrorCode::BadRequest),
                };
                if let Some(out) = out
                    && framed.send(out).await.is_err()
                {
                    return;
                }
            }
            Some(late) = late_rx.recv() => {
                if !muted && framed.send(late).await.is_err() { return; }
            }
            control = control.recv() => match control {
                Ok(Control::Push(kind)) => {
                    if framed.send(pb::ServerFrame::event(*kind)).await.is_err() { return; }
                }
                Ok(Control::DropAll) | Err(_) => return,
                Ok(Control::Revoke(id)) if id == session_id => {
                    stats.lock().unwrap().tokens.retain(|_, s| *s != id);
                    let kind = pb::event::Kind::SessionRevoked(pb::SessionRevoked { session_id: id });
                    let _ = framed.send(pb::ServerFrame::event(kind)).await;
                    return;
                }
                Ok(Control::Revoke(_)) => {}
                Ok(Control::Mute) => muted = true,
            },
        }
    }
}

/// The next event matching `want`, skipping others; panics after 5 s.
pub async fn wait_for(
    events: &mut broadcast::Receiver<ClientEvent>,
    want: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Ok(event) if want(&event) => return event,
                Ok(_) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}
