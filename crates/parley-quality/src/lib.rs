//! Parley's call-quality harness.
//!
//! A measured call is a real one: a private Parley server (TLS signalling, SQLite, its str0m
//! media relay), two SDK users and `parley-voice` on both ends. The only addition is an
//! impairing UDP relay ([`relay`]) between the callee and the server's media port, driven by
//! seeded `str0m-netem` emulators, so a grid of loss and jitter settings can be replayed.
//!
//! * [`call`]: one call over one [`call::Network`] and its figures ([`call::CallResult`]);
//! * [`timeline`]: source and sink wrappers that log each frame with its instant, and a
//!   speech-like synthetic signal for runs without a speech recording;
//! * [`analysis`]: mouth-to-ear latency by locating heard windows in the sent audio;
//! * [`grid`]: the loss × jitter grid and its report;
//! * [`video`]: a video call's figures (delivered fps, freezes, glass-to-glass latency, A/V
//!   skew, adaptation to a bandwidth step).

pub mod analysis;
pub mod call;
pub mod grid;
pub mod relay;
pub mod timeline;
pub mod video;
