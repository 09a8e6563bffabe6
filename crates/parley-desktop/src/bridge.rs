//! The bridge between the UI thread and the network: the only module that
//! holds a [`Client`] and awaits SDK calls.
//!
//! Slint runs its event loop on the main thread and that thread must never
//! wait for the network. Every SDK call therefore goes through [`Bridge`]:
//! the work runs on the tokio runtime (other threads), and its result is
//! handed back to the event loop with `slint::invoke_from_event_loop`, where
//! the `done` closure may touch the UI. Pushed events take the same path, in
//! batches, so a burst of messages costs one wake-up of the UI thread.
//! Voice and video calls run as one task each (`call.rs`), steered by the window
//! through a [`CallControl`].

mod call;

pub use call::{CallControl, CallStart, CallUpdate, CallVideoSetup};

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parley_client::{Client, ClientConfig, ClientError, ClientEvent, ConnectionState};
use tokio::sync::broadcast::error::RecvError;

/// What the event pump hands to the UI thread.
#[derive(Debug)]
pub enum Incoming {
    /// Events in the order the SDK published them.
    Events(Vec<ClientEvent>),
    /// The pump fell behind and missed events: reload what is shown.
    Resync,
}

/// Runs SDK work off the UI thread and posts results back to it.
#[derive(Clone)]
pub struct Bridge {
    runtime: tokio::runtime::Handle,
    client: Arc<Mutex<Option<Client>>>,
    /// Bumped on every connect/disconnect so a stale pump stops delivering.
    generation: Arc<AtomicU64>,
}

/// Most events handed to the UI thread in one batch.
const EVENT_BATCH: usize = 256;

impl Bridge {
    /// A bridge running its work on `runtime`.
    pub fn new(runtime: tokio::runtime::Handle) -> Bridge {
        Bridge {
            runtime,
            client: Arc::new(Mutex::new(None)),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The runtime the work runs on (video pictures are converted on its
    /// blocking pool).
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.runtime.clone()
    }

    fn current(&self) -> Option<Client> {
        self.client.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Connects a new client (closing any previous one), starts delivering its
    /// events to `on_incoming` on the UI thread, runs `then` with it (login,
    /// resume, register) and hands the outcome to `done` on the UI thread.
    pub fn connect<T, F, Fut>(
        &self,
        config: ClientConfig,
        on_incoming: impl Fn(Incoming) + Send + Sync + 'static,
        then: F,
        done: impl FnOnce(Result<T, ClientError>) + Send + 'static,
    ) where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
    {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let old = self.client.lock().unwrap_or_else(|e| e.into_inner()).take();
        let slot = self.client.clone();
        let current_generation = self.generation.clone();
        let on_incoming = Arc::new(on_incoming);
        self.runtime.spawn(async move {
            if let Some(old) = old {
                old.close().await;
            }
            let result = match Client::connect(config).await {
                Ok(client) => {
                    // Subscribe before `then` logs in: the catch-up that
                    // login triggers is delivered on this stream.
                    let events = client.events();
                    tokio::spawn(pump(events, generation, current_generation.clone(), on_incoming));
                    if current_generation.load(Ordering::SeqCst) == generation {
                        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
                    }
                    then(client).await
                }
                Err(e) => Err(e),
            };
            to_ui(move || done(result));
        });
    }

    /// Runs `work` with the connected client; `done` gets the result on the
    /// UI thread. Without a client the result is [`ClientError::NotLoggedIn`].
    pub fn call<T, F, Fut>(&self, work: F, done: impl FnOnce(Result<T, ClientError>) + Send + 'static)
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
    {
        let client = self.current();
        self.runtime.spawn(async move {
            let result = match client {
                Some(client) => work(client).await,
                None => Err(ClientError::NotLoggedIn),
            };
            to_ui(move || done(result));
        });
    }

    /// Like [`Bridge::call`] for work whose result nobody waits for; failures
    /// are logged.
    pub fn fire<F, Fut>(&self, what: &'static str, work: F)
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), ClientError>> + Send + 'static,
    {
        self.call(work, move |result| {
            if let Err(e) = result {
                tracing::debug!("{what} failed: {e}");
            }
        });
    }

    /// Runs blocking or CPU-heavy work that is not an SDK call (decoding an
    /// image, reading a file, a desktop notification) off the UI thread.
    pub fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
        done: impl FnOnce(T) + Send + 'static,
    ) {
        let task = self.runtime.spawn_blocking(work);
        self.runtime.spawn(async move {
            if let Ok(value) = task.await {
                to_ui(move || done(value));
            }
        });
    }

    /// Signs out locally: closes the client in the background and stops its
    /// events. `logout` first tells the server to end the session.
    pub fn disconnect(&self, logout: bool) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let Some(client) = self.client.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        self.runtime.spawn(async move {
            if logout && let Err(e) = client.logout().await {
                tracing::debug!("logout failed: {e}");
            }
            client.close().await;
        });
    }

    /// A progress callback for uploads and downloads that updates the UI at
    /// most every 50 ms (and always at the end), so a fast transfer does not
    /// flood the event loop.
    pub fn progress(
        &self,
        report: impl Fn(u64, u64) + Send + Sync + Clone + 'static,
    ) -> impl Fn(u64, u64) + Send + Sync + 'static {
        let last = Mutex::new(None::<Instant>);
        move |done, total| {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= Duration::from_millis(50));
            if due || done >= total {
                *last = Some(Instant::now());
                let report = report.clone();
                to_ui(move || report(done, total));
            }
        }
    }
}

/// Runs `f` on the UI thread. If the event loop is gone the app is quitting
/// and there is nobody left to tell.
fn to_ui(f: impl FnOnce() + Send + 'static) {
    if slint::invoke_from_event_loop(f).is_err() {
        tracing::debug!("event loop gone; result dropped");
    }
}

/// Forwards a client's events to the UI thread in batches until the client
/// closes or a newer connection replaces it.
async fn pump(
    mut events: tokio::sync::broadcast::Receiver<ClientEvent>,
    generation: u64,
    current: Arc<AtomicU64>,
    on_incoming: Arc<dyn Fn(Incoming) + Send + Sync>,
) {
    loop {
        let first = events.recv().await;
        if current.load(Ordering::SeqCst) != generation {
            return;
        }
        let mut batch = Vec::new();
        let mut finished = match first {
            Ok(event) => {
                let last = is_final(&event);
                batch.push(event);
                last
            }
            Err(RecvError::Lagged(_)) => {
                let on = on_incoming.clone();
                to_ui(move || on(Incoming::Resync));
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        while batch.len() < EVENT_BATCH && !finished {
            match events.try_recv() {
                Ok(event) => {
                    finished = is_final(&event);
                    batch.push(event);
                }
                Err(_) => break,
            }
        }
        let on = on_incoming.clone();
        to_ui(move || on(Incoming::Events(batch)));
        if finished {
            return;
        }
    }
}

fn is_final(event: &ClientEvent) -> bool {
    matches!(event, ClientEvent::State(ConnectionState::Closed))
}
