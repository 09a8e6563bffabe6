//! Where a call's audio comes from and where it goes.
//!
//! The app asks a [`CallAudio`] for a microphone and a speaker each time a
//! call starts. The desktop uses [`DeviceAudio`] (cpal devices, or silence
//! with a note on machines without any); the headless tests hand in their
//! own implementation with a synthetic tone, so a call runs the same code
//! with or without sound hardware.

use parley_media::device::{CpalInput, CpalOutput};
use parley_media::{AudioSink, AudioSource, Frame, MediaError, NullSink, SilenceSource, SourceStatus};

/// Any audio source a call can send.
pub struct Microphone(Box<dyn AudioSource + Send>);

impl Microphone {
    /// Wraps a source.
    pub fn new(source: impl AudioSource + Send + 'static) -> Microphone {
        Microphone(Box::new(source))
    }
}

impl AudioSource for Microphone {
    fn read_frame(&mut self, frame: &mut Frame) -> Result<SourceStatus, MediaError> {
        self.0.read_frame(frame)
    }
}

/// Any audio sink a call can play into.
pub struct Speaker(Box<dyn AudioSink + Send>);

impl Speaker {
    /// Wraps a sink.
    pub fn new(sink: impl AudioSink + Send + 'static) -> Speaker {
        Speaker(Box::new(sink))
    }
}

impl AudioSink for Speaker {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), MediaError> {
        self.0.write_frame(frame)
    }
}

/// A microphone and a speaker opened for one call.
pub struct OpenedAudio {
    /// What the other side hears.
    pub microphone: Microphone,
    /// Where the other side's voice plays.
    pub speaker: Speaker,
    /// Shown in the call window when something is missing (no device found).
    pub note: Option<String>,
}

/// Opens the audio of each call. `open` runs on a worker thread: opening a
/// device may take a while.
pub trait CallAudio: Send + Sync {
    /// Opens a microphone and a speaker, falling back to something silent
    /// rather than failing the call.
    fn open(&self) -> OpenedAudio;
}

/// The system's sound devices: the named ones, or the defaults.
#[derive(Debug, Clone, Default)]
pub struct DeviceAudio {
    /// Microphone name (`None`: the default one).
    pub microphone: Option<String>,
    /// Speaker name (`None`: the default one).
    pub speaker: Option<String>,
}

impl CallAudio for DeviceAudio {
    fn open(&self) -> OpenedAudio {
        let microphone = open_or_default(self.microphone.as_deref(), CpalInput::open);
        let speaker = open_or_default(self.speaker.as_deref(), CpalOutput::open);
        for e in [microphone.as_ref().err(), speaker.as_ref().err()]
            .into_iter()
            .flatten()
        {
            tracing::info!("call audio: {e}");
        }
        let note = match (microphone.is_ok(), speaker.is_ok()) {
            (true, true) => None,
            (false, true) => Some("No microphone found: the other side hears silence"),
            (true, false) => Some("No speaker found: you will not hear the other side"),
            (false, false) => Some("No sound devices found: the call carries silence"),
        }
        .map(str::to_string);
        OpenedAudio {
            microphone: microphone.map_or_else(|_| Microphone::new(SilenceSource), Microphone::new),
            speaker: speaker.map_or_else(|_| Speaker::new(NullSink::default()), Speaker::new),
            note,
        }
    }
}

/// Opens the named device; if it is gone (unplugged since it was chosen),
/// the default one.
fn open_or_default<T>(
    name: Option<&str>,
    open: impl Fn(Option<&str>) -> Result<T, MediaError>,
) -> Result<T, MediaError> {
    match name {
        Some(name) => open(Some(name)).or_else(|e| {
            tracing::info!("{e}; trying the default device");
            open(None)
        }),
        None => open(None),
    }
}

/// Names of the microphones and speakers (for the settings); empty lists on
/// machines without sound.
pub fn device_names() -> (Vec<String>, Vec<String>) {
    let names = |list: Result<Vec<parley_media::device::DeviceInfo>, MediaError>| {
        list.map(|l| l.into_iter().map(|d| d.name).collect())
            .unwrap_or_default()
    };
    (
        names(parley_media::device::input_devices()),
        names(parley_media::device::output_devices()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_media::FRAME_SAMPLES;

    #[test]
    fn a_missing_device_becomes_silence_with_a_note() {
        // Names nobody has: each side falls back to the default device, and
        // on a machine without one (CI) to silence.
        let audio = DeviceAudio {
            microphone: Some("no such microphone".into()),
            speaker: Some("no such speaker".into()),
        };
        let mut opened = audio.open();
        let has_microphone = CpalInput::open(None).is_ok();
        let has_speaker = CpalOutput::open(None).is_ok();
        assert_eq!(opened.note.is_none(), has_microphone && has_speaker);
        if !has_microphone {
            let mut frame = [1i16; FRAME_SAMPLES];
            let status = opened.microphone.read_frame(&mut frame).unwrap();
            assert_eq!(status, SourceStatus::Ready);
            assert!(frame.iter().all(|s| *s == 0));
        }
        opened.speaker.write_frame(&[0; FRAME_SAMPLES]).unwrap();
    }
}
