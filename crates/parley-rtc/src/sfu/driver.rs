//! The tokio task that owns the relay's socket and feeds [`SfuCore`].

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};

use super::{Command, SfuConfig, SfuCore, SfuEvent, SfuHandle};

/// Datagrams read back to back before timers and commands get a turn, so a flood
/// cannot starve them.
const READ_BATCH: usize = 64;
/// Upper bound on a sleep, so a quiet relay still notices dead legs.
const MAX_IDLE: Duration = Duration::from_millis(500);
const EVENT_BUFFER: usize = 1024;

pub(super) fn start(config: SfuConfig) -> io::Result<SfuHandle> {
    let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let std_socket = std::net::UdpSocket::bind(config.bind)?;
    std_socket.set_nonblocking(true)?;
    let local_addr = std_socket.local_addr()?;
    let candidates = advertised(&config, local_addr)?;

    let offer_limits = (config.max_offer_bytes, config.max_media_lines);
    let (commands, command_rx) = mpsc::channel(config.command_queue.max(1));
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let core = SfuCore::new(config, candidates.clone());
    let events_tx = events.clone();
    let _guard = runtime.enter();
    let socket = UdpSocket::from_std(std_socket)?;
    runtime.spawn(run(socket, core, command_rx, events_tx));
    tracing::info!(%local_addr, ?candidates, "media relay listening");
    Ok(SfuHandle {
        commands,
        events,
        local_addr,
        candidates,
        offer_limits,
    })
}

fn advertised(config: &SfuConfig, local: SocketAddr) -> io::Result<Vec<SocketAddr>> {
    if config.public_ips.is_empty() {
        if local.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a media relay bound to a wildcard address needs public_ips to advertise",
            ));
        }
        return Ok(vec![local]);
    }
    Ok(config
        .public_ips
        .iter()
        .map(|ip| SocketAddr::new(*ip, local.port()))
        .collect())
}

async fn run(
    socket: UdpSocket,
    mut core: SfuCore,
    mut commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<SfuEvent>,
) {
    let mut buf = vec![0u8; crate::MAX_DATAGRAM + 1];
    loop {
        while let Some(out) = core.poll_transmit() {
            if let Err(e) = socket.send_to(&out.contents, out.destination).await {
                tracing::debug!(destination = %out.destination, error = %e, "relay send failed");
            }
        }
        while let Some(event) = core.poll_event() {
            // No subscriber is fine: events are advisory.
            let _ = events.send(event);
        }
        let now = Instant::now();
        let deadline = core.next_timeout().unwrap_or(now + MAX_IDLE).min(now + MAX_IDLE);

        tokio::select! {
            cmd = commands.recv() => match cmd {
                None | Some(Command::Shutdown) => break,
                Some(cmd) => handle_command(&mut core, cmd),
            },
            readable = socket.readable() => {
                if readable.is_err() {
                    break;
                }
                for _ in 0..READ_BATCH {
                    match socket.try_recv_from(&mut buf) {
                        // A datagram that fills the buffer was truncated: the core
                        // sees it as oversized and drops it.
                        Ok((n, source)) => core.handle_datagram(Instant::now(), source, &buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // ICMP errors surface here on some platforms (connection reset
                        // on Windows); they concern one peer, not the socket.
                        Err(e) => {
                            tracing::debug!(error = %e, "relay receive error");
                            break;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => core.handle_timeout(Instant::now()),
        }
    }
    // Tell every client the call is over rather than letting ICE time out.
    core.close_all();
    while let Some(out) = core.poll_transmit() {
        let _ = socket.send_to(&out.contents, out.destination).await;
    }
    tracing::info!("media relay stopped");
}

fn handle_command(core: &mut SfuCore, cmd: Command) {
    let now = Instant::now();
    match cmd {
        Command::Join {
            call,
            participant,
            offer_sdp,
            reply,
        } => {
            let _ = reply.send(core.join(now, call, participant, &offer_sdp));
        }
        Command::Leave {
            call,
            participant,
            reply,
        } => {
            let _ = reply.send(core.leave(call, participant));
        }
        Command::CloseCall { call, reply } => {
            let _ = reply.send(core.close_call(call));
        }
        Command::ParticipantStats {
            call,
            participant,
            reply,
        } => {
            let _ = reply.send(core.participant_stats(call, participant));
        }
        Command::Stats { reply } => {
            let _ = reply.send(core.stats());
        }
        Command::Shutdown => {}
    }
}
