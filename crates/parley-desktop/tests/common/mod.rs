//! What the headless UI tests share: the Slint testing platform with the
//! app on the main thread, the scenario on a second thread touching the UI
//! only through `on_ui` (exactly like the app's own network results do), an
//! in-process server, and screenshots.
//!
//! One `#[test]` per file: the platform can be set once per process.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use i_slint_backend_testing::{AccessibleRole, ElementHandle, TestingBackend, TestingBackendOptions};
use parley_client::{Client, ClientConfig, Trust, pb};
use parley_desktop::App;
use parley_desktop::app::with_app;
use slint::ComponentHandle;

/// How long any one expected change may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Sets up the testing platform, lets `start` create the app on the UI
/// thread, runs `scenario` on a second thread with the runtime's handle and
/// a fresh config directory, and quits the event loop however it ends.
pub fn run(
    start: impl FnOnce(tokio::runtime::Handle, PathBuf) + Send + 'static,
    scenario: impl FnOnce(tokio::runtime::Handle, PathBuf) + Send + 'static,
) {
    slint::platform::set_platform(Box::new(TestingBackend::new(TestingBackendOptions {
        mock_time: false,
        threading: true,
        renderer_name: Some("software".into()),
    })))
    .expect("testing platform");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config_dir = tempfile::tempdir().expect("config dir");
    let config_path = config_dir.path().to_path_buf();
    let handle = runtime.handle().clone();
    let start_handle = handle.clone();
    let start_config = config_path.clone();
    slint::invoke_from_event_loop(move || start(start_handle, start_config)).expect("event loop queue");

    let scenario = std::thread::spawn(move || {
        // Quits the event loop however the scenario ends, so a failed
        // assertion fails the test instead of hanging it.
        struct Quit;
        impl Drop for Quit {
            fn drop(&mut self) {
                let _ = slint::invoke_from_event_loop(|| {
                    with_app(|app| app.shut_down());
                    let _ = slint::quit_event_loop();
                });
            }
        }
        let _quit = Quit;
        scenario(handle, config_path);
    });
    slint::run_event_loop_until_quit().expect("event loop");
    let outcome = scenario.join();
    runtime.shutdown_timeout(Duration::from_secs(2));
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `f` on the UI thread and returns its result.
pub fn on_ui<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    slint::invoke_from_event_loop(move || {
        let _ = tx.send(f());
    })
    .expect("event loop running");
    rx.recv_timeout(WAIT).expect("UI thread answered")
}

/// Runs `f` with the app on the UI thread.
pub fn with<R: Send + 'static>(f: impl FnOnce(&App) -> R + Send + 'static) -> R {
    on_ui(move || {
        let mut out = None;
        with_app(|app| out = Some(f(app)));
        out.expect("app running")
    })
}

/// Waits until `check` (run on the UI thread) holds.
pub fn wait_for(what: &str, check: impl Fn(&App) -> bool + Send + Sync + Clone + 'static) {
    let start = Instant::now();
    loop {
        let check = check.clone();
        if with(move |app| check(app)) {
            return;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sets a text field of the main window found by its accessible label.
pub fn type_into(label: &'static str, text: &'static str) {
    with(move |app| {
        let field = ElementHandle::find_by_accessible_label(app.window(), label)
            .find(|e| e.accessible_role() == Some(AccessibleRole::TextInput))
            .unwrap_or_else(|| panic!("no field labelled {label}"));
        field.set_accessible_value(text);
    });
}

/// Presses a button of the main window found by its accessible label.
pub fn press(label: &'static str) {
    with(move |app| press_in(app.window(), label));
}

/// Presses a button of the call window found by its accessible label.
pub fn press_in_call(label: &'static str) {
    with(move |app| press_in(app.call_window(), label));
}

fn press_in(component: &impl ComponentHandle, label: &str) {
    let button = ElementHandle::find_by_accessible_label(component, label)
        .find(|e| e.accessible_role() == Some(AccessibleRole::Button))
        .unwrap_or_else(|| panic!("no button labelled {label}"));
    button.invoke_accessible_default_action();
}

/// Whether a window shows a button labelled `label`.
pub fn has_button(component: &impl ComponentHandle, label: &str) -> bool {
    ElementHandle::find_by_accessible_label(component, label)
        .any(|e| e.accessible_role() == Some(AccessibleRole::Button))
}

pub fn shot_dir(default: &str) -> PathBuf {
    std::env::var_os("PARLEY_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join(default))
}

/// Renders `window` (picked from the app on the UI thread) and saves it as
/// `<dir>/<name>.png`.
pub fn screenshot_of(dir: PathBuf, name: &'static str, window: fn(&App) -> &slint::Window) {
    // Let pending layout and image updates land first.
    std::thread::sleep(Duration::from_millis(300));
    with(move |app| {
        // A toast left over from the previous step would cover the screen.
        app.window().global::<parley_desktop::Main>().set_toast("".into());
        let pixels = window(app).take_snapshot().expect("snapshot");
        let image = image::RgbaImage::from_raw(pixels.width(), pixels.height(), pixels.as_bytes().to_vec())
            .expect("pixel buffer size");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        image.save(dir.join(format!("{name}.png"))).expect("png written");
    });
}

/// A private server on loopback (with its media relay) in a temporary
/// directory.
pub struct Server {
    pub handle: parley_server::ServerHandle,
    _dir: tempfile::TempDir,
}

pub async fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let handle = parley_server::start(parley_server::Config::loopback(dir.path()))
        .await
        .expect("server starts");
    Server { handle, _dir: dir }
}

impl Server {
    pub fn address(&self) -> String {
        self.handle.client_addr.to_string()
    }

    /// Registers `name` and signs in over the SDK.
    pub async fn user(&self, name: &str, display: &str) -> (Client, pb::User) {
        let mut config = ClientConfig::new(
            self.address(),
            Trust::Pinned(self.handle.fingerprint.clone().unwrap_or_default()),
        );
        config.server_name = "localhost".into();
        let client = Client::connect(config).await.expect("connect");
        client
            .register(name, display, &format!("password-{name}"))
            .await
            .expect("register");
        let logged_in = client
            .login(name, &format!("password-{name}"))
            .await
            .expect("login");
        (client, logged_in.user.expect("user"))
    }
}
