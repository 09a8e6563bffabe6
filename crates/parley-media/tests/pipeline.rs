//! Sender and receiver pipelines, the codec's FEC and concealment, and WAV round trips.

use parley_media::{
    AudioReceiver, AudioSender, AudioSink, AudioSource, EncoderConfig, FRAME_SAMPLES, FRAME_US, FrameDecoder,
    JitterConfig, MemorySink, OpusDecoder, OpusEncoder, Playout, SilenceSource, SourceStatus, ToneSource,
    WavSink, WavSource,
    analysis::{dominant_frequency, frame_rms},
};

fn rms(x: &[i16]) -> f64 {
    frame_rms(x, x.len().max(1)).first().copied().unwrap_or(0.0)
}

#[test]
fn fec_rebuilds_a_lost_frame_far_better_than_concealment() {
    let mut tone = ToneSource::new(440.0, 0.5).unwrap();
    let mut encoder = OpusEncoder::new(EncoderConfig::default()).unwrap();
    let mut frame = [0i16; FRAME_SAMPLES];
    let packets: Vec<Vec<u8>> = (0..60)
        .map(|_| {
            tone.read_frame(&mut frame).unwrap();
            encoder.encode(&frame).unwrap()
        })
        .collect();

    // Lose packets 40 and 41 in two decoders: one repairs 41 from 42's FEC, one conceals.
    let mut with_fec = OpusDecoder::new().unwrap();
    let mut plc_only = OpusDecoder::new().unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for p in &packets[..40] {
        with_fec.decode(p, &mut a).unwrap();
        plc_only.decode(p, &mut b).unwrap();
    }
    with_fec.conceal(FRAME_SAMPLES, &mut a).unwrap();
    plc_only.conceal(FRAME_SAMPLES, &mut b).unwrap();
    let (fa, fb) = (a.len(), b.len());
    with_fec.decode_fec(&packets[42], FRAME_SAMPLES, &mut a).unwrap();
    plc_only.conceal(FRAME_SAMPLES, &mut b).unwrap();
    let fec_rms = rms(&a[fa..]);
    let plc_rms = rms(&b[fb..]);
    println!("second lost frame: FEC rms {fec_rms:.0}, PLC rms {plc_rms:.0}, tone rms ~11585");
    assert!(fec_rms > 2.0 * plc_rms, "FEC {fec_rms:.0} vs PLC {plc_rms:.0}");
}

#[test]
fn mute_sends_cheap_silence_and_keeps_the_timeline() {
    let tone = ToneSource::new(440.0, 0.5).unwrap();
    let mut sender = AudioSender::new(tone, EncoderConfig::default(), 1_000).unwrap();
    let mut receiver = AudioReceiver::new(JitterConfig::default(), MemorySink::new(10)).unwrap();
    let mut sizes = (0usize, 0usize);
    for k in 0..150u64 {
        sender.set_muted((50..100).contains(&k));
        let frame = sender.next_frame().unwrap().unwrap();
        assert_eq!(frame.rtp_timestamp, 1_000 + k as u32 * 960);
        if (60..100).contains(&k) {
            sizes.1 += frame.payload.len();
        } else if k < 50 {
            sizes.0 += frame.payload.len();
        }
        receiver.insert(k as u16, frame.rtp_timestamp, k * FRAME_US, &frame.payload);
        receiver.pull(k * FRAME_US + 5_000).unwrap();
    }
    let (talking, muted) = (sizes.0 as f64 / 50.0, sizes.1 as f64 / 40.0);
    println!("bytes per packet: talking {talking:.0}, muted {muted:.0}");
    assert!(muted < talking / 4.0);
    let stats = receiver.stats();
    assert_eq!(stats.concealed_frames, 0);
    let out = receiver.sink().samples();
    // Playout lags the sender by the buffer delay (< 10 frames): frames 70..90 are muted ones.
    assert!(rms(&out[70 * FRAME_SAMPLES..90 * FRAME_SAMPLES]) < 50.0);
    assert!(rms(&out[120 * FRAME_SAMPLES..140 * FRAME_SAMPLES]) > 5_000.0);
}

#[test]
fn bitrate_and_loss_settings_apply_and_are_checked() {
    let mut encoder = OpusEncoder::new(EncoderConfig::default()).unwrap();
    let mut tone = ToneSource::new(1_000.0, 0.5).unwrap();
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut bytes_at = |encoder: &mut OpusEncoder| {
        (0..50)
            .map(|_| {
                tone.read_frame(&mut frame).unwrap();
                encoder.encode(&frame).unwrap().len()
            })
            .sum::<usize>()
    };
    let high = bytes_at(&mut encoder);
    encoder.set_bitrate(12_000).unwrap();
    let low = bytes_at(&mut encoder);
    assert!(low * 2 < high, "12 kbit/s used {low} bytes, 32 kbit/s {high}");
    encoder.set_expected_loss(25).unwrap();
    assert_eq!(encoder.config().expected_loss_percent, 25);
    assert!(encoder.set_bitrate(1_000).is_err());
    assert!(encoder.set_expected_loss(101).is_err());
    assert!(
        OpusEncoder::new(EncoderConfig {
            complexity: 11,
            ..EncoderConfig::default()
        })
        .is_err()
    );
}

#[test]
fn garbage_payloads_are_concealed_not_fatal() {
    let mut receiver = AudioReceiver::new(JitterConfig::default(), MemorySink::new(10)).unwrap();
    let mut encoder = OpusEncoder::new(EncoderConfig::default()).unwrap();
    let mut tone = ToneSource::new(440.0, 0.5).unwrap();
    let mut frame = [0i16; FRAME_SAMPLES];
    for k in 0..100u64 {
        tone.read_frame(&mut frame).unwrap();
        let mut payload = encoder.encode(&frame).unwrap();
        if k % 10 == 5 {
            // An invalid TOC/frame-count combination: code 3 with zero frames.
            payload = vec![0xff, 0x00];
        }
        receiver.insert(k as u16, k as u32 * 960, k * FRAME_US, &payload);
        receiver.pull(k * FRAME_US + 5_000).unwrap();
    }
    let stats = receiver.stats();
    assert!(stats.discarded_packets >= 9, "{stats:?}");
    assert!(stats.concealed_frames >= 9);
}

#[test]
fn wav_round_trip_and_resampling() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.wav");
    let mut sink = WavSink::create(&path).unwrap();
    let mut tone = ToneSource::new(1_000.0, 0.5).unwrap();
    let mut frame = [0i16; FRAME_SAMPLES];
    for _ in 0..50 {
        tone.read_frame(&mut frame).unwrap();
        sink.write_frame(&frame).unwrap();
    }
    sink.finish().unwrap();
    let mut source = WavSource::open(&path, false).unwrap();
    assert_eq!(source.len_samples(), 50 * FRAME_SAMPLES);
    let mut read = Vec::new();
    while source.read_frame(&mut frame).unwrap() == SourceStatus::Ready {
        read.extend_from_slice(&frame);
    }
    assert_eq!(read.len(), 50 * FRAME_SAMPLES);
    assert!((dominant_frequency(&read).unwrap() - 1_000.0).abs() < 1.0);

    // A 44.1 kHz stereo float file comes out as 48 kHz mono at the same pitch.
    let path = dir.path().join("stereo.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..44_100 {
        let s = (i as f32 * std::f32::consts::TAU * 500.0 / 44_100.0).sin() * 0.4;
        writer.write_sample(s).unwrap();
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
    let source = WavSource::open(&path, true).unwrap();
    assert_eq!(source.len_samples(), 48_000);

    assert!(WavSource::open(dir.path().join("missing.wav"), false).is_err());
    std::fs::write(dir.path().join("junk.wav"), b"RIFF0000WAVEjunk").unwrap();
    assert!(WavSource::open(dir.path().join("junk.wav"), false).is_err());
}

#[test]
fn silence_source_and_startup_silence() {
    let mut sender = AudioSender::new(SilenceSource, EncoderConfig::default(), 0).unwrap();
    let mut receiver = AudioReceiver::new(JitterConfig::default(), MemorySink::new(1)).unwrap();
    assert_eq!(receiver.pull(0).unwrap(), Playout::Silence);
    let frame = sender.next_frame().unwrap().unwrap();
    receiver.insert(0, frame.rtp_timestamp, 0, &frame.payload);
    assert_eq!(receiver.stats().packets_received, 1);
}
