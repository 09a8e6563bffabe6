//! Handing a downloaded file to the operating system's default application.

use std::path::Path;
use std::process::Command;

/// Opens `path` with the desktop's default application. Spawns and does not
/// wait, so it is safe on the UI thread.
pub fn open_path(path: &Path) {
    let mut command = opener();
    command.arg(path);
    if let Err(e) = command.spawn() {
        tracing::warn!("cannot open {}: {e}", path.display());
    }
}

#[cfg(target_os = "windows")]
fn opener() -> Command {
    // `start` is a shell built-in; the empty string is the window title.
    let mut command = Command::new("cmd");
    command.args(["/C", "start", ""]);
    command
}

#[cfg(target_os = "macos")]
fn opener() -> Command {
    Command::new("open")
}

#[cfg(not(any(target_os = "windows", target_os = "macos")))]
fn opener() -> Command {
    Command::new("xdg-open")
}
