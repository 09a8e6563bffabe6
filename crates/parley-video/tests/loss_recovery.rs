//! The whole receive path under loss, in simulated time: pattern → encoder → a network that
//! drops one frame mid-GOP and delays everything by 100 ms each way → gate → decoder → stats,
//! with the gate's keyframe request travelling back to the encoder.

use parley_video::{
    Admission, FrameGate, FrameInfo, RateController, TestPatternSource, VideoDecoder, VideoEncoder,
    VideoSource, VideoStatsCollector, read_marks,
};

const FRAME_US: u64 = 33_333;
const ONE_WAY_US: u64 = 100_000;

#[test]
fn lost_frame_freezes_until_the_requested_keyframe() {
    let mut src = TestPatternSource::new(320, 180, 30).unwrap_or_else(|e| panic!("{e}"));
    let settings = parley_video::EncoderSettings {
        width: 320,
        height: 180,
        bitrate_bps: 400_000,
        ..Default::default()
    };
    let mut enc = VideoEncoder::new(settings).unwrap_or_else(|e| panic!("{e}"));
    let mut dec = VideoDecoder::new().unwrap_or_else(|e| panic!("{e}"));
    let mut gate = FrameGate::default();
    let mut stats = VideoStatsCollector::new();

    let mut request_reaches_sender: Option<u64> = None;
    let mut lost: Option<u64> = None;
    let mut contiguous = true;
    let mut rendered = Vec::new();
    let mut keyframes = Vec::new();

    for i in 0..90u64 {
        let t = i * FRAME_US;
        if request_reaches_sender.is_some_and(|at| at <= t) {
            enc.force_keyframe();
            request_reaches_sender = None;
        }
        let frame = src
            .next_frame(t)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("pattern frame {i}"));
        let Some(au) = enc.encode(&frame.picture, t).unwrap_or_else(|e| panic!("{e}")) else {
            continue;
        };
        if au.keyframe {
            keyframes.push(i);
        }
        if i >= 40 && lost.is_none() && !au.keyframe {
            lost = Some(i);
            contiguous = false;
            continue;
        }

        let now = t + ONE_WAY_US;
        stats.on_bytes_received(now, au.data.len());
        let info = FrameInfo {
            keyframe: parley_video::is_keyframe(&au.data),
            contiguous,
        };
        contiguous = true;
        match gate.on_frame(info) {
            Admission::Decode => match dec.decode(&au.data) {
                Ok(Some(pic)) => {
                    stats.on_frame_rendered(now, pic.width(), pic.height());
                    let marks = read_marks(&pic).unwrap_or_else(|| panic!("marks of frame {i}"));
                    assert_eq!(u64::from(marks.counter), i);
                    rendered.push(i);
                }
                Ok(None) => {}
                Err(_) => gate.on_decode_error(),
            },
            Admission::Drop => stats.on_frame_dropped(),
        }
        if gate.poll_keyframe_request(now) {
            stats.on_keyframe_requested();
            request_reaches_sender = Some(now + ONE_WAY_US);
        }
    }

    let lost = lost.unwrap_or_else(|| panic!("nothing was lost"));
    assert_eq!(
        keyframes.len(),
        2,
        "the initial keyframe and one answer: {keyframes:?}"
    );
    let answer = keyframes[1];
    // Nothing between the loss and the answering keyframe reached the screen.
    assert!(rendered.iter().all(|&i| i < lost || i >= answer), "{rendered:?}");
    assert!(rendered.contains(&answer));
    // The request left with the first frame after the gap (t = lost+1 plus 100 ms) and reached
    // the sender 100 ms later, so the answer is captured ~200 ms after frame lost+1.
    assert!(
        (lost + 7..=lost + 8).contains(&answer),
        "lost {lost}, answer {answer}"
    );

    let s = stats.stats(90 * FRAME_US + ONE_WAY_US);
    assert_eq!(s.keyframes_requested, 1);
    assert_eq!(s.frames_dropped, answer - lost - 1);
    assert_eq!(s.freeze_count, 1, "{s:?}");
    assert_eq!(s.total_freezes_duration_us, (answer - (lost - 1)) * FRAME_US);
    assert_eq!((s.width, s.height), (320, 180));
}

/// The rate controller's ladder applied to a real encoder: a bandwidth drop takes 720p30 down
/// to 360p15, and the pictures that come out still carry readable marks.
#[test]
fn rate_controller_steps_the_encoder_down_the_ladder() {
    let mut src = TestPatternSource::new(1280, 720, 30).unwrap_or_else(|e| panic!("{e}"));
    let mut rc = RateController::default();
    let mut limiter = parley_video::FrameRateLimiter::new();
    let target = rc.on_estimate(0, 2_000_000);
    let mut enc =
        VideoEncoder::new(target.encoder_settings(Default::default())).unwrap_or_else(|e| panic!("{e}"));
    let mut dec = VideoDecoder::new().unwrap_or_else(|e| panic!("{e}"));
    let mut sizes = Vec::new();
    let mut encoded_after_drop = 0;
    for i in 0..60u64 {
        let t = i * FRAME_US;
        let estimate = if i < 20 { 2_000_000 } else { 300_000 };
        let target = rc.on_estimate(t, estimate);
        enc.apply(target.encoder_settings(enc.settings()))
            .unwrap_or_else(|e| panic!("{e}"));
        let frame = src
            .next_frame(t)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("pattern frame {i}"));
        if !limiter.admit(frame.capture_us, target.fps) {
            continue;
        }
        let Some(au) = enc.encode(&frame.picture, t).unwrap_or_else(|e| panic!("{e}")) else {
            continue;
        };
        if i >= 20 {
            encoded_after_drop += 1;
        }
        if let Some(pic) = dec.decode(&au.data).unwrap_or_else(|e| panic!("{e}")) {
            let marks = read_marks(&pic).unwrap_or_else(|| panic!("marks of frame {i}"));
            assert_eq!(u64::from(marks.counter), i);
            sizes.push((i, pic.width(), pic.height()));
        }
    }
    assert!(
        sizes
            .iter()
            .all(|&(i, w, _)| (i < 20 && w == 1280) || (i >= 20 && w == 640))
    );
    // 40 frames at 30 fps capture, 15 fps target: at most 20 encoded, a few fewer when the
    // rate control skips one after the keyframe the size change costs.
    assert!((10..=20).contains(&encoded_after_drop), "{encoded_after_drop}");
}
