//! The crate's one error type: every fallible call returns something a caller can show.

use std::path::PathBuf;

/// What went wrong in the audio engine.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// libopus refused a call (bad setting, corrupt packet, encoder failure).
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// A WAV file could not be read or written.
    #[error("WAV file {path}: {source}")]
    Wav {
        /// The file involved.
        path: PathBuf,
        /// What hound reported.
        source: hound::Error,
    },
    /// The audio has a shape this engine does not handle (rate, channels, sample format).
    #[error("unsupported audio format: {0}")]
    UnsupportedFormat(String),
    /// A setting is outside its allowed range.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// An audio device could not be found, opened or kept running.
    #[error("audio device: {0}")]
    Device(String),
}
