//! The chat's input: whole lines, plus keystroke hints for typing notices.
//!
//! On a terminal the input is read key by key in raw mode (so incoming
//! messages never tear up a half-typed line, see `screen.rs`): printable
//! keys edit the prompt line, Enter submits it, Ctrl-C or Ctrl-D on an
//! empty line quit, Ctrl-U clears. Otherwise standard input is read line by
//! line and its end quits. Both run on a plain thread (terminal reads
//! block) and report through a channel.

use std::io::BufRead;

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use super::screen::Screen;

/// What the user did.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// A submitted line (without its newline).
    Line(String),
    /// A keystroke changed the line being typed.
    Typing,
    /// The user wants to leave.
    Quit,
}

/// Puts the terminal into raw mode and restores it when dropped, also on
/// an early return or a panic unwinding through the chat.
pub struct RawMode;

impl RawMode {
    /// Enters raw mode.
    pub fn enter() -> std::io::Result<RawMode> {
        crossterm::terminal::enable_raw_mode()?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Starts reading input for `screen`.
pub fn start(screen: Screen) -> mpsc::UnboundedReceiver<Input> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        if screen.is_raw() {
            read_keys(&screen, &tx);
        } else {
            read_lines(&tx);
        }
    });
    rx
}

fn read_lines(tx: &mpsc::UnboundedSender<Input>) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if tx.send(Input::Line(line)).is_err() {
            return;
        }
    }
    let _ = tx.send(Input::Quit);
}

fn read_keys(screen: &Screen, tx: &mpsc::UnboundedSender<Input>) {
    loop {
        let Ok(event) = event::read() else {
            let _ = tx.send(Input::Quit);
            return;
        };
        let Event::Key(key) = event else {
            if matches!(event, Event::Resize(..)) {
                screen.redraw();
            }
            continue;
        };
        if key.kind == KeyEventKind::Release {
            continue;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let action = {
            let mut prompt = screen.prompt();
            edit(&mut prompt.input, key.code, ctrl)
        };
        let stop = matches!(action, Some(Input::Quit));
        if let Some(action) = action
            && tx.send(action).is_err()
        {
            return;
        }
        screen.redraw();
        if stop {
            return;
        }
    }
}

/// Applies one key to the line being typed; what it means, if anything.
fn edit(line: &mut String, key: KeyCode, ctrl: bool) -> Option<Input> {
    match key {
        KeyCode::Char('c' | 'd') if ctrl && line.is_empty() => Some(Input::Quit),
        KeyCode::Char('c') if ctrl => {
            line.clear();
            None
        }
        KeyCode::Char('u') if ctrl => {
            line.clear();
            None
        }
        KeyCode::Char(_) if ctrl => None,
        KeyCode::Char(c) => {
            line.push(c);
            Some(Input::Typing)
        }
        KeyCode::Backspace => {
            line.pop();
            None
        }
        KeyCode::Enter => Some(Input::Line(std::mem::take(line))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_edit_the_line() {
        let mut line = String::new();
        assert_eq!(edit(&mut line, KeyCode::Char('h'), false), Some(Input::Typing));
        assert_eq!(edit(&mut line, KeyCode::Char('i'), false), Some(Input::Typing));
        assert_eq!(edit(&mut line, KeyCode::Backspace, false), None);
        assert_eq!(edit(&mut line, KeyCode::Char('ö'), false), Some(Input::Typing));
        assert_eq!(
            edit(&mut line, KeyCode::Enter, false),
            Some(Input::Line("hö".into()))
        );
        assert!(line.is_empty());
        edit(&mut line, KeyCode::Char('x'), false);
        assert_eq!(
            edit(&mut line, KeyCode::Char('c'), true),
            None,
            "ctrl-c clears first"
        );
        assert_eq!(edit(&mut line, KeyCode::Char('d'), true), Some(Input::Quit));
    }
}
