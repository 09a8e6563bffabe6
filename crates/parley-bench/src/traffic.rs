//! Message traffic over SDK clients: senders with a window of in-flight
//! `send`s and an optional rate, and receivers that check every pushed
//! message against what was sent.
//!
//! Each message text is `pb1 <sender> <n> <send time µs> xxx…`: the receiver
//! learns who sent it, which one it was (to find losses and duplicates) and
//! when it was sent (end-to-end latency on this process's monotonic clock).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::{StreamExt as _, stream};
use hdrhistogram::Histogram;
use parley_client::{Client, ClientEvent, OutgoingMessage, pb};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::report::{histogram, record};
use crate::sys::now_us;

/// Live counters, shared by every task (read by the progress line).
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    /// First deliveries of benchmark messages (duplicates not counted).
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    /// Events a receiver missed because it fell behind the SDK's event buffer.
    pub lagged: AtomicU64,
}

/// How senders pace themselves.
#[derive(Clone, Debug)]
pub struct Pace {
    /// In-flight sends per sender connection.
    pub pipeline: usize,
    /// Total messages per second over all senders, if limited.
    pub rate: Option<f64>,
    /// Stop sending at this instant, if set.
    pub deadline: Option<Instant>,
    /// Size of each message text in bytes.
    pub body_bytes: usize,
}

/// The key of one message: sender index and its number.
pub fn key(sender: u32, n: u32) -> u64 {
    (u64::from(sender) << 32) | u64::from(n)
}

/// The text of message `n` of `sender`, stamped `t_us`, padded to `len` bytes.
pub fn text(sender: u32, n: u32, t_us: u64, len: usize) -> String {
    let mut s = format!("pb1 {sender} {n} {t_us} ");
    while s.len() < len {
        s.push('x');
    }
    s
}

/// `(sender, n, t_us)` of a benchmark message text.
pub fn parse(text: &str) -> Option<(u32, u32, u64)> {
    let mut it = text.split(' ');
    if it.next()? != "pb1" {
        return None;
    }
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    ))
}

/// What one sender did.
pub struct Sent {
    pub ack_latency: Histogram<u64>,
    /// Numbers of the acked messages.
    pub acked: Vec<u32>,
    /// A few error messages, for the report.
    pub error_samples: Vec<String>,
}

/// Sends messages to `conv_id` until `budget` runs out or the deadline passes.
#[allow(clippy::too_many_arguments)]
pub async fn send_loop(
    sender: u32,
    senders: usize,
    client: Client,
    conv_id: i64,
    pace: Pace,
    budget: Arc<AtomicI64>,
    counters: Arc<Counters>,
) -> Sent {
    let interval = pace
        .rate
        .map(|r| Duration::from_secs_f64(senders as f64 / r.max(1e-3)));
    // Stagger the senders over one interval so a rate limit does not mean synchronized bursts.
    let start = Instant::now()
        + interval.map_or(Duration::ZERO, |iv| {
            iv.mul_f64(f64::from(sender) / senders as f64)
        });
    let deadline = pace.deadline;
    let ticks = stream::unfold(0u32, move |n| {
        let budget = budget.clone();
        async move {
            if let Some(iv) = interval {
                tokio::time::sleep_until(start + iv * n).await;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) || budget.fetch_sub(1, Relaxed) <= 0 {
                return None;
            }
            Some((n, n + 1))
        }
    });
    let out = Mutex::new(Sent {
        ack_latency: histogram(),
        acked: Vec::new(),
        error_samples: Vec::new(),
    });
    ticks
        .for_each_concurrent(pace.pipeline.max(1), |n| {
            let (client, counters, out) = (&client, &counters, &out);
            async move {
                let t0 = now_us();
                let msg = OutgoingMessage::text(conv_id, text(sender, n, t0, pace.body_bytes));
                counters.sent.fetch_add(1, Relaxed);
                let result = client.send(msg).await;
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(_) => {
                        record(&mut out.ack_latency, now_us().saturating_sub(t0));
                        out.acked.push(n);
                        counters.acked.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        counters.errors.fetch_add(1, Relaxed);
                        if out.error_samples.len() < 5 {
                            out.error_samples.push(e.to_string());
                        }
                    }
                }
            }
        })
        .await;
    out.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// What one receiving connection saw.
pub struct Received {
    /// Send → push latency of messages from other users.
    pub e2e: Histogram<u64>,
    /// Keys of the benchmark messages delivered (once each).
    pub seen: HashSet<u64>,
    pub duplicates: u64,
    pub lagged: u64,
    /// Typing notices received.
    pub typing: u64,
}

/// Records every benchmark message pushed to one connection until `stop`.
pub async fn receive_loop(
    mut rx: broadcast::Receiver<ClientEvent>,
    me: i64,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> Received {
    let mut r = Received {
        e2e: histogram(),
        seen: HashSet::new(),
        duplicates: 0,
        lagged: 0,
        typing: 0,
    };
    loop {
        let event = tokio::select! {
            biased;
            ev = rx.recv() => ev,
            _ = stop.cancelled() => match rx.try_recv() {
                Ok(ev) => Ok(ev),
                Err(_) => break,
            },
        };
        match event {
            Ok(ClientEvent::Server(pb::event::Kind::Message(m))) => {
                let Some((s, n, t)) = parse(&m.text) else { continue };
                if !r.seen.insert(key(s, n)) {
                    r.duplicates += 1;
                    counters.duplicates.fetch_add(1, Relaxed);
                    continue;
                }
                counters.delivered.fetch_add(1, Relaxed);
                if m.sender_id != me {
                    record(&mut r.e2e, now_us().saturating_sub(t));
                }
            }
            Ok(ClientEvent::Server(pb::event::Kind::Typing(_))) => {
                r.typing += 1;
                counters.delivered.fetch_add(1, Relaxed);
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(k)) => {
                r.lagged += k;
                counters.lagged.fetch_add(k, Relaxed);
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        let t = text(7, 42, 123_456, 100);
        assert_eq!(t.len(), 100);
        assert_eq!(parse(&t), Some((7, 42, 123_456)));
        assert_eq!(parse("hello there"), None);
        // Shorter than the header: never truncated.
        assert_eq!(parse(&text(1, 2, 3, 1)), Some((1, 2, 3)));
        assert_ne!(key(1, 2), key(2, 1));
    }
}
