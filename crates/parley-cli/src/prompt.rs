//! Getting passwords without leaking them.
//!
//! In order of preference a password comes from a flag or the environment
//! (for scripts), a no-echo prompt on a terminal, or one line of standard
//! input when that is not a terminal (`echo "$PW" | parley-cli login alice`).

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, Result};

use crate::failure::Failure;

/// `given`, or a password asked for with `prompt`. With `confirm`, a
/// terminal user types it twice.
pub fn password(given: Option<String>, prompt: &str, confirm: bool) -> Result<String> {
    if let Some(password) = given {
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading a password from standard input")?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        if password.is_empty() {
            return Err(Failure::Usage(
                "no password given: use --password, PARLEY_PASSWORD or a terminal".into(),
            )
            .into());
        }
        return Ok(password);
    }
    let password = rpassword::prompt_password(prompt).context("reading the password")?;
    if confirm {
        let again = rpassword::prompt_password("Repeat: ").context("reading the password")?;
        if again != password {
            return Err(Failure::Usage("the passwords do not match".into()).into());
        }
    }
    Ok(password)
}
