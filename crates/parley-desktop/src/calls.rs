//! The call window's texts: the timer, the outcome of an ended call and the
//! live figures, worded from this side of the call.

use std::time::Duration;

use parley_client::pb::CallOutcome;
use parley_voice::{CallEnd, CallStats};

use crate::{CallFigures, VideoFigures};

/// Connected time as the window shows it: `mm:ss`, or `h:mm:ss` past an hour.
pub fn timer_text(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

/// How a call ended, for the caller (`outgoing`) or the callee. `None`: the
/// connection went away before the server said.
pub fn outcome_text(end: Option<&CallEnd>, outgoing: bool) -> String {
    let Some(end) = end else {
        return "Connection lost".into();
    };
    match end.outcome {
        CallOutcome::Completed if end.connection_lost => {
            format!("Connection lost {}", timer_text(end.duration))
        }
        CallOutcome::Completed => format!("Call ended {}", timer_text(end.duration)),
        CallOutcome::Declined => "Declined".into(),
        CallOutcome::Missed if outgoing => "No answer".into(),
        CallOutcome::Cancelled if outgoing => "Cancelled".into(),
        // The caller gave up or nobody picked up here: either way a missed call.
        CallOutcome::Missed | CallOutcome::Cancelled => "Missed call".into(),
        CallOutcome::CallBusy => "Busy".into(),
        CallOutcome::Unspecified if end.connection_lost => "Connection lost".into(),
        CallOutcome::Unspecified => "Call ended".into(),
    }
}

/// The figures panel of a connected call.
pub fn figures(stats: &CallStats) -> CallFigures {
    let link = if stats.connected {
        "connected"
    } else if stats.transport.packets_in + stats.transport.packets_out == 0 {
        "connecting"
    } else {
        "reconnecting"
    };
    let link = if stats.muted && stats.connected {
        "connected · muted"
    } else {
        link
    };
    let rtt = stats
        .rtt()
        .map_or_else(|| "–".to_string(), |d| format!("{} ms", d.as_millis()));
    CallFigures {
        up: stats.connected,
        link: link.into(),
        rtt: rtt.into(),
        loss: format!("{:.1} %", stats.loss() * 100.0).into(),
        jitter: format!("{:.1} ms", stats.jitter_ms()).into(),
        buffer: format!("{:.0} ms", stats.jitter_buffer_delay_ms()).into(),
        concealed: format!("{:.1} %", stats.concealed_ratio() * 100.0).into(),
        bitrate: format!(
            "{} / {} kb/s",
            stats.transport.bitrate_in / 1000,
            stats.transport.bitrate_out / 1000
        )
        .into(),
    }
}

/// The video half of the statistics panel (empty in a voice call).
/// `sent_fps` is the rate pictures actually left at, measured between two
/// snapshots: the send figures only say what the rate controller allows.
pub fn video_figures(stats: &CallStats, sent_fps: f64) -> VideoFigures {
    let Some(video) = stats.video else {
        return VideoFigures::default();
    };
    let (tx, rx) = (video.send, video.receive.video);
    let size = |w: u32, h: u32| {
        if w == 0 {
            "–".to_string()
        } else {
            format!("{w}×{h}")
        }
    };
    let freezes = if rx.freeze_count == 0 {
        "none".to_string()
    } else {
        format!(
            "{} ({:.1} s)",
            rx.freeze_count,
            rx.total_freezes_duration_us as f64 / 1e6
        )
    };
    VideoFigures {
        size_in: size(rx.width, rx.height).into(),
        size_out: if tx.camera_on {
            size(tx.width, tx.height)
        } else {
            "camera off".into()
        }
        .into(),
        fps_in: format!("{:.0}", rx.fps).into(),
        fps_out: format!("{:.0}", if tx.camera_on { sent_fps } else { 0.0 }).into(),
        bitrate_in: format!("{} kb/s", rx.bitrate_bps / 1000).into(),
        bitrate_out: format!("{} kb/s", tx.target_bitrate_bps / 1000).into(),
        freezes: freezes.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(outcome: CallOutcome, secs: u64, lost: bool) -> CallEnd {
        CallEnd {
            outcome,
            duration: Duration::from_secs(secs),
            connection_lost: lost,
        }
    }

    #[test]
    fn timer_rolls_over_to_hours() {
        assert_eq!(timer_text(Duration::from_millis(83_900)), "01:23");
        assert_eq!(timer_text(Duration::ZERO), "00:00");
        assert_eq!(timer_text(Duration::from_secs(3_600 + 62)), "1:01:02");
    }

    #[test]
    fn outcomes_are_worded_for_each_side() {
        let done = end(CallOutcome::Completed, 83, false);
        assert_eq!(outcome_text(Some(&done), true), "Call ended 01:23");
        assert_eq!(outcome_text(Some(&done), false), "Call ended 01:23");
        let missed = end(CallOutcome::Missed, 0, false);
        assert_eq!(outcome_text(Some(&missed), true), "No answer");
        assert_eq!(outcome_text(Some(&missed), false), "Missed call");
        let cancelled = end(CallOutcome::Cancelled, 0, false);
        assert_eq!(outcome_text(Some(&cancelled), false), "Missed call");
        assert_eq!(outcome_text(Some(&cancelled), true), "Cancelled");
        assert_eq!(
            outcome_text(Some(&end(CallOutcome::Declined, 0, false)), true),
            "Declined"
        );
        assert_eq!(
            outcome_text(Some(&end(CallOutcome::CallBusy, 0, false)), true),
            "Busy"
        );
        let dropped = end(CallOutcome::Completed, 5, true);
        assert_eq!(outcome_text(Some(&dropped), true), "Connection lost 00:05");
        assert_eq!(outcome_text(None, true), "Connection lost");
    }

    #[test]
    fn figures_before_any_packet() {
        let f = figures(&CallStats::default());
        assert_eq!(f.link, "connecting");
        assert_eq!(f.rtt, "–");
        assert_eq!(f.loss, "0.0 %");
        assert_eq!(f.bitrate, "0 / 0 kb/s");
    }

    #[test]
    fn figures_of_a_running_call() {
        let mut stats = CallStats {
            connected: true,
            muted: true,
            ..CallStats::default()
        };
        stats.transport.rtt = Some(Duration::from_millis(12));
        stats.transport.loss_in = Some(0.025);
        stats.transport.bitrate_in = 33_600;
        stats.transport.bitrate_out = 31_000;
        let f = figures(&stats);
        assert_eq!(f.link, "connected · muted");
        assert_eq!(f.rtt, "12 ms");
        assert_eq!(f.loss, "2.5 %");
        assert_eq!(f.bitrate, "33 / 31 kb/s");
    }

    #[test]
    fn video_figures_of_a_video_call() {
        assert_eq!(video_figures(&CallStats::default(), 0.0), VideoFigures::default());
        let mut video = parley_voice::VideoCallStats::default();
        video.send.camera_on = true;
        video.send.width = 640;
        video.send.height = 360;
        video.send.fps = 15;
        video.send.target_bitrate_bps = 600_000;
        video.receive.video.width = 320;
        video.receive.video.height = 180;
        video.receive.video.fps = 14.6;
        video.receive.video.bitrate_bps = 250_400;
        video.receive.video.freeze_count = 2;
        video.receive.video.total_freezes_duration_us = 1_250_000;
        let stats = CallStats {
            video: Some(video),
            ..CallStats::default()
        };
        let f = video_figures(&stats, 14.8);
        assert_eq!(f.size_in, "320×180");
        assert_eq!(f.size_out, "640×360");
        assert_eq!(f.fps_in, "15");
        assert_eq!(f.fps_out, "15");
        assert_eq!(f.bitrate_in, "250 kb/s");
        assert_eq!(f.bitrate_out, "600 kb/s");
        assert_eq!(f.freezes, "2 (1.2 s)");
        video.send.camera_on = false;
        let f = video_figures(
            &CallStats {
                video: Some(video),
                ..CallStats::default()
            },
            14.8,
        );
        assert_eq!(f.size_out, "camera off");
        assert_eq!(f.fps_out, "0");
    }
}
