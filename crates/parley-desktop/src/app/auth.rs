//! Signing in, registering, resuming the saved session and signing out.

use parley_client::{ClientConfig, ClientError, ServerIdentity, Trust, pb};

use slint::ComponentHandle;

use super::{App, describe, with_app};
use crate::bridge::Incoming;
use crate::settings::SavedSession;
use crate::{AuthState, Main, Page};

/// What a successful sign-in hands to the UI thread.
type SignedIn = (pb::LoggedIn, Option<String>, Option<ServerIdentity>);

fn incoming(event: Incoming) {
    with_app(|app| app.on_incoming(event));
}

impl App {
    /// The SDK configuration for `server` with trust on first use.
    pub(crate) fn client_config(&self, server: &str) -> ClientConfig {
        let mut config = ClientConfig::new(server, Trust::FirstUse(self.config.known_hosts()));
        config.client_name = format!("parley-desktop/{}", env!("CARGO_PKG_VERSION"));
        config
    }

    fn auth_inputs(&self) -> Option<(String, String, String)> {
        let auth = self.ui.global::<AuthState>();
        let server = auth.get_server().trim().to_string();
        let username = auth.get_username().trim().to_string();
        let password = auth.get_password().to_string();
        let missing = if server.is_empty() {
            Some("Enter the server address")
        } else if username.is_empty() {
            Some("Enter your username")
        } else if password.is_empty() {
            Some("Enter your password")
        } else {
            None
        };
        if let Some(message) = missing {
            auth.set_error(message.into());
            return None;
        }
        Some((server, username, password))
    }

    pub(crate) fn login(&self) {
        let auth = self.ui.global::<AuthState>();
        if auth.get_busy() {
            return;
        }
        let Some((server, username, password)) = self.auth_inputs() else {
            return;
        };
        auth.set_busy(true);
        auth.set_error("".into());
        let name = username.clone();
        self.bridge.connect(
            self.client_config(&server),
            incoming,
            move |client| async move {
                let logged_in = client.login(&name, &password).await?;
                Ok((logged_in, client.session_token(), client.server_identity()))
            },
            move |result| with_app(|app| app.signed_in(result, server, username)),
        );
    }

    pub(crate) fn register(&self) {
        let auth = self.ui.global::<AuthState>();
        if auth.get_busy() {
            return;
        }
        let Some((server, username, password)) = self.auth_inputs() else {
            return;
        };
        if password != auth.get_password_again().as_str() {
            auth.set_error("The passwords do not match".into());
            return;
        }
        let display = auth.get_display_name().trim().to_string();
        let display = if display.is_empty() {
            username.clone()
        } else {
            display
        };
        auth.set_busy(true);
        auth.set_error("".into());
        let name = username.clone();
        self.bridge.connect(
            self.client_config(&server),
            incoming,
            move |client| async move {
                client.register(&name, &display, &password).await?;
                let logged_in = client.login(&name, &password).await?;
                Ok((logged_in, client.session_token(), client.server_identity()))
            },
            move |result| with_app(|app| app.signed_in(result, server, username)),
        );
    }

    /// Resumes the session saved by an earlier run, if any.
    pub(crate) fn resume_saved_session(&self) {
        let saved = match self.config.load_session() {
            Ok(Some(saved)) => saved,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        let auth = self.ui.global::<AuthState>();
        auth.set_busy(true);
        auth.set_server(saved.server.as_str().into());
        auth.set_username(saved.username.as_str().into());
        let token = saved.token.clone();
        self.bridge.connect(
            self.client_config(&saved.server),
            incoming,
            move |client| async move {
                let logged_in = client.resume(&token).await?;
                Ok((logged_in, Some(token), client.server_identity()))
            },
            move |result| {
                with_app(|app| {
                    if let Err(e) = &result
                        && e.code() == Some(pb::ErrorCode::SessionInvalid)
                    {
                        app.forget_session();
                    }
                    app.signed_in(result, saved.server, saved.username)
                })
            },
        );
    }

    fn signed_in(&self, result: Result<SignedIn, ClientError>, server: String, username: String) {
        let auth = self.ui.global::<AuthState>();
        auth.set_busy(false);
        let (logged_in, token, identity) = match result {
            Ok(done) => done,
            Err(e) => {
                self.bridge.disconnect(false);
                auth.set_error(describe(&e).into());
                return;
            }
        };
        auth.set_password("".into());
        auth.set_password_again("".into());
        if let Some(token) = token {
            let session = SavedSession {
                server: server.clone(),
                username: username.clone(),
                token,
            };
            let config = self.config.clone();
            self.bridge.blocking(
                move || config.save_session(&session),
                |result| {
                    if let Err(e) = result {
                        tracing::warn!("saving the session: {e}");
                    }
                },
            );
        }
        {
            let mut state = self.state.borrow_mut();
            state.prefs.last_server = server.clone();
            state.prefs.last_user = username;
            state.server = server;
            state.me = logged_in.user.clone();
        }
        self.save_preferences();
        if let Some(me) = &logged_in.user {
            self.people.borrow_mut().learn(me);
        }
        self.refresh_me();
        self.show_page(Page::Main);
        let main = self.ui.global::<Main>();
        main.set_banner("".into());
        if let Some(identity) = identity.filter(|i| i.newly_trusted) {
            main.set_server_fingerprint(spaced_fingerprint(&identity.fingerprint).into());
            main.set_overlay("trust".into());
        }
        self.load_everything();
    }

    /// Deletes the saved session on a worker thread.
    fn forget_session(&self) {
        let config = self.config.clone();
        self.bridge.blocking(
            move || config.remove_session(),
            |result| {
                if let Err(e) = result {
                    tracing::warn!("{e}");
                }
            },
        );
    }

    pub(crate) fn logout(&self) {
        self.clear_call();
        self.bridge.disconnect(true);
        self.forget_session();
        {
            let mut state = self.state.borrow_mut();
            let prefs = std::mem::take(&mut state.prefs);
            *state = super::State {
                prefs,
                window_focused: state.window_focused,
                ..Default::default()
            };
        }
        *self.people.borrow_mut() = Default::default();
        self.messages.reset(0, false, 0, Vec::new());
        let main = self.ui.global::<Main>();
        main.set_overlay("".into());
        main.set_current(-1);
        main.set_tab(0);
        self.refresh_conversations();
        self.refresh_friends();
        self.show_page(Page::Login);
    }
}

/// A fingerprint in groups of four for reading aloud: "ab12 cd34 …".
pub fn spaced_fingerprint(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_are_grouped() {
        assert_eq!(super::spaced_fingerprint("abcdef0123"), "abcd ef01 23");
    }
}
