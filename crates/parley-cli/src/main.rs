//! `parley-cli`: the Parley client on the command line.
//!
//! A thin binary over the `parley-client` SDK: parse flags, connect (resuming
//! the session saved by `login`), run one request, print the answer as text
//! or JSON. Failures print one `error: …` line on stderr and exit non-zero:
//! 2 for usage mistakes, 3 for authentication problems, 1 otherwise.

mod account;
mod args;
mod context;
mod failure;
mod friends;
mod output;
mod prompt;
mod store;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use args::{Cli, Command};
use context::Context;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", failure::message(&err));
            ExitCode::from(failure::exit_code(&err))
        }
    }
}

/// Logs go to stderr, off unless `PARLEY_LOG` asks (e.g. `PARLEY_LOG=debug`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> Result<()> {
    let ctx = Context::new(&cli)?;
    match cli.command {
        Command::Register {
            username,
            display_name,
            password,
        } => account::register(&ctx, username, display_name, password.password).await,
        Command::Login { username, password } => account::login(&ctx, username, password.password).await,
        Command::Logout => account::logout(&ctx).await,
        Command::Whoami => account::whoami(&ctx).await,
        Command::Sessions(args) => account::sessions(&ctx, args).await,
        Command::Passwd {
            password,
            new_password,
        } => account::passwd(&ctx, password.password, new_password).await,
        Command::Profile(args) => account::profile(&ctx, args).await,
        Command::Search {
            prefix,
            limit,
            cursor,
        } => account::search(&ctx, prefix, limit, cursor).await,
        Command::Friend { command } => friends::friend(&ctx, command).await,
        Command::Friends => friends::friends(&ctx).await,
    }
}
