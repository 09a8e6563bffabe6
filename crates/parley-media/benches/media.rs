//! Per-frame costs of the audio path: Opus encode and decode of a 20 ms frame, and one jitter
//! buffer insert + pull (which includes a decode) on a steady and on a jittery stream, where
//! time-stretch correlation searches run.

use criterion::{Criterion, criterion_group, criterion_main};
use parley_media::{
    AudioSource, EncoderConfig, FRAME_SAMPLES, FrameDecoder, JitterBuffer, JitterConfig, OpusDecoder,
    OpusEncoder, ToneSource,
};

fn packets(n: usize) -> Vec<Vec<u8>> {
    let mut tone = ToneSource::new(440.0, 0.5).unwrap_or_else(|e| panic!("{e}"));
    let mut encoder = OpusEncoder::new(EncoderConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut frame = [0i16; FRAME_SAMPLES];
    (0..n)
        .map(|_| {
            let _ = tone.read_frame(&mut frame);
            encoder.encode(&frame).unwrap_or_default()
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let mut tone = ToneSource::new(440.0, 0.5).unwrap_or_else(|e| panic!("{e}"));
    let mut encoder = OpusEncoder::new(EncoderConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut frame = [0i16; FRAME_SAMPLES];
    let _ = tone.read_frame(&mut frame);
    c.bench_function("opus_encode_20ms", |b| b.iter(|| encoder.encode(&frame)));

    let pkts = packets(500);
    let mut decoder = OpusDecoder::new().unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::with_capacity(8 * FRAME_SAMPLES);
    let mut i = 0;
    c.bench_function("opus_decode_20ms", |b| {
        b.iter(|| {
            out.clear();
            i = (i + 1) % pkts.len();
            decoder.decode(&pkts[i], &mut out)
        })
    });
}

fn jitter_buffer(c: &mut Criterion) {
    let pkts = packets(500);
    for (name, jitter_us) in [
        ("jitter_insert_pull_steady", 0u64),
        ("jitter_insert_pull_jittery", 40_000),
    ] {
        let decoder = OpusDecoder::new().unwrap_or_else(|e| panic!("{e}"));
        let mut jb = JitterBuffer::new(JitterConfig::default(), decoder).unwrap_or_else(|e| panic!("{e}"));
        let mut frame = [0i16; FRAME_SAMPLES];
        let mut k: u64 = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                // A cheap deterministic jitter pattern: arrivals wander by up to `jitter_us`.
                let wobble = if jitter_us == 0 {
                    0
                } else {
                    (k * 7_919) % jitter_us
                };
                let p = &pkts[(k % pkts.len() as u64) as usize];
                jb.insert(k as u16, (k as u32).wrapping_mul(960), k * 20_000 + wobble, p);
                let playout = jb.pull(k * 20_000 + 10_000, &mut frame);
                k += 1;
                playout
            })
        });
    }
}

criterion_group!(benches, codec, jitter_buffer);
criterion_main!(benches);
