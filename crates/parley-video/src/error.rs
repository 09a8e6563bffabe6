//! The crate's one error type: every fallible call returns something a caller can show.

/// What went wrong in the video engine.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// OpenH264 refused a call (bad setting, encoder failure).
    #[error("H.264 codec: {0}")]
    Codec(String),
    /// An access unit could not be decoded: corrupt, truncated or not H.264 at all. The decoder
    /// needs a keyframe before it can produce pictures again.
    #[error("undecodable H.264 access unit: {0}")]
    Corrupt(String),
    /// A setting is outside its allowed range.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// A picture has a shape this engine does not handle (odd size, wrong plane lengths).
    #[error("invalid picture: {0}")]
    InvalidFrame(String),
    /// A camera could not be found, opened or kept running.
    #[error("camera: {0}")]
    Camera(String),
}
