//! Avatars: `PUT`/`DELETE /v1/me/avatar` set or clear the caller's picture (an image file
//! they uploaded), and `GET /v1/users/{id}/avatar` serves any user's avatar thumbnail to any
//! logged-in user.
//!
//! Profiles are readable by every user (SPEC §7), so the avatar is too — but only its
//! thumbnail, through this endpoint; the original stays under the file's own access rule.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::auth::Authed;
use super::download::serve_thumbnail;
use super::{ApiError, Files, json, parse_id, read_json};

/// A file id as a JSON string (the documented form) or number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdJson {
    Text(String),
    Number(i64),
}

/// Body of `PUT /v1/me/avatar`.
#[derive(Debug, Deserialize)]
struct SetAvatar {
    file_id: IdJson,
}

/// `PUT /v1/me/avatar`: `{"file_id": "…"}`, an image the caller uploaded.
pub async fn set(State(files): State<Arc<Files>>, auth: Authed, body: Body) -> Result<Response, ApiError> {
    let req: SetAvatar = read_json(body, 4096).await?;
    let file_id = match req.file_id {
        IdJson::Text(s) => parse_id(s.trim(), "file")?,
        IdJson::Number(n) => parse_id(&n.to_string(), "file")?,
    };
    let file = match files.ctx.store.file(file_id).await? {
        Some(f) if f.uploader_id == auth.user_id => f,
        _ => return Err(ApiError::not_found("file")),
    };
    if file.width <= 0 || file.thumb_sha256.is_none() {
        return Err(ApiError::bad("not_an_image", "an avatar must be an image"));
    }
    files.ctx.store.set_avatar(auth.user_id, Some(file.id)).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "avatar_file_id": file.id.to_string() }),
    ))
}

/// `DELETE /v1/me/avatar`.
pub async fn clear(State(files): State<Arc<Files>>, auth: Authed) -> Result<Response, ApiError> {
    files.ctx.store.set_avatar(auth.user_id, None).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "avatar_file_id": null }),
    ))
}

/// `GET /v1/users/{id}/avatar`: the thumbnail of that user's avatar.
pub async fn get(
    State(files): State<Arc<Files>>,
    _auth: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user_id = parse_id(&id, "user")?;
    let user = files
        .ctx
        .store
        .user_by_id(user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    let file_id = user.avatar_file_id.ok_or_else(|| ApiError::not_found("avatar"))?;
    let file = files
        .ctx
        .store
        .file(file_id)
        .await?
        .ok_or_else(|| ApiError::not_found("avatar"))?;
    serve_thumbnail(&files, &file, &headers).await
}
