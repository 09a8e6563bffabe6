//! Group commit: every new message from every connection goes through one
//! writer task that commits them in batches.
//!
//! A commit costs one fsync however many rows it carries, so under load the
//! queue fills while the previous batch commits and the next transaction takes
//! them all. Each sender's ack is queued only after its batch committed, then
//! the batch is fanned out to every member's devices in seq order (one task,
//! so per-conversation order on every connection is commit order).

use std::sync::Arc;

use parley_proto::pb::{self, server_frame::Body as Resp};
use parley_store::{Appended, NewMessage, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::hub::Outbound;
use crate::service::{Ctx, now_ms};

/// Where the outcome of one message goes.
pub enum AckTo {
    /// Queue a `MessageAck` (or an error) for `request_id` on this connection,
    /// in a queue slot reserved when the message was accepted, so a client that
    /// pipelines many sends is never mistaken for a slow reader by its own acks.
    Connection {
        request_id: u64,
        slot: mpsc::OwnedPermit<Outbound>,
    },
    /// Hand the result back in-process (system notices, call records).
    Caller(oneshot::Sender<Result<Appended, String>>),
}

/// One message waiting for its batch.
pub struct Job {
    pub msg: NewMessage,
    pub ack: AckTo,
}

/// The sending side of the writer task.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

/// The receiving side, consumed by [`run`].
pub struct CommitQueue {
    rx: mpsc::Receiver<Job>,
}

impl Committer {
    /// A committer with room for `capacity` waiting messages.
    pub fn new(capacity: usize) -> (Committer, CommitQueue) {
        let (tx, rx) = mpsc::channel(capacity);
        (Committer { tx }, CommitQueue { rx })
    }

    /// Queues a message; waits for room when the writer is saturated (back-pressure).
    pub async fn submit(&self, job: Job) -> Result<(), Job> {
        self.tx.send(job).await.map_err(|e| e.0)
    }

    /// Commits `msg` and returns its seq, for messages the server writes itself.
    pub async fn append(&self, msg: NewMessage) -> Result<Appended, String> {
        let (tx, rx) = oneshot::channel();
        self.submit(Job {
            msg,
            ack: AckTo::Caller(tx),
        })
        .await
        .map_err(|_| "message writer stopped".to_string())?;
        rx.await.map_err(|_| "message writer stopped".to_string())?
    }
}

/// A committed batch on its way to the members' devices.
type Committed = (Vec<NewMessage>, Vec<Appended>);

/// The writer loop: runs until shutdown, then commits what is already queued.
///
/// Fan-out runs in a second task fed in commit order, so the next transaction
/// is built and committed while the previous batch is still being pushed (the
/// two use different cores); per-conversation order is kept because both
/// stages are FIFO.
pub async fn run(ctx: Arc<Ctx>, mut queue: CommitQueue, shutdown: CancellationToken) {
    let (fan_tx, mut fan_rx) = mpsc::channel::<Committed>(4);
    let fan_ctx = ctx.clone();
    let fan = tokio::spawn(async move {
        while let Some((msgs, appended)) = fan_rx.recv().await {
            fan_out(&fan_ctx, &msgs, &appended).await;
        }
    });
    commit_loop(&ctx, &mut queue, &shutdown, &fan_tx).await;
    drop(fan_tx);
    let _ = fan.await;
}

async fn commit_loop(
    ctx: &Ctx,
    queue: &mut CommitQueue,
    shutdown: &CancellationToken,
    fan: &mpsc::Sender<Committed>,
) {
    let max = ctx.cfg.commit_batch;
    let mut jobs: Vec<Job> = Vec::with_capacity(max);
    loop {
        let first = tokio::select! {
            biased;
            job = queue.rx.recv() => job,
            _ = shutdown.cancelled() => queue.rx.try_recv().ok(),
        };
        let Some(first) = first else { return };
        jobs.push(first);
        while jobs.len() < max {
            match queue.rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if let Some(done) = commit_batch(ctx, &mut jobs).await {
            // Only fails when the fan-out task is gone, i.e. at shutdown.
            let _ = fan.send(done).await;
        }
        jobs.clear();
    }
}

async fn commit_batch(ctx: &Ctx, jobs: &mut Vec<Job>) -> Option<Committed> {
    let (msgs, acks): (Vec<NewMessage>, Vec<AckTo>) = jobs.drain(..).map(|j| (j.msg, j.ack)).unzip();
    metrics::histogram!("parley_commit_batch_size").record(msgs.len() as f64);
    let started = std::time::Instant::now();
    let result = ctx.store.append_messages(&msgs, now_ms()).await;
    metrics::histogram!("parley_commit_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(appended) => {
            for ((ack, m), a) in acks.into_iter().zip(&msgs).zip(&appended) {
                acknowledge(ctx, ack, m.conv_id, Ok(*a));
            }
            metrics::counter!("parley_messages_committed_total")
                .increment(appended.iter().filter(|a| !a.duplicate).count() as u64);
            Some((msgs, appended))
        }
        Err(e) => {
            // Nothing of the batch was committed; each sender gets an error and may retry
            // with the same client id, which stays safe.
            tracing::error!(error = %e, batch = msgs.len(), "message batch failed to commit");
            metrics::counter!("parley_commit_failures_total").increment(1);
            let text = match e {
                StoreError::NotFound => "no such conversation",
                _ => "message not stored; retry",
            };
            for (ack, m) in acks.into_iter().zip(&msgs) {
                acknowledge(ctx, ack, m.conv_id, Err(text.to_string()));
            }
            None
        }
    }
}

fn acknowledge(ctx: &Ctx, ack: AckTo, conv_id: i64, result: Result<Appended, String>) {
    match ack {
        AckTo::Caller(tx) => {
            let _ = tx.send(result);
        }
        AckTo::Connection { request_id, slot } => {
            let frame = match result {
                Ok(a) => pb::ServerFrame::reply(
                    request_id,
                    Resp::MessageAck(pb::MessageAck {
                        conv_id,
                        seq: a.seq,
                        message_id: a.id,
                        server_time_ms: a.created_at,
                        duplicate: a.duplicate,
                    }),
                ),
                Err(text) => {
                    pb::ServerFrame::error(request_id, pb::Error::new(pb::ErrorCode::Unavailable, text))
                }
            };
            if let Some(bytes) = ctx.hub.encode(&frame) {
                slot.send(Outbound::Frame(bytes));
            }
        }
    }
}

async fn fan_out(ctx: &Ctx, msgs: &[NewMessage], appended: &[Appended]) {
    for (m, a) in msgs.iter().zip(appended) {
        if a.duplicate {
            continue;
        }
        let members = match ctx.convs.get(&ctx.store, m.conv_id).await {
            Ok(Some(info)) => info,
            Ok(None) | Err(_) => {
                tracing::warn!(conv = m.conv_id, "members unknown; devices will catch up by sync");
                continue;
            }
        };
        let row = parley_store::MessageRow {
            conv_id: m.conv_id,
            seq: a.seq,
            id: a.id,
            sender_id: m.sender_id,
            client_msg_id: m.client_msg_id.clone(),
            kind: m.kind,
            body: m.body.clone(),
            file_id: m.file_id,
            target_seq: match &m.effect {
                parley_store::Effect::Edit { target_seq, .. }
                | parley_store::Effect::Recall { target_seq } => *target_seq,
                parley_store::Effect::None => 0,
            },
            created_at: a.created_at,
            edited_at: None,
            recalled_at: None,
        };
        let msg = crate::service::message_pb(ctx, &row).await;
        let frame = pb::ServerFrame::event(pb::event::Kind::Message(msg));
        if let Some(bytes) = ctx.hub.encode(&frame) {
            ctx.hub.push_encoded(&members.members, &bytes);
        }
    }
}
