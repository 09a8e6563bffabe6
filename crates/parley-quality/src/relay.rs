//! An impairing UDP relay: clients send media to the relay's address as if it were the server's
//! media port, and the relay forwards each client's datagrams to the real relay port through a
//! socket of its own, so the server sees one distinct address per client.
//!
//! Every flow and direction has its own seeded [`Netem`] (str0m-netem: latency, jitter, random
//! or Gilbert-Elliot loss, a rate-limited link), so a run is reproducible packet for packet
//! given the same arrival order. What a flow suffers is chosen by its client's IP address
//! (the harness binds caller and callee to different loopback addresses) and can be changed
//! while the call runs, for a bandwidth step.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use str0m_netem::{Input, Netem, NetemConfig, Output};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Largest datagram the relay carries; media packets are far smaller.
const MAX_DATAGRAM: usize = 2048;
/// Packets waiting for a flow's emulator before new ones are dropped (a stalled task, not the
/// emulated network, would be dropping them, so it is counted apart).
const FLOW_QUEUE: usize = 1024;
/// Beyond this the emulator has nothing queued (it reports a far-future instant).
const IDLE_WAKE: Duration = Duration::from_secs(3600);

/// What each direction of a flow does to packets; `None` passes them straight through.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Client to server.
    pub uplink: Option<NetemConfig>,
    /// Server to client.
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

/// The impairment of every client address, each behind a watch so running flows follow
/// changes.
struct Rules {
    by_ip: HashMap<IpAddr, watch::Sender<Impairment>>,
    default: watch::Sender<Impairment>,
}

impl Rules {
    fn for_ip(&self, ip: IpAddr) -> watch::Receiver<Impairment> {
        self.by_ip.get(&ip).unwrap_or(&self.default).subscribe()
    }
}

/// A running relay; dropping it stops every task.
pub struct ImpairedRelay {
    local: SocketAddr,
    counters: Arc<RelayCounters>,
    rules: Arc<Mutex<Rules>>,
    task: JoinHandle<()>,
}

impl ImpairedRelay {
    /// Serves on `listen` (already bound) and forwards to `upstream`; every client suffers
    /// `impairment` unless [`ImpairedRelay::set`] says otherwise for its IP. Flow `n` (in order
    /// of first packet) seeds its emulators with `seed + 2n` and `seed + 2n + 1`.
    pub fn start(
        listen: UdpSocket,
        upstream: SocketAddr,
        impairment: Impairment,
        seed: u64,
    ) -> std::io::Result<Self> {
        let local = listen.local_addr()?;
        let counters = Arc::new(RelayCounters::default());
        let rules = Arc::new(Mutex::new(Rules {
            by_ip: HashMap::new(),
            default: watch::Sender::new(impairment),
        }));
        let task = tokio::spawn(serve(
            Arc::new(listen),
            upstream,
            rules.clone(),
            seed,
            counters.clone(),
        ));
        Ok(ImpairedRelay {
            local,
            counters,
            rules,
            task,
        })
    }

    /// Sets what clients at `ip` suffer, for flows already open and flows to come. The
    /// emulators keep their queues, so packets in flight are not lost by the change.
    pub fn set(&self, ip: IpAddr, impairment: Impairment) {
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        match rules.by_ip.get(&ip) {
            Some(tx) => {
                tx.send_replace(impairment);
            }
            None => {
                rules.by_ip.insert(ip, watch::Sender::new(impairment));
            }
        }
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
    rules: Arc<Mutex<Rules>>,
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
            let rule = rules
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .for_ip(client.ip());
            match open_flow(&listen, client, upstream, rule, seed + 2 * n, &counters).await {
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
    rule: watch::Receiver<Impairment>,
    seed: u64,
    counters: &Arc<RelayCounters>,
) -> std::io::Result<Flow> {
    let bind = SocketAddr::new(upstream.ip(), 0);
    let to_server = Arc::new(UdpSocket::bind(bind).await?);
    let (up_tx, up_rx) = mpsc::channel(FLOW_QUEUE);
    let (down_tx, down_rx) = mpsc::channel(FLOW_QUEUE);

    let up = tokio::spawn(emulate(
        up_rx,
        Link {
            rule: rule.clone(),
            direction: Direction::Up,
            seed,
        },
        to_server.clone(),
        upstream,
        counters.clone(),
    ));
    let down = tokio::spawn(emulate(
        down_rx,
        Link {
            rule,
            direction: Direction::Down,
            seed: seed + 1,
        },
        listen.clone(),
        client,
        counters.clone(),
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// One direction of one flow: which half of the rule applies, and its seed.
struct Link {
    rule: watch::Receiver<Impairment>,
    direction: Direction,
    seed: u64,
}

impl Link {
    /// The emulator settings now; no impairment is an emulator that does nothing.
    fn config(&mut self) -> NetemConfig {
        let rule = *self.rule.borrow_and_update();
        let config = match self.direction {
            Direction::Up => rule.uplink,
            Direction::Down => rule.downlink,
        };
        config.unwrap_or_default().seed(self.seed)
    }
}

/// Moves one direction's packets through its emulator to `to`.
async fn emulate(
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut link: Link,
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    counters: Arc<RelayCounters>,
) {
    let direction = link.direction;
    let sent = |counters: &RelayCounters| match direction {
        Direction::Up => counters.up_out.fetch_add(1, Ordering::Relaxed),
        Direction::Down => counters.down_out.fetch_add(1, Ordering::Relaxed),
    };
    let mut netem: Netem<Vec<u8>> = Netem::new(link.config());
    // The rules outlive every flow; should they go first, the flow keeps its last settings.
    let mut watching = true;
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
            changed = link.rule.changed(), if watching => match changed {
                Ok(()) => netem.set_config(link.config()),
                Err(_) => watching = false,
            },
        }
    }
}
