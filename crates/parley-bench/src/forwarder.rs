//! Baseline (b): the smallest tokio program that does the in-memory part of
//! Parley's job — TLS, the same length-prefixed protobuf frames, and fan-out
//! of a notice to every other member of a group — and nothing else: no
//! accounts, no membership checks, no rate limits, no metrics.
//!
//! It runs as its own process (`parley-bench forwarder`, spawned by
//! `parley-bench typing`) so its CPU time is read from `/proc` exactly like the
//! server's. A connection joins a group by sending its first `SetTyping` for
//! it; every `SetTyping` is answered `Ok` and fanned out as a `TypingNotice`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use parley_proto::{FrameCodec, pb};
use pb::client_frame::Body as Req;
use pb::server_frame::Body as Resp;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::codec::{BytesCodec, FramedRead, FramedWrite};

/// Options of the hidden `parley-bench forwarder` subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct ForwarderArgs {
    /// Address to listen on; the chosen one is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Frames queued per connection before it counts as a slow reader (the server's default).
    #[arg(long, default_value_t = 256)]
    pub queue: usize,
}

type Members = Vec<(u64, mpsc::Sender<Bytes>)>;

#[derive(Default)]
struct Groups {
    by_conv: Mutex<HashMap<i64, Members>>,
    next_id: AtomicU64,
}

/// Serves until the process is killed. Prints the address and the certificate
/// fingerprint in the same form as `parley-server`.
pub async fn run(args: ForwarderArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let identity = parley_server::tls::load(&parley_server::TlsMode::SelfSigned, dir.path())?
        .ok_or_else(|| anyhow::anyhow!("no TLS identity"))?;
    let listener = TcpListener::bind(args.listen).await?;
    let mut out = tokio::io::stdout();
    let line = format!(
        "forwarder listening on {}\ncertificate sha256 fingerprint: {}\n",
        listener.local_addr()?,
        identity.fingerprint
    );
    out.write_all(line.as_bytes()).await?;
    out.flush().await?;
    let groups = Arc::new(Groups::default());
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, groups, queue) = (identity.acceptor.clone(), groups.clone(), args.queue);
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                serve(tls, groups, queue).await;
            }
        });
    }
}

fn encode(frame: &pb::ServerFrame) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    parley_proto::frame::encode_frame(frame, parley_proto::DEFAULT_MAX_FRAME_BYTES, &mut buf).ok()?;
    Some(buf.freeze())
}

async fn serve<S>(stream: S, groups: Arc<Groups>, queue: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let id = groups.next_id.fetch_add(1, Relaxed);
    let (read, write) = tokio::io::split(stream);
    let mut reader = FramedRead::new(
        read,
        FrameCodec::<pb::ClientFrame, pb::ServerFrame>::new(parley_proto::DEFAULT_MAX_FRAME_BYTES),
    );
    let (tx, mut rx) = mpsc::channel::<Bytes>(queue);
    // The writer: one flush per burst of queued frames, like the server's.
    let writer = tokio::spawn(async move {
        let mut sink = FramedWrite::new(write, BytesCodec::new());
        while let Some(first) = rx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if futures_util::SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
                return;
            }
        }
    });
    let mut joined = Vec::new();
    while let Some(Ok(frame)) = reader.next().await {
        let reply = match frame.body {
            Some(Req::Hello(_)) => Resp::Welcome(pb::Welcome {
                protocol_version: parley_proto::PROTOCOL_VERSION,
                server_name: "forwarder".into(),
                ..Default::default()
            }),
            Some(Req::Resume(_)) => Resp::LoggedIn(pb::LoggedIn::default()),
            Some(Req::Ping(p)) => Resp::Pong(pb::Pong { nonce: p.nonce }),
            Some(Req::SetTyping(t)) => {
                let notice = pb::ServerFrame::event(pb::event::Kind::Typing(pb::TypingNotice {
                    conv_id: t.conv_id,
                    user_id: id as i64,
                }));
                let Some(bytes) = encode(&notice) else { break };
                let mut by_conv = groups.by_conv.lock().unwrap_or_else(|p| p.into_inner());
                let members = by_conv.entry(t.conv_id).or_default();
                if !joined.contains(&t.conv_id) {
                    joined.push(t.conv_id);
                    members.push((id, tx.clone()));
                }
                for (other, queue) in members.iter() {
                    if *other != id {
                        // A full queue is a slow reader; the server would drop it, the baseline just skips.
                        let _ = queue.try_send(bytes.clone());
                    }
                }
                Resp::Ok(pb::Ok {})
            }
            _ => Resp::Ok(pb::Ok {}),
        };
        let Some(bytes) = encode(&pb::ServerFrame::reply(frame.request_id, reply)) else {
            break;
        };
        if tx.send(bytes).await.is_err() {
            break;
        }
    }
    {
        let mut by_conv = groups.by_conv.lock().unwrap_or_else(|p| p.into_inner());
        for conv in joined {
            if let Some(members) = by_conv.get_mut(&conv) {
                members.retain(|(other, _)| *other != id);
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}
