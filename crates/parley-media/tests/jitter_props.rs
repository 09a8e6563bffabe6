//! Properties of the jitter buffer under arbitrary and adversarial input, driven by a fake
//! decoder whose output can be traced back to packets.

use parley_media::{
    FRAME_SAMPLES, FrameDecoder, JitterBuffer, JitterConfig, MediaError, jitter::InsertOutcome,
};
use proptest::prelude::*;

/// Records what it was asked to decode; payloads carry a packet index in their first 4 bytes.
#[derive(Default)]
struct TraceDecoder {
    decoded: Vec<u32>,
    fec_for_next_of: Vec<u32>,
    concealed: usize,
}

fn id(payload: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    for (d, s) in b.iter_mut().zip(payload) {
        *d = *s;
    }
    u32::from_le_bytes(b)
}

impl FrameDecoder for TraceDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, MediaError> {
        if payload.len() == 3 {
            // Stands for a corrupt packet.
            return Err(MediaError::UnsupportedFormat("corrupt".into()));
        }
        self.decoded.push(id(payload));
        out.extend(std::iter::repeat_n(1, FRAME_SAMPLES));
        Ok(FRAME_SAMPLES)
    }

    fn decode_fec(&mut self, next: &[u8], samples: usize, out: &mut Vec<i16>) -> Result<usize, MediaError> {
        self.fec_for_next_of.push(id(next));
        out.extend(std::iter::repeat_n(2, samples));
        Ok(samples)
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<usize, MediaError> {
        self.concealed += 1;
        out.extend(std::iter::repeat_n(0, samples));
        Ok(samples)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert { seq: u16, ts: u32, payload_len: usize },
    Pull,
    Wait(u32),
}

fn chaos_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u16>(), any::<u32>(), 0usize..7_000).prop_map(|(seq, ts, payload_len)| Op::Insert {
            seq,
            ts,
            payload_len
        }),
        // Mostly near one another, like a real stream.
        6 => (0u16..80, 0u32..100, 1usize..300).prop_map(|(seq, ts, payload_len)| Op::Insert {
            seq: seq.wrapping_add(65_500),
            ts: ts.wrapping_mul(960).wrapping_add(u32::MAX - 20_000),
            payload_len
        }),
        6 => Just(Op::Pull),
        2 => (0u32..2_000_000).prop_map(Op::Wait),
    ]
}

/// A sender's stream through a network: per packet, lost or delayed (ms), maybe duplicated.
fn stream() -> impl Strategy<Value = (u16, u32, Vec<(bool, u32, bool)>)> {
    (
        any::<u16>(),
        any::<u32>(),
        prop::collection::vec(
            (prop::bool::weighted(0.15), 0u32..250, prop::bool::weighted(0.05)),
            50..600,
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded(ops in prop::collection::vec(chaos_op(), 0..400)) {
        let config = JitterConfig::default();
        let mut jb = JitterBuffer::new(config, TraceDecoder::default()).unwrap();
        let mut now = 0u64;
        let mut pulls = 0u64;
        let mut frame = [0i16; FRAME_SAMPLES];
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Insert { seq, ts, payload_len } => {
                    let mut payload = vec![0u8; payload_len];
                    for (d, s) in payload.iter_mut().zip((n as u32).to_le_bytes()) {
                        *d = s;
                    }
                    jb.insert(seq, ts, now, &payload);
                }
                Op::Pull => {
                    jb.pull(now, &mut frame);
                    pulls += 1;
                    now += 20_000;
                }
                Op::Wait(us) => now += u64::from(us),
            }
            prop_assert!(jb.buffered_packets() <= config.max_packets);
        }
        let stats = jb.stats();
        // Every pull produced exactly one 20 ms frame, played or silent.
        prop_assert_eq!(stats.frames_played + stats.silence_frames, pulls);
        prop_assert!(stats.target_delay_ms <= f64::from(config.max_delay_ms));
    }

    #[test]
    fn no_packet_plays_twice_and_playout_keeps_order((seq0, ts0, fates) in stream()) {
        let mut jb = JitterBuffer::new(JitterConfig::default(), TraceDecoder::default()).unwrap();
        // (arrival µs, packet index)
        let mut arrivals: Vec<(u64, u32)> = Vec::new();
        for (k, &(lost, delay_ms, dup)) in fates.iter().enumerate() {
            let sent = k as u64 * 20_000;
            if !lost {
                arrivals.push((sent + u64::from(delay_ms) * 1_000, k as u32));
                if dup {
                    arrivals.push((sent + u64::from(delay_ms) * 1_000 + 13_000, k as u32));
                }
            }
        }
        arrivals.sort();
        let mut next_arrival = 0;
        let mut frame = [0i16; FRAME_SAMPLES];
        let end = fates.len() as u64 * 20_000 + 1_000_000;
        let mut now = 5_000;
        while now < end {
            while next_arrival < arrivals.len() && arrivals[next_arrival].0 <= now {
                let (at, k) = arrivals[next_arrival];
                let seq = seq0.wrapping_add(k as u16);
                let ts = ts0.wrapping_add(k.wrapping_mul(960));
                let outcome = jb.insert(seq, ts, at, &k.to_le_bytes());
                prop_assert_ne!(outcome, InsertOutcome::Reset);
                next_arrival += 1;
            }
            jb.pull(now, &mut frame);
            now += 20_000;
        }
        let d = jb.decoder();
        // Played in sending order, each at most once.
        prop_assert!(d.decoded.windows(2).all(|w| w[0] < w[1]), "{:?}", d.decoded);
        // A frame rebuilt from FEC is never also decoded from its own packet.
        for next in &d.fec_for_next_of {
            prop_assert!(!d.decoded.contains(&next.wrapping_sub(1)));
        }
        let stats = jb.stats();
        prop_assert_eq!(stats.resets, 0);
        prop_assert_eq!(stats.normal_frames as usize, d.decoded.len());
    }
}

#[test]
fn corrupt_payload_is_concealed_and_counted() {
    let mut jb = JitterBuffer::new(JitterConfig::default(), TraceDecoder::default()).unwrap();
    let mut frame = [0i16; FRAME_SAMPLES];
    for k in 0..10u32 {
        let payload: Vec<u8> = if k == 5 {
            vec![9, 9, 9]
        } else {
            k.to_le_bytes().to_vec()
        };
        jb.insert(k as u16, k * 960, u64::from(k) * 20_000, &payload);
    }
    for k in 0..12u64 {
        jb.pull(200_000 + k * 20_000, &mut frame);
    }
    let stats = jb.stats();
    assert_eq!(stats.discarded_packets, 1);
    assert!(stats.concealed_frames >= 1);
}

#[test]
fn huge_sequence_jump_restarts_the_stream() {
    let mut jb = JitterBuffer::new(JitterConfig::default(), TraceDecoder::default()).unwrap();
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut now = 0;
    for k in 0..20u32 {
        jb.insert(k as u16, k * 960, now, &k.to_le_bytes());
        jb.pull(now, &mut frame);
        now += 20_000;
    }
    assert_eq!(jb.insert(30_000, 5, now, &[1, 2, 3, 4]), InsertOutcome::Reset);
    assert_eq!(jb.stats().resets, 1);
    // Old stream's stragglers are late, not a reason to restart again at once.
    assert_eq!(jb.insert(19, 19 * 960, now, &[5, 0, 0, 0]), InsertOutcome::Late);
    assert_eq!(jb.stats().resets, 1);
}

#[test]
fn speaker_change_with_continuous_sequence_numbers_is_not_jitter() {
    let mut jb = JitterBuffer::new(JitterConfig::default(), TraceDecoder::default()).unwrap();
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut max_target = 0.0f64;
    for k in 0..500u32 {
        // At packet 200 another speaker's stream, 3.7 s of timestamps behind, takes the line.
        let ts = if k < 200 {
            k * 960 + 1_000_000
        } else {
            k * 960 + 1_000_000 - 177_600
        };
        let now = u64::from(k) * 20_000;
        jb.insert(k as u16, ts, now, &k.to_le_bytes());
        jb.pull(now + 5_000, &mut frame);
        if k > 60 {
            max_target = max_target.max(jb.stats().target_delay_ms);
        }
    }
    let stats = jb.stats();
    assert!(max_target <= 30.0, "target rose to {max_target}");
    assert_eq!(stats.concealed_frames, 0);
}

#[test]
fn playout_timestamp_names_the_frame_just_played_across_the_wrap() {
    let mut jb = JitterBuffer::new(JitterConfig::default(), TraceDecoder::default()).unwrap();
    let mut frame = [0i16; FRAME_SAMPLES];
    // Starts just below the 32-bit wrap, so the timestamp wraps a few frames in.
    let base = u32::MAX - 5 * 960;
    assert_eq!(jb.playout_timestamp(), None);
    for k in 0..100u32 {
        let now = u64::from(k) * 20_000;
        jb.insert(k as u16, base.wrapping_add(k * 960), now, &k.to_le_bytes());
        jb.pull(now + 5_000, &mut frame);
        let Some(&last) = jb.decoder().decoded.last() else {
            assert_eq!(jb.playout_timestamp(), None, "nothing played yet at frame {k}");
            continue;
        };
        let played = jb.playout_timestamp().expect("playing");
        let expected = base.wrapping_add(last * 960);
        // Time-stretching may shift what is heard by up to one frame.
        let off = played.wrapping_sub(expected) as i32;
        assert!(off.abs() <= 960, "frame {k}: {played} vs {expected}");
    }
}

#[test]
fn extra_delay_raises_the_target_and_the_buffer_follows() {
    let mut jb = JitterBuffer::new(JitterConfig::default(), TraceDecoder::default()).unwrap();
    let mut frame = [0i16; FRAME_SAMPLES];
    let mut run = |jb: &mut JitterBuffer<TraceDecoder>, from: u32, to: u32| {
        for k in from..to {
            let now = u64::from(k) * 20_000;
            jb.insert(k as u16, k * 960, now, &k.to_le_bytes());
            jb.pull(now + 5_000, &mut frame);
        }
    };
    run(&mut jb, 0, 200);
    let before = jb.stats();
    jb.set_extra_delay_ms(100);
    run(&mut jb, 200, 400);
    let after = jb.stats();
    // The buffer keeps its level between three quarters of the target and the target, so
    // it moves by at least three quarters of the extra delay.
    assert!(
        (after.target_delay_ms - before.target_delay_ms - 100.0).abs() < 1.0,
        "target {} -> {}",
        before.target_delay_ms,
        after.target_delay_ms
    );
    assert!(
        after.filtered_delay_ms >= before.filtered_delay_ms + 60.0,
        "buffer {} -> {}",
        before.filtered_delay_ms,
        after.filtered_delay_ms
    );
    // Back to none: the buffer shrinks again.
    jb.set_extra_delay_ms(0);
    run(&mut jb, 400, 700);
    assert!(jb.stats().filtered_delay_ms <= before.filtered_delay_ms + 20.0);
    assert_eq!(jb.stats().concealed_frames, 0);
}
