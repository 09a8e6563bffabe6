//! `parley-cli`: the Parley client on the command line.
//!
//! A thin binary over the `parley-client` SDK: parse flags, connect (resuming
//! the session saved by `login`), run one request, print the answer as text
//! or JSON — or, for `chat`, stay connected and chat interactively. Failures
//! print one `error: …` line on stderr and exit non-zero: 2 for usage
//! mistakes, 3 for authentication problems, 1 otherwise.

mod account;
mod args;
mod call;
mod chat;
mod context;
mod failure;
mod friends;
mod groups;
mod messages;
mod output;
mod prompt;
mod render;
mod store;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use parley_client::pb::MessageKind;

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
            query,
            conv,
            users,
            limit,
            cursor,
        } => messages::search(&ctx, query, conv, users, limit, cursor).await,
        Command::Friend { command } => friends::friend(&ctx, command).await,
        Command::Friends => friends::friends(&ctx).await,
        Command::Conversations => messages::conversations(&ctx).await,
        Command::Chat { target, history } => chat::chat(&ctx, target, history).await,
        Command::Send { to } => messages::send(&ctx, to).await,
        Command::SendImage { to, caption } => {
            messages::send_upload(&ctx, to, caption, MessageKind::Image).await
        }
        Command::SendFile { to, caption } => {
            messages::send_upload(&ctx, to, caption, MessageKind::File).await
        }
        Command::History {
            target,
            before,
            limit,
        } => messages::history(&ctx, target, before, limit).await,
        Command::Download { file_id, output } => messages::download(&ctx, file_id, output).await,
        Command::Group { command } => groups::group(&ctx, command).await,
        Command::Avatar { command } => groups::avatar(&ctx, command).await,
        Command::Call { target, media } => call::call(&ctx, target, media.into()).await,
        Command::Answer { auto: _, media } => call::answer(&ctx, media.into()).await,
    }
}
