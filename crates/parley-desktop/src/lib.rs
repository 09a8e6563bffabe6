//! Parley's native desktop client: a Slint view over the Parley SDK.
//!
//! Layout: the `.slint` files under `ui/` are the view (markup only); `app`
//! is the controller that wires the view's callbacks to actions; `bridge` is
//! the one place SDK calls are made (on a tokio runtime, never on the UI
//! thread); `messages`, `conversations`, `people` and `calls` are the
//! view-models; `audio` picks a call's microphone and speaker, `video` its
//! picture source and carries the pictures to the window; `format`,
//! `images`, `settings`, `notify` and `desktop` are small utilities.

slint::include_modules!();

pub mod app;
pub mod audio;
pub mod bridge;
pub mod calls;
pub mod conversations;
pub mod desktop;
pub mod format;
pub mod images;
pub mod messages;
pub mod notify;
pub mod people;
pub mod settings;
pub mod video;

pub use app::App;
