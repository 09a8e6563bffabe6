//! `parley`: the desktop client. Starts the SDK's runtime on worker threads
//! and runs the Slint event loop on the main thread.

use anyhow::Context;
use parley_desktop::App;
use parley_desktop::settings::ConfigDir;
use slint::ComponentHandle;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // Two workers are plenty for one user's traffic; they also decode images.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("parley-net")
        .enable_all()
        .build()
        .context("starting the network runtime")?;
    let config = ConfigDir::from_env()?;
    let app = App::start(runtime.handle().clone(), config).context("opening the window")?;
    app.window().run().context("running the window")?;
    app.shut_down();
    // Give the client a moment to say goodbye to the server.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}
