//! The chat's output: message lines scroll above an input line.
//!
//! On a terminal (raw mode) the last line is the prompt — a status such as
//! "bob is typing" or "uploading 40%", then what the user is typing — and
//! every printed line first clears it, then redraws it underneath. Without
//! a terminal the screen is plain lines on stdout and statuses are printed
//! only when they matter (they are skipped when empty).

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

/// The prompt line's parts; shared with the input thread.
#[derive(Default, Debug)]
pub struct PromptLine {
    /// What the user has typed so far.
    pub input: String,
    /// Shown before the input, e.g. `bob is typing…`.
    pub status: String,
}

/// Where the chat prints.
#[derive(Clone)]
pub struct Screen {
    raw: bool,
    prompt: Arc<Mutex<PromptLine>>,
}

impl Screen {
    /// A screen; `raw` when the terminal is in raw mode with a prompt line.
    pub fn new(raw: bool) -> Screen {
        Screen {
            raw,
            prompt: Arc::new(Mutex::new(PromptLine::default())),
        }
    }

    /// Whether this screen draws a prompt line.
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// The prompt line, to edit; call [`Screen::redraw`] afterwards.
    pub fn prompt(&self) -> MutexGuard<'_, PromptLine> {
        self.prompt.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Prints one line (or several, separated by `\n`) above the prompt.
    pub fn print(&self, text: &str) {
        let prompt = self.prompt();
        let mut out = std::io::stdout().lock();
        if self.raw {
            let _ = write!(out, "\r\x1b[2K");
            for line in text.split('\n') {
                let _ = write!(out, "{line}\r\n");
            }
            let _ = write!(out, "{}", render_prompt(&prompt));
        } else {
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
    }

    /// A line in a dimmer colour on a terminal (notices, receipts).
    pub fn note(&self, text: &str) {
        if self.raw {
            self.print(&format!("\x1b[2m{text}\x1b[0m"));
        } else {
            self.print(text);
        }
    }

    /// Sets the status part of the prompt (raw mode only; plain screens
    /// have no prompt to put it in).
    pub fn set_status(&self, status: &str) {
        let mut prompt = self.prompt();
        if prompt.status == status {
            return;
        }
        prompt.status = status.to_string();
        drop(prompt);
        self.redraw();
    }

    /// Draws the prompt line again.
    pub fn redraw(&self) {
        if !self.raw {
            return;
        }
        let prompt = self.prompt();
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{}", render_prompt(&prompt));
        let _ = out.flush();
    }

    /// Clears the prompt line for good (on exit).
    pub fn clear_prompt(&self) {
        if self.raw {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
        }
    }
}

/// `[status] > input`.
fn render_prompt(prompt: &PromptLine) -> String {
    if prompt.status.is_empty() {
        format!("> {}", prompt.input)
    } else {
        format!("\x1b[2m[{}]\x1b[0m > {}", prompt.status, prompt.input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_shows_status_then_input() {
        let mut prompt = PromptLine {
            input: "hel".into(),
            status: String::new(),
        };
        assert_eq!(render_prompt(&prompt), "> hel");
        prompt.status = "bob is typing…".into();
        assert!(render_prompt(&prompt).contains("[bob is typing…]"));
        assert!(render_prompt(&prompt).ends_with("> hel"));
    }
}
