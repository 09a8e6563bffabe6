//! Files, images and avatars over the server's HTTPS side.
//!
//! `server` opens verified connections and reads answers, `upload` and
//! `download` run the resumable transfers, `json` maps the server's JSON to
//! protocol types. The [`Client`] methods here are the public face: uploads
//! return a [`pb::FileRef`] to put into a message, and `send_image` /
//! `send_file` do both steps.

mod download;
mod json;
mod server;
mod upload;

use std::path::Path;
use std::time::Duration;

use ::http::Method;
use bytes::Bytes;
use parley_proto::pb;
use serde_json::json;

use crate::client::Client;
use crate::error::ClientError;
use crate::outgoing::OutgoingMessage;
use server::{FileServer, read_body, read_error};
use upload::{Announcement, Source};

/// Attempts per transfer before a network error is final.
const MAX_ATTEMPTS: u32 = 5;
/// The largest thumbnail or avatar read into memory.
const MAX_IMAGE_BYTES: usize = 32 << 20;

/// Waits a little longer after each failure: 200 ms, 400 ms, … up to 3.2 s.
async fn pause_before_retry(failures: u32) {
    let ms = 100u64 << failures.min(5);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

impl Client {
    /// Uploads the file at `path` (resumably, in chunks read from disk) and
    /// returns its reference. The SHA-256 is computed first, so bytes the
    /// server already has are not sent again. `mime` defaults to a guess
    /// from the extension; `progress(sent, total)` is called as chunks are
    /// acknowledged. Network errors are retried a few times, resuming where
    /// the server says the upload stands.
    pub async fn upload_file(
        &self,
        path: &Path,
        mime: Option<&str>,
        progress: impl Fn(u64, u64) + Send + Sync,
    ) -> Result<pb::FileRef, ClientError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let (size, sha256) = upload::hash_file(path).await?;
        let announced = Announcement {
            mime: mime.map_or_else(|| upload::guess_mime(&name).to_string(), str::to_string),
            name,
            size,
            sha256,
        };
        upload::upload(self, announced, Source::Path(path.to_path_buf()), &progress).await
    }

    /// Uploads `bytes` under `name`; otherwise like [`Client::upload_file`].
    pub async fn upload_bytes(
        &self,
        name: &str,
        bytes: impl Into<Bytes>,
        mime: Option<&str>,
        progress: impl Fn(u64, u64) + Send + Sync,
    ) -> Result<pb::FileRef, ClientError> {
        let bytes = bytes.into();
        let announced = Announcement {
            name: name.to_string(),
            mime: mime.map_or_else(|| upload::guess_mime(name).to_string(), str::to_string),
            size: bytes.len() as u64,
            sha256: upload::hash_bytes(&bytes),
        };
        upload::upload(self, announced, Source::Memory(bytes), &progress).await
    }

    /// Downloads a file to `dest`, resuming a `dest.part` left by an earlier
    /// attempt, and verifies its SHA-256 before renaming it into place; on a
    /// mismatch the partial file is removed and [`ClientError::Integrity`]
    /// returned. `progress(received, total)` follows the bytes.
    ///
    /// The returned reference carries what the response said: id, size,
    /// MIME type, SHA-256 and the name the uploader gave (untrusted: never
    /// use it as a path without cleaning it); width and height are 0.
    pub async fn download_file(
        &self,
        file_id: i64,
        dest: &Path,
        progress: impl Fn(u64, u64) + Send + Sync,
    ) -> Result<pb::FileRef, ClientError> {
        let server = FileServer::of(self)?;
        download::download(&server, &format!("/v1/files/{file_id}"), file_id, dest, &progress).await
    }

    /// The thumbnail of an image file (JPEG or PNG bytes).
    pub async fn thumbnail(&self, file_id: i64) -> Result<Vec<u8>, ClientError> {
        self.get_small(&format!("/v1/files/{file_id}/thumbnail")).await
    }

    /// A user's avatar image.
    pub async fn avatar(&self, user_id: i64) -> Result<Vec<u8>, ClientError> {
        self.get_small(&format!("/v1/users/{user_id}/avatar")).await
    }

    /// Makes an uploaded image the logged-in user's avatar.
    pub async fn set_avatar(&self, file_id: i64) -> Result<(), ClientError> {
        let server = FileServer::of(self)?;
        let mut conn = server.connect().await?;
        let body = json!({ "file_id": file_id.to_string() });
        let response = conn
            .send(
                server.json_request(Method::PUT, "/v1/me/avatar", &body)?,
                server.timeout,
            )
            .await?;
        if !response.status().is_success() {
            return Err(read_error(response, server.timeout).await.1);
        }
        if let Some(user) = self.shared.session().user.as_mut() {
            user.avatar_file_id = file_id;
        }
        Ok(())
    }

    /// Uploads an image and sends it to a conversation with `caption`.
    pub async fn send_image(
        &self,
        conv_id: i64,
        path: &Path,
        caption: &str,
        progress: impl Fn(u64, u64) + Send + Sync,
    ) -> Result<pb::MessageAck, ClientError> {
        let file = self.upload_file(path, None, progress).await?;
        self.send(OutgoingMessage::file(
            conv_id,
            pb::MessageKind::Image,
            file.file_id,
            caption,
        ))
        .await
    }

    /// Uploads any file and sends it to a conversation with `caption`.
    pub async fn send_file(
        &self,
        conv_id: i64,
        path: &Path,
        caption: &str,
        progress: impl Fn(u64, u64) + Send + Sync,
    ) -> Result<pb::MessageAck, ClientError> {
        let file = self.upload_file(path, None, progress).await?;
        self.send(OutgoingMessage::file(
            conv_id,
            pb::MessageKind::File,
            file.file_id,
            caption,
        ))
        .await
    }

    /// A small download held in memory, with the usual retries.
    async fn get_small(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let server = FileServer::of(self)?;
        let mut failures = 0;
        loop {
            let attempt = async {
                let mut conn = server.connect().await?;
                let response = conn
                    .send(server.request(Method::GET, path, Bytes::new())?, server.timeout)
                    .await?;
                if !response.status().is_success() {
                    return Err(read_error(response, server.timeout).await.1);
                }
                read_body(response, MAX_IMAGE_BYTES, server.timeout).await
            };
            match attempt.await {
                Ok(bytes) => return Ok(bytes.to_vec()),
                Err(err) if err.is_transient() && failures + 1 < MAX_ATTEMPTS => {
                    failures += 1;
                    pause_before_retry(failures).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
}
