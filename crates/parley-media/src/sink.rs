//! Where received PCM goes: a WAV recording, memory (tests), nowhere, or (in [`crate::device`])
//! a speaker. Sinks take whole 20 ms frames at 48 kHz mono.

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
};

use crate::{Frame, MediaError, SAMPLE_RATE};

/// A consumer of 20 ms frames of 48 kHz mono PCM.
pub trait AudioSink {
    /// Takes the next 20 ms of audio.
    fn write_frame(&mut self, frame: &Frame) -> Result<(), MediaError>;
}

/// Discards everything, counting frames.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink {
    /// Frames written so far.
    pub frames: u64,
}

impl AudioSink for NullSink {
    fn write_frame(&mut self, _frame: &Frame) -> Result<(), MediaError> {
        self.frames += 1;
        Ok(())
    }
}

/// Keeps what it is given in memory, up to a limit, for analysis in tests and the quality
/// harness.
#[derive(Debug, Clone)]
pub struct MemorySink {
    samples: Vec<i16>,
    max_samples: usize,
    dropped_frames: u64,
}

impl MemorySink {
    /// Keeps at most `max_seconds` of audio; later frames are counted and dropped.
    pub fn new(max_seconds: u32) -> Self {
        Self {
            samples: Vec::new(),
            max_samples: max_seconds as usize * SAMPLE_RATE as usize,
            dropped_frames: 0,
        }
    }

    /// Everything recorded so far.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Frames that did not fit under the limit.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }
}

impl AudioSink for MemorySink {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), MediaError> {
        if self.samples.len() + frame.len() > self.max_samples {
            self.dropped_frames += 1;
        } else {
            self.samples.extend_from_slice(frame);
        }
        Ok(())
    }
}

/// Records to a 16-bit 48 kHz mono WAV file. Call [`WavSink::finish`] to write the header's
/// final length; dropping without it leaves a file most players still read.
pub struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
}

impl std::fmt::Debug for WavSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSink")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl WavSink {
    /// Creates (or truncates) `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, MediaError> {
        let path = path.as_ref().to_path_buf();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&path, spec).map_err(|source| MediaError::Wav {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            writer: Some(writer),
        })
    }

    /// Flushes and closes the file.
    pub fn finish(mut self) -> Result<(), MediaError> {
        match self.writer.take() {
            Some(writer) => writer.finalize().map_err(|source| MediaError::Wav {
                path: self.path.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

impl AudioSink for WavSink {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), MediaError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(MediaError::InvalidConfig(format!(
                "{} is already closed",
                self.path.display()
            )));
        };
        for &sample in frame {
            writer.write_sample(sample).map_err(|source| MediaError::Wav {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}
