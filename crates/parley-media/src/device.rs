//! Real microphones and speakers through cpal, behind the same [`AudioSource`] / [`AudioSink`]
//! traits as the synthetic ones, so the pipeline cannot tell them apart.
//!
//! Devices are opened at 48 kHz (every desktop audio stack offers it) in whatever channel count
//! and sample format (f32 or i16) the device prefers; capture is downmixed to mono and playback
//! copied to every channel. The audio callback and the caller meet in a short queue behind a
//! mutex: the lock is held for a copy of a few hundred samples, far below a callback period,
//! and the queue is capped so a stalled caller costs bounded latency, not memory.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use crate::{
    FRAME_SAMPLES, Frame, MediaError, SAMPLE_RATE, f32_to_i16, i16_to_f32,
    sink::AudioSink,
    source::{AudioSource, SourceStatus},
};

/// Most audio queued between a device callback and the caller (200 ms); older audio is dropped
/// so delay cannot build up.
const MAX_QUEUED: usize = 10 * FRAME_SAMPLES;

/// An audio device as the settings screen lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Name to show and to pass back to `open`.
    pub name: String,
    /// Whether it is the system default.
    pub is_default: bool,
}

fn device_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Device(e.to_string())
}

/// Microphones on the default host.
pub fn input_devices() -> Result<Vec<DeviceInfo>, MediaError> {
    list_devices(true)
}

/// Speakers on the default host.
pub fn output_devices() -> Result<Vec<DeviceInfo>, MediaError> {
    list_devices(false)
}

fn list_devices(input: bool) -> Result<Vec<DeviceInfo>, MediaError> {
    let host = cpal::default_host();
    let default = if input {
        host.default_input_device()
    } else {
        host.default_output_device()
    };
    let devices = if input {
        host.input_devices()
    } else {
        host.output_devices()
    }
    .map_err(device_err)?;
    Ok(devices
        .map(|d| DeviceInfo {
            name: d.to_string(),
            is_default: default.as_ref() == Some(&d),
        })
        .collect())
}

fn pick_config(
    ranges: impl Iterator<Item = cpal::SupportedStreamConfigRange>,
    name: &str,
) -> Result<cpal::SupportedStreamConfig, MediaError> {
    let mut usable: Vec<_> = ranges
        .filter(|r| {
            matches!(
                r.sample_format(),
                cpal::SampleFormat::F32 | cpal::SampleFormat::I16
            )
        })
        .filter_map(|r| r.try_with_sample_rate(SAMPLE_RATE))
        .collect();
    // Fewest channels first: mono needs no mixing.
    usable.sort_by_key(|c| c.channels());
    usable
        .into_iter()
        .next()
        .ok_or_else(|| MediaError::Device(format!("{name} offers no 48 kHz f32 or i16 format")))
}

/// Shared between a stream callback and its owner.
#[derive(Default)]
struct Shared {
    queue: VecDeque<i16>,
    error: Option<String>,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A panic elsewhere while holding the lock leaves plain sample data, still usable.
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What an open stream and its owner share, plus the stream itself (dropping it stops audio).
struct OpenStream {
    shared: Arc<Mutex<Shared>>,
    _stream: cpal::Stream,
    name: String,
}

impl std::fmt::Debug for OpenStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl OpenStream {
    fn start(stream: cpal::Stream, shared: Arc<Mutex<Shared>>, name: String) -> Result<Self, MediaError> {
        stream.play().map_err(device_err)?;
        Ok(Self {
            shared,
            _stream: stream,
            name,
        })
    }

    /// Runs `f` on the shared queue, first surfacing any error the callback reported.
    fn with_queue<T>(&self, f: impl FnOnce(&mut VecDeque<i16>) -> T) -> Result<T, MediaError> {
        let mut s = lock(&self.shared);
        if let Some(e) = s.error.take() {
            return Err(MediaError::Device(format!("{}: {e}", self.name)));
        }
        Ok(f(&mut s.queue))
    }
}

/// The device called `name` (or the default) for one direction, with a 48 kHz configuration.
fn find_device(
    input: bool,
    name: Option<&str>,
) -> Result<(cpal::Device, cpal::SupportedStreamConfig, String), MediaError> {
    let host = cpal::default_host();
    let what = if input { "microphone" } else { "speaker" };
    let device = match name {
        Some(name) => {
            let mut devices = if input {
                host.input_devices()
            } else {
                host.output_devices()
            }
            .map_err(device_err)?;
            devices.find(|d| d.to_string() == name)
        }
        None if input => host.default_input_device(),
        None => host.default_output_device(),
    };
    let device = device.ok_or_else(|| match name {
        Some(name) => MediaError::Device(format!("no {what} called {name:?}")),
        None => MediaError::Device(format!("no default {what}")),
    })?;
    let name = device.to_string();
    let ranges = if input {
        device
            .supported_input_configs()
            .map_err(device_err)?
            .collect::<Vec<_>>()
    } else {
        device
            .supported_output_configs()
            .map_err(device_err)?
            .collect::<Vec<_>>()
    };
    let config = pick_config(ranges.into_iter(), &name)?;
    Ok((device, config, name))
}

fn error_callback(shared: &Arc<Mutex<Shared>>) -> impl FnMut(cpal::Error) + Send + 'static {
    let shared = Arc::clone(shared);
    move |e: cpal::Error| lock(&shared).error = Some(e.to_string())
}

fn keep_newest(queue: &mut VecDeque<i16>) {
    let excess = queue.len().saturating_sub(MAX_QUEUED);
    queue.drain(..excess);
}

/// A microphone as an [`AudioSource`]. [`read_frame`](AudioSource::read_frame) never blocks:
/// it answers `NotReady` until 20 ms have been captured.
#[derive(Debug)]
pub struct CpalInput(OpenStream);

impl CpalInput {
    /// Opens the microphone called `name`, or the default one, and starts capturing.
    pub fn open(name: Option<&str>) -> Result<Self, MediaError> {
        let (device, supported, name) = find_device(true, name)?;
        let channels = usize::from(supported.channels()).max(1);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let push = {
            let shared = Arc::clone(&shared);
            move |mono: &mut dyn Iterator<Item = i16>| {
                let mut s = lock(&shared);
                s.queue.extend(mono);
                keep_newest(&mut s.queue);
            }
        };
        let stream = match supported.sample_format() {
            cpal::SampleFormat::F32 => device.build_input_stream::<f32, _, _>(
                supported.config(),
                move |data, _| {
                    push(
                        &mut data
                            .chunks(channels)
                            .map(|c| f32_to_i16(c.iter().sum::<f32>() / c.len() as f32)),
                    )
                },
                error_callback(&shared),
                None,
            ),
            _ => device.build_input_stream::<i16, _, _>(
                supported.config(),
                move |data, _| {
                    push(
                        &mut data
                            .chunks(channels)
                            .map(|c| (c.iter().map(|&s| i32::from(s)).sum::<i32>() / c.len() as i32) as i16),
                    )
                },
                error_callback(&shared),
                None,
            ),
        }
        .map_err(device_err)?;
        OpenStream::start(stream, shared, name).map(Self)
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl AudioSource for CpalInput {
    fn read_frame(&mut self, frame: &mut Frame) -> Result<SourceStatus, MediaError> {
        self.0.with_queue(|queue| {
            if queue.len() < FRAME_SAMPLES {
                return SourceStatus::NotReady;
            }
            for (dst, src) in frame.iter_mut().zip(queue.drain(..FRAME_SAMPLES)) {
                *dst = src;
            }
            SourceStatus::Ready
        })
    }
}

/// A speaker as an [`AudioSink`]. Frames are queued for the device callback, which plays
/// silence when the queue runs dry.
#[derive(Debug)]
pub struct CpalOutput(OpenStream);

impl CpalOutput {
    /// Opens the speaker called `name`, or the default one, and starts playback.
    pub fn open(name: Option<&str>) -> Result<Self, MediaError> {
        let (device, supported, name) = find_device(false, name)?;
        let channels = usize::from(supported.channels()).max(1);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let cb_shared = Arc::clone(&shared);
        let stream = match supported.sample_format() {
            cpal::SampleFormat::F32 => device.build_output_stream::<f32, _, _>(
                supported.config(),
                move |data, _| {
                    let mut s = lock(&cb_shared);
                    for frame in data.chunks_mut(channels) {
                        frame.fill(i16_to_f32(s.queue.pop_front().unwrap_or(0)));
                    }
                },
                error_callback(&shared),
                None,
            ),
            _ => device.build_output_stream::<i16, _, _>(
                supported.config(),
                move |data, _| {
                    let mut s = lock(&cb_shared);
                    for frame in data.chunks_mut(channels) {
                        frame.fill(s.queue.pop_front().unwrap_or(0));
                    }
                },
                error_callback(&shared),
                None,
            ),
        }
        .map_err(device_err)?;
        OpenStream::start(stream, shared, name).map(Self)
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Audio queued but not yet played, in samples; the caller can pace pulls on it.
    pub fn queued_samples(&self) -> usize {
        lock(&self.0.shared).queue.len()
    }
}

impl AudioSink for CpalOutput {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), MediaError> {
        self.0.with_queue(|queue| {
            queue.extend(frame.iter().copied());
            keep_newest(queue);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_devices_never_panics() {
        // Machines without sound hardware (CI) answer with an empty list or an error.
        let _ = input_devices();
        let _ = output_devices();
        assert!(CpalInput::open(Some("no such microphone, surely")).is_err());
    }
}
