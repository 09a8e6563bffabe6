//! Per-frame costs of the video path: H.264 encode and decode of the moving test pattern at
//! 640×360 and 1280×720 (single-threaded encoder, the default), plus drawing the pattern.

use criterion::{Criterion, criterion_group, criterion_main};
use parley_video::{EncoderSettings, I420Frame, TestPatternSource, VideoDecoder, VideoEncoder, VideoSource};

const FRAME_US: u64 = 33_333;

fn frames(w: u32, h: u32, n: u64) -> Vec<I420Frame> {
    let mut src = TestPatternSource::new(w, h, 30).unwrap_or_else(|e| panic!("{e}"));
    (0..n)
        .filter_map(|i| src.next_frame(i * FRAME_US).ok().flatten())
        .map(|f| f.picture)
        .collect()
}

fn settings(w: u32, h: u32, bitrate_bps: u32) -> EncoderSettings {
    EncoderSettings {
        width: w,
        height: h,
        bitrate_bps,
        ..EncoderSettings::default()
    }
}

fn codec(c: &mut Criterion) {
    for (name, w, h, bps) in [("360p", 640, 360, 800_000), ("720p", 1280, 720, 1_700_000)] {
        let pics = frames(w, h, 60);
        let mut enc = VideoEncoder::new(settings(w, h, bps)).unwrap_or_else(|e| panic!("{e}"));
        let mut i = 0u64;
        c.bench_function(&format!("h264_encode_{name}"), |b| {
            b.iter(|| {
                i += 1;
                enc.encode(&pics[(i % pics.len() as u64) as usize], i * FRAME_US)
            })
        });

        // A decodable sequence: one keyframe then P frames, replayed from the keyframe.
        let mut enc = VideoEncoder::new(settings(w, h, bps)).unwrap_or_else(|e| panic!("{e}"));
        let aus: Vec<Vec<u8>> = pics
            .iter()
            .enumerate()
            .filter_map(|(k, p)| enc.encode(p, k as u64 * FRAME_US).ok().flatten())
            .map(|au| au.data)
            .collect();
        let mut dec = VideoDecoder::new().unwrap_or_else(|e| panic!("{e}"));
        let mut k = 0;
        c.bench_function(&format!("h264_decode_{name}"), |b| {
            b.iter(|| {
                let out = dec.decode(&aus[k]);
                k = (k + 1) % aus.len();
                out
            })
        });

        let mut src = TestPatternSource::new(w, h, 30).unwrap_or_else(|e| panic!("{e}"));
        let mut t = 0;
        c.bench_function(&format!("test_pattern_{name}"), |b| {
            b.iter(|| {
                t += FRAME_US;
                src.next_frame(t)
            })
        });
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
