//! CLI-level failures and the exit code for any error.
//!
//! Scripts can tell a mistake on the command line (2) and a missing or
//! refused login (3) from everything else (1) without parsing messages.

use parley_client::{ClientError, pb};

/// Exit code for a command-line mistake (clap uses the same).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for "log in (again)": no session, wrong password, revoked token.
pub const EXIT_AUTH: u8 = 3;
/// Exit code for every other failure.
pub const EXIT_OTHER: u8 = 1;

/// Failures the CLI itself detects.
#[derive(Debug)]
pub enum Failure {
    /// The command line asks for something impossible.
    Usage(String),
    /// There is no usable session.
    Auth(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(msg) | Failure::Auth(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Failure {}

/// The exit code that best describes `err`.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return match failure {
                Failure::Usage(_) => EXIT_USAGE,
                Failure::Auth(_) => EXIT_AUTH,
            };
        }
        if let Some(client) = cause.downcast_ref::<ClientError>() {
            return match client.code() {
                Some(
                    pb::ErrorCode::Unauthenticated
                    | pb::ErrorCode::WrongCredentials
                    | pb::ErrorCode::SessionInvalid,
                ) => EXIT_AUTH,
                _ => EXIT_OTHER,
            };
        }
    }
    EXIT_OTHER
}

/// The one-line message printed after `error: `.
pub fn message(err: &anyhow::Error) -> String {
    format!("{err:#}").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn exit_codes_follow_the_cause() {
        let usage = anyhow::Error::new(Failure::Usage("x".into()));
        assert_eq!(exit_code(&usage), EXIT_USAGE);
        let wrapped: anyhow::Result<()> = Err(ClientError::Server(pb::Error::new(
            pb::ErrorCode::WrongCredentials,
            "no",
        )))
        .context("logging in");
        assert_eq!(exit_code(&wrapped.unwrap_err()), EXIT_AUTH);
        assert_eq!(
            exit_code(&anyhow::Error::new(ClientError::NotLoggedIn)),
            EXIT_AUTH
        );
        assert_eq!(exit_code(&anyhow::Error::new(ClientError::Timeout)), EXIT_OTHER);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), EXIT_OTHER);
    }

    #[test]
    fn messages_fit_on_one_line() {
        let err = anyhow::anyhow!("two\nlines").context("outer");
        assert_eq!(message(&err), "outer: two lines");
    }
}
