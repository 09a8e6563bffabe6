//! Desktop notifications for messages that arrive while the window is not
//! focused, and for incoming calls. Showing one talks to the desktop (D-Bus
//! on Linux) and may block, so it runs on a worker thread.

use crate::bridge::Bridge;

/// Announces a new message from `sender` in `chat`.
pub fn new_message(bridge: &Bridge, chat: &str, sender: &str, preview: &str) {
    let summary = if chat == sender {
        sender.to_string()
    } else {
        format!("{sender} in {chat}")
    };
    let body = preview.to_string();
    bridge.blocking(move || show(&summary, &body), |_| {});
}

/// Announces an incoming call from `caller`. Shown even when the window is
/// focused: the call window may open behind other windows.
pub fn incoming_call(bridge: &Bridge, caller: &str, video: bool) {
    let summary = format!("{caller} is calling");
    let body = if video {
        "Incoming video call"
    } else {
        "Incoming voice call"
    };
    bridge.blocking(move || show(&summary, body), |_| {});
}

fn show(summary: &str, body: &str) {
    let shown = notify_rust::Notification::new()
        .appname("Parley")
        .summary(summary)
        .body(body)
        .show()
        .map(|_| ());
    if let Err(e) = shown {
        tracing::debug!("notification not shown: {e}");
    }
}
