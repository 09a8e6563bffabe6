//! The group receiver: several encoded streams on their receive slots, one jitter buffer and
//! decoder each, mixed into one sink; voices that change hands or stop.

use parley_media::{
    AudioReceiver, AudioSender, EncodedFrame, FRAME_SAMPLES, FRAME_US, GroupReceiver, JitterConfig,
    MemorySink, ToneSource, analysis::tone_amplitudes,
};

const TONES: [f64; 3] = [440.0, 660.0, 880.0];

fn sender(hz: f64, initial_timestamp: u32) -> AudioSender<ToneSource> {
    let tone = ToneSource::new(hz, 0.2).unwrap();
    AudioSender::new(tone, parley_media::EncoderConfig::default(), initial_timestamp).unwrap()
}

fn next(sender: &mut AudioSender<ToneSource>) -> EncodedFrame {
    sender.next_frame().unwrap().unwrap()
}

fn amplitudes(samples: &[i16]) -> Vec<f64> {
    tone_amplitudes(samples, &TONES)
}

#[test]
fn two_voices_are_mixed_into_one_recording() {
    let mut receiver = GroupReceiver::new(JitterConfig::default(), 7, MemorySink::new(10)).unwrap();
    let mut a = sender(440.0, 1_000);
    let mut c = sender(880.0, 77_000);
    for k in 0..150u64 {
        let (fa, fc) = (next(&mut a), next(&mut c));
        let now = k * FRAME_US;
        receiver
            .insert(0, Some(1), k as u16, fa.rtp_timestamp, now, &fa.payload)
            .unwrap();
        // The second voice is on another slot, with its own sequence and clock.
        receiver
            .insert(
                3,
                Some(2),
                (k + 9_000) as u16,
                fc.rtp_timestamp,
                now + 3_000,
                &fc.payload,
            )
            .unwrap();
        receiver.pull(now + 5_000).unwrap();
    }
    let voices = receiver.voices();
    assert_eq!(
        voices.iter().map(|v| (v.slot, v.source_id)).collect::<Vec<_>>(),
        vec![(0, Some(1)), (3, Some(2))]
    );
    assert!(voices.iter().all(|v| v.level > 0.05), "{voices:?}");
    let stats = receiver.stats();
    assert_eq!(stats.packets_received, 300);
    assert_eq!(stats.concealed_frames, 0, "{stats:?}");
    assert_eq!(
        stats.frames_played,
        voices[0].receive.frames_played + voices[1].receive.frames_played
    );

    let out = receiver.sink().samples();
    assert_eq!(
        out.len(),
        150 * FRAME_SAMPLES,
        "one frame per pull, whatever the voices"
    );
    let amps = amplitudes(&out[50 * FRAME_SAMPLES..]);
    println!("440/660/880 Hz amplitudes: {amps:?}");
    assert!(amps[0] > 3_000.0 && amps[2] > 3_000.0, "{amps:?}");
    assert!(amps[1] < amps[0] / 20.0, "{amps:?}");
}

#[test]
fn one_slot_plays_exactly_what_a_single_receiver_plays() {
    let mut group = GroupReceiver::new(JitterConfig::default(), 1, MemorySink::new(10)).unwrap();
    let mut single = AudioReceiver::new(JitterConfig::default(), MemorySink::new(10)).unwrap();
    let mut a = sender(440.0, 5);
    for k in 0..120u64 {
        let f = next(&mut a);
        // A lost packet and a late one, so concealment and FEC take part too.
        if k != 40 && k != 70 {
            group
                .insert(0, Some(4), k as u16, f.rtp_timestamp, k * FRAME_US, &f.payload)
                .unwrap();
            single.insert(k as u16, f.rtp_timestamp, k * FRAME_US, &f.payload);
        }
        group.pull(k * FRAME_US + 5_000).unwrap();
        single.pull(k * FRAME_US + 5_000).unwrap();
    }
    assert_eq!(group.sink().samples(), single.sink().samples());
    assert_eq!(group.stats(), single.stats());
}

#[test]
fn a_slot_taken_over_by_someone_else_starts_afresh() {
    let mut receiver = GroupReceiver::new(JitterConfig::default(), 2, MemorySink::new(10)).unwrap();
    let mut a = sender(440.0, 0);
    let mut b = sender(660.0, 500_000);
    for k in 0..200u64 {
        let now = k * FRAME_US;
        // The relay keeps the slot's sequence numbers running across the change of speaker.
        let (source, frame) = if k < 100 {
            (Some(1), next(&mut a))
        } else {
            (Some(2), next(&mut b))
        };
        receiver
            .insert(1, source, k as u16, frame.rtp_timestamp, now, &frame.payload)
            .unwrap();
        receiver.pull(now + 5_000).unwrap();
        if k == 99 {
            assert_eq!(receiver.voices()[0].source_id, Some(1));
        }
    }
    let voices = receiver.voices();
    assert_eq!(voices.len(), 1);
    assert_eq!(voices[0].source_id, Some(2));
    assert_eq!(
        voices[0].receive.packets_received, 100,
        "the new voice starts from zero"
    );
    // The aggregate keeps what the first voice did.
    assert_eq!(receiver.stats().packets_received, 200);

    let out = receiver.sink().samples();
    let first = amplitudes(&out[40 * FRAME_SAMPLES..95 * FRAME_SAMPLES]);
    let second = amplitudes(&out[140 * FRAME_SAMPLES..195 * FRAME_SAMPLES]);
    assert!(first[0] > 10.0 * first[1], "{first:?}");
    assert!(second[1] > 10.0 * second[0], "{second:?}");
}

#[test]
fn a_voice_that_stops_stops_contributing() {
    let mut receiver = GroupReceiver::new(JitterConfig::default(), 3, MemorySink::new(20)).unwrap();
    let mut a = sender(440.0, 0);
    let mut c = sender(880.0, 0);
    for k in 0..400u64 {
        let now = k * FRAME_US;
        let fa = next(&mut a);
        receiver
            .insert(0, Some(1), k as u16, fa.rtp_timestamp, now, &fa.payload)
            .unwrap();
        // The second participant leaves after two seconds.
        if k < 100 {
            let fc = next(&mut c);
            receiver
                .insert(1, Some(2), k as u16, fc.rtp_timestamp, now, &fc.payload)
                .unwrap();
        }
        receiver.pull(now + 5_000).unwrap();
    }
    let voices = receiver.voices();
    assert_eq!(
        voices.iter().map(|v| v.source_id).collect::<Vec<_>>(),
        vec![Some(1)],
        "the silent voice is gone"
    );
    let stats = receiver.stats();
    assert!(stats.concealed_frames < 40, "{stats:?}");
    let out = receiver.sink().samples();
    let late = amplitudes(&out[200 * FRAME_SAMPLES..]);
    assert!(late[0] > 3_000.0, "{late:?}");
    assert!(late[2] < late[0] / 50.0, "{late:?}");
}

#[test]
fn silence_until_anyone_speaks_and_unknown_slots_are_refused() {
    let mut receiver = GroupReceiver::new(JitterConfig::default(), 2, MemorySink::new(1)).unwrap();
    for k in 0..10 {
        receiver.pull(k * FRAME_US).unwrap();
    }
    assert_eq!(receiver.sink().samples().len(), 10 * FRAME_SAMPLES);
    assert!(receiver.sink().samples().iter().all(|&s| s == 0));
    assert_eq!(receiver.stats().silence_frames, 10);

    let mut a = sender(440.0, 0);
    let f = next(&mut a);
    let outcome = receiver
        .insert(2, Some(1), 0, f.rtp_timestamp, 0, &f.payload)
        .unwrap();
    assert_eq!(outcome, parley_media::jitter::InsertOutcome::Discarded);
    assert_eq!(receiver.active_voices(), 0);
    assert!(GroupReceiver::new(JitterConfig::default(), 0, MemorySink::new(1)).is_err());
    assert!(GroupReceiver::new(JitterConfig::default(), 1_000, MemorySink::new(1)).is_err());
}
