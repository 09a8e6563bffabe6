//! `parley-server`: parses configuration, starts the server, waits for a signal.

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("PARLEY_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cfg = parley_server::Config::resolve(parley_server::Args::parse())?;
    let server = parley_server::start(cfg).await?;
    if let Some(fp) = &server.fingerprint {
        println!(
            "parley-server listening on {} (TLS), http on {}",
            server.client_addr, server.http_addr
        );
        println!("certificate sha256 fingerprint: {fp}");
    } else {
        println!(
            "parley-server listening on {} (PLAINTEXT), http on {}",
            server.client_addr, server.http_addr
        );
    }
    parley_server::shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
