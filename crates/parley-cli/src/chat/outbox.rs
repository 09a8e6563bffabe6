//! The chat's outgoing work, done one job at a time in the background.
//!
//! Sends wait for the server's ack (and are resent across reconnects by the
//! SDK), uploads can take minutes; neither may stop incoming messages from
//! showing. So the chat hands jobs to this worker, which runs them in the
//! order typed — two lines typed quickly arrive in that order — and reports
//! progress and outcomes back.

use std::path::PathBuf;
use std::sync::Arc;

use parley_client::{Client, OutgoingMessage, pb};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::messages::{free_name, safe_file_name};
use crate::render::human_size;

/// Something the user asked for.
#[derive(Debug)]
pub enum Job {
    Text(String),
    Upload { path: PathBuf, kind: pb::MessageKind },
    Recall(i64),
    Edit(i64, String),
    Download(i64),
}

/// What the worker reports.
#[derive(Debug)]
pub enum Report {
    /// A message was stored (its line appears when the event arrives).
    Sent(pb::MessageAck),
    /// Something worth a line: an error or a finished download.
    Note(String),
    /// What is going on now, for the prompt's status; empty when idle.
    Status(String),
}

/// Starts the worker for conversation `conv_id`.
pub fn start(
    client: Client,
    conv_id: i64,
) -> (
    mpsc::UnboundedSender<Job>,
    mpsc::UnboundedReceiver<Report>,
    JoinHandle<()>,
) {
    let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
    let (tx, reports) = mpsc::unbounded_channel();
    let worker = tokio::spawn(async move {
        while let Some(job) = queue.recv().await {
            run(&client, conv_id, job, &tx).await;
            if queue.is_empty() {
                let _ = tx.send(Report::Status(String::new()));
            }
        }
    });
    (jobs, reports, worker)
}

async fn run(client: &Client, conv_id: i64, job: Job, tx: &mpsc::UnboundedSender<Report>) {
    let status = |text: String| {
        let _ = tx.send(Report::Status(text));
    };
    let note = |text: String| {
        let _ = tx.send(Report::Note(text));
    };
    let sent = |ack| {
        let _ = tx.send(Report::Sent(ack));
    };
    match job {
        Job::Text(text) => {
            status("sending…".into());
            match client.send(OutgoingMessage::text(conv_id, text)).await {
                Ok(ack) => sent(ack),
                Err(err) => note(format!("! not sent: {err}")),
            }
        }
        Job::Upload { path, kind } => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let label = Arc::new(name.clone());
            let progress_tx = tx.clone();
            let progress = move |done: u64, total: u64| {
                let percent = (done * 100).checked_div(total).unwrap_or(100);
                let _ = progress_tx.send(Report::Status(format!("uploading {label} {percent}%")));
            };
            let file = match client.upload_file(&path, None, progress).await {
                Ok(file) => file,
                Err(err) => return note(format!("! could not upload {}: {err}", path.display())),
            };
            status(format!("sending {name}…"));
            match client
                .send(OutgoingMessage::file(conv_id, kind, file.file_id, ""))
                .await
            {
                Ok(ack) => sent(ack),
                Err(err) => note(format!("! not sent: {err}")),
            }
        }
        Job::Recall(seq) => {
            if let Err(err) = client.recall(conv_id, seq).await {
                note(format!("! could not recall #{seq}: {err}"));
            }
        }
        Job::Edit(seq, text) => {
            if let Err(err) = client.edit(conv_id, seq, &text).await {
                note(format!("! could not edit #{seq}: {err}"));
            }
        }
        Job::Download(file_id) => {
            let dest = PathBuf::from(format!("parley-file-{file_id}"));
            let progress_tx = tx.clone();
            let progress = move |done: u64, total: u64| {
                let percent = (done * 100).checked_div(total).unwrap_or(100);
                let _ = progress_tx.send(Report::Status(format!("downloading {file_id} {percent}%")));
            };
            match client.download_file(file_id, &dest, progress).await {
                Ok(file) => {
                    let path = match free_name(&safe_file_name(&file.name, file_id)) {
                        Some(named) if std::fs::rename(&dest, &named).is_ok() => named,
                        _ => dest,
                    };
                    note(format!(
                        "saved {} ({}) to {}",
                        file.name,
                        human_size(file.size),
                        path.display()
                    ));
                }
                Err(err) => note(format!("! could not download file {file_id}: {err}")),
            }
        }
    }
}
