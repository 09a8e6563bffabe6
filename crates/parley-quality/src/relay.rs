//! An impairing UDP relay: clients send media to the relay's address as if it were the server's
//! media port, and the relay forwards each client's datagrams to the real relay port through a
//! socket of its own, so the server sees one distinct address per client.
//!
//! Every flow and direction has its own seeded [`Netem`] (str0m-netem: latency, jitter, random
//! or Gilbert-Elliot loss), so a run is reproducible packet for packet given the same arrival
//! order. By default only the server-to-client direction is impaired: the audio measured at a
//! callee then crossed exactly one impaired hop, and the configured loss is the end-to-end loss.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use str0m_netem::{Input, Netem, NetemConfig, Output};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Largest datagram the relay carries; media packets are far smaller.
const MAX_DATAGRAM: usize = 2048;
/// Packets waiting for a flow's emulator before new ones are dropped (a stalled task, not the
/// emulated network, would be dropping them, so it is counted apart).
const FLOW_QUEUE: usize = 1024;
/// Beyond this the emulator has nothing queued (it reports a far-future instant).
const IDLE_WAKE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What each direction of every flow does to packets.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Client to server; `None` passes packets straight through.
    pub uplink: Option<NetemConfig>,
    /// Server to client; `None` passes packets straight through.
    pub downlink: Option<NetemConfig>,
}

/// Packet counts of a relay, over all flows.
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub up_in: AtomicU64,
    pub up_out: AtomicU64,
    pub down_in: AtomicU64,
    pub down_out: AtomicU64,
    /// Dropped because a flow's queue was full (the harness, not the network, fell behind).
    pub overflow: AtomicU64,
}

/// A running relay; dropping it stops every task.
pub struct ImpairedRelay {
    local: SocketAddr,
    counters: Arc<RelayCounters>,
    task: JoinHandle<()>,
}

impl ImpairedRelay {
    /// Serves on `listen` (already bound) and forwards to `upstream`. Flow `n` (in order of
    /// first packet) seeds its emulators with `seed + 2n` and `seed + 2n + 1`.
    pub fn start(
        listen: UdpSocket,
        upstream: SocketAddr,
        impairment: Impairment,
        seed: u64,
    ) -> std::io::Result<Self> {
        let local = listen.local_addr()?;
        let counters = Arc::new(RelayCounters::default());
        let task = tokio::spawn(serve(
            Arc::new(listen),
            upstream,
            impairment,
            seed,
            counters.clone(),
        ));
        Ok(ImpairedRelay {
            local,
            counters,
            task,
        })
    }

    /// Where clients send.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Packet counts so far.
    pub fn counters(&self) -> &RelayCounters {
        &self.counters
    }
}

impl Drop for ImpairedRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Flow {
    uplink: mpsc::Sender<Vec<u8>>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Flow {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve(
    listen: Arc<UdpSocket>,
    upstream: SocketAddr,
    impairment: Impairment,
    seed: u64,
    counters: Arc<RelayCounters>,
) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, client)) = listen.recv_from(&mut buf).await else {
            continue;
        };
        counters.up_in.fetch_add(1, Ordering::Relaxed);
        if !flows.contains_key(&client) {
            let n = flows.len() as u64;
            match open_flow(&listen, client, upstream, impairment, seed + 2 * n, &counters).await {
                Ok(flow) => {
                    flows.insert(client, flow);
                }
                Err(e) => {
                    tracing::warn!(%client, error = %e, "relay flow not opened");
                    continue;
                }
            }
        }
        if let Some(flow) = flows.get(&client)
            && flow.uplink.try_send(buf[..len].to_vec()).is_err()
        {
            counters.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn open_flow(
    listen: &Arc<UdpSocket>,
    client: SocketAddr,
    upstream: SocketAddr,
    impairment: Impairment,
    seed: u64,
    counters: &Arc<RelayCounters>,
) -> std::io::Result<Flow> {
    let bind = SocketAddr::new(upstream.ip(), 0);
    let to_server = Arc::new(UdpSocket::bind(bind).await?);
    let (up_tx, up_rx) = mpsc::channel(FLOW_QUEUE);
    let (down_tx, down_rx) = mpsc::channel(FLOW_QUEUE);

    let up = tokio::spawn(emulate(
        up_rx,
        impairment.uplink.map(|c| c.seed(seed)),
        to_server.clone(),
        upstream,
        counters.clone(),
        Direction::Up,
    ));
    let down = tokio::spawn(emulate(
        down_rx,
        impairment.downlink.map(|c| c.seed(seed + 1)),
        listen.clone(),
        client,
        counters.clone(),
        Direction::Down,
    ));
    // The server's replies come back on this flow's own socket.
    let receive = tokio::spawn({
        let counters = counters.clone();
        async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let Ok((len, _)) = to_server.recv_from(&mut buf).await else {
                    continue;
                };
                counters.down_in.fetch_add(1, Ordering::Relaxed);
                if down_tx.try_send(buf[..len].to_vec()).is_err() {
                    counters.overflow.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    // The receive task ends with the downlink task's channel; abort both with the flow.
    let down = tokio::spawn(async move {
        let _ = down.await;
        receive.abort();
    });
    Ok(Flow {
        uplink: up_tx,
        tasks: [up, down],
    })
}

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
}

/// Moves one direction's packets through its emulator (or straight through) to `to`.
async fn emulate(
    mut rx: mpsc::Receiver<Vec<u8>>,
    config: Option<NetemConfig>,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    counters: Arc<RelayCounters>,
    direction: Direction,
) {
    let sent = |counters: &RelayCounters| match direction {
        Direction::Up => counters.up_out.fetch_add(1, Ordering::Relaxed),
        Direction::Down => counters.down_out.fetch_add(1, Ordering::Relaxed),
    };
    let Some(config) = config else {
        while let Some(packet) = rx.recv().await {
            let _ = socket.send_to(&packet, to).await;
            sent(&counters);
        }
        return;
    };
    let mut netem: Netem<Vec<u8>> = Netem::new(config);
    loop {
        while let Some(out) = netem.poll_output() {
            if let Output::Packet(packet) = out {
                let _ = socket.send_to(&packet, to).await;
                sent(&counters);
            }
        }
        // Asked afresh each turn: a packet that just arrived may be due before the one the
        // emulator last announced a timeout for.
        let due = netem.poll_timeout();
        let sleep = async {
            if due.saturating_duration_since(Instant::now()) < IDLE_WAKE {
                tokio::time::sleep_until(due.into()).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            packet = rx.recv() => match packet {
                Some(packet) => netem.handle_input(Input::Packet(Instant::now(), packet)),
                None => return,
            },
            () = sleep => netem.handle_input(Input::Timeout(Instant::now())),
        }
    }
}
