//! Turning the global flags and the saved session into a connected client.
//!
//! Every command needs the same decisions: which server (flag, environment,
//! saved session, default), whom to trust (CA, pinned fingerprint, or trust
//! on first use with the known-hosts file), and — for all but `register` and
//! `login` — resuming the saved session. They live here once.

use anyhow::{Context as _, Result};
use parley_client::{Client, ClientConfig, ClientError, Trust, pb};

use crate::args::Cli;
use crate::failure::Failure;
use crate::output::Output;
use crate::store::{SavedSession, Store};

/// Used when neither a flag nor a saved session names a server.
const DEFAULT_SERVER: &str = "127.0.0.1:7420";

/// How long a command keeps its connection, which decides what the SDK does
/// when it drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// One request: a lost connection is an error, not a retry.
    OneShot,
    /// Sending: reconnect so an unacknowledged message is resent (exactly
    /// once) instead of failing.
    Sending,
    /// Interactive: reconnect, and keep the message stream gap-free.
    Live,
}

/// What every command runs with.
pub struct Context {
    server: Option<String>,
    server_name: Option<String>,
    ca: Option<std::path::PathBuf>,
    fingerprint: Option<String>,
    /// The configuration directory.
    pub store: Store,
    /// How results are printed.
    pub out: Output,
}

/// A client whose saved session was resumed.
pub struct Authed {
    /// The connected client.
    pub client: Client,
    /// The user the session belongs to.
    pub me: pb::User,
    /// The session's id on the server.
    pub session_id: i64,
    /// The saved session it came from.
    pub saved: SavedSession,
}

impl Context {
    /// The context for `cli`'s global flags.
    pub fn new(cli: &Cli) -> Result<Context> {
        Ok(Context {
            server: cli.server.clone(),
            server_name: cli.server_name.clone(),
            ca: cli.ca.clone(),
            fingerprint: cli.fingerprint.clone(),
            store: Store::new(cli.config_dir.clone())?,
            out: Output::new(cli.json),
        })
    }

    /// The server name given on the command line, to save with a login.
    pub fn server_name_flag(&self) -> Option<String> {
        self.server_name.clone()
    }

    /// Connects without logging in: to `--server`, else the saved session's
    /// server, else the default. Returns the client and the address used.
    pub async fn connect(&self) -> Result<(Client, String)> {
        let saved = self.store.load_session().ok().flatten();
        let address = self
            .server
            .clone()
            .or_else(|| saved.as_ref().map(|s| s.server.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let saved_name = saved.filter(|s| s.server == address).and_then(|s| s.server_name);
        let client = self.open(&address, saved_name, Lifetime::OneShot).await?;
        Ok((client, address))
    }

    /// Connects to the saved session's server and resumes the session, for
    /// one request.
    pub async fn connect_resumed(&self) -> Result<Authed> {
        self.connect_resumed_for(Lifetime::OneShot).await
    }

    /// Connects to the saved session's server and resumes the session.
    pub async fn connect_resumed_for(&self, lifetime: Lifetime) -> Result<Authed> {
        let saved = self
            .store
            .load_session()?
            .ok_or_else(|| Failure::Auth("not logged in; run `parley-cli login USERNAME` first".into()))?;
        if let Some(server) = &self.server
            && *server != saved.server
        {
            return Err(Failure::Auth(format!(
                "the saved session is for {}, not {server}; log in to {server} first",
                saved.server
            ))
            .into());
        }
        let client = self
            .open(&saved.server, saved.server_name.clone(), lifetime)
            .await?;
        match client.resume(&saved.token).await {
            Ok(logged_in) => {
                let me = logged_in
                    .user
                    .ok_or_else(|| anyhow::anyhow!("the server did not say who is logged in"))?;
                Ok(Authed {
                    client,
                    me,
                    session_id: logged_in.session_id,
                    saved,
                })
            }
            Err(err) if err.code() == Some(pb::ErrorCode::SessionInvalid) => {
                client.close().await;
                self.store.remove_session()?;
                Err(Failure::Auth(format!(
                    "the session of {} expired or was revoked; log in again",
                    saved.username
                ))
                .into())
            }
            Err(err) => {
                client.close().await;
                Err(anyhow::Error::new(err).context("resuming the saved session"))
            }
        }
    }

    async fn open(&self, address: &str, saved_name: Option<String>, lifetime: Lifetime) -> Result<Client> {
        let trust = self.trust()?;
        let mut config = ClientConfig::new(address, trust.clone());
        if let Some(name) = self.server_name.clone().or(saved_name) {
            config.server_name = name;
        }
        config.client_name = format!("parley-cli/{}", env!("CARGO_PKG_VERSION"));
        config.reconnect = lifetime != Lifetime::OneShot;
        // Only an interactive chat listens to the message stream.
        config.message_sync = lifetime == Lifetime::Live;
        let client = match Client::connect(config).await {
            Ok(client) => client,
            Err(err @ ClientError::CertificateChanged { .. }) => {
                let hint = match &trust {
                    Trust::FirstUse(path) => format!(" (known hosts: {})", path.display()),
                    _ => String::new(),
                };
                return Err(anyhow::Error::new(err).context(format!("connecting to {address}{hint}")));
            }
            Err(err) => {
                return Err(anyhow::Error::new(err).context(format!("connecting to {address}")));
            }
        };
        if let Some(identity) = client.server_identity()
            && identity.newly_trusted
        {
            eprintln!(
                "trusting new server certificate sha256 {} for {address}",
                identity.fingerprint
            );
        }
        Ok(client)
    }

    fn trust(&self) -> Result<Trust> {
        if let Some(path) = &self.ca {
            let pem =
                std::fs::read(path).with_context(|| format!("reading the CA file {}", path.display()))?;
            return Ok(Trust::CaPem(pem));
        }
        if let Some(fingerprint) = &self.fingerprint {
            return Ok(Trust::Pinned(fingerprint.clone()));
        }
        self.store.create_dir()?;
        Ok(Trust::FirstUse(self.store.known_hosts()))
    }
}
