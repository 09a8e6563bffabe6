//! What the CLI keeps between runs: the saved session and the known-hosts
//! file, both in one configuration directory.
//!
//! `session.toml` holds a bearer token, so it is written owner-only (0600 on
//! unix, in a 0700 directory) and replaced atomically via a temporary file:
//! a crash or a concurrent run never leaves a half-written secret behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

/// A logged-in session, as saved by `login`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SavedSession {
    /// The server address the session belongs to.
    pub server: String,
    /// The certificate name used for that server, when not its host part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Who logged in.
    pub username: String,
    /// The session's secret; never printed.
    pub token: String,
}

/// The configuration directory and the files in it.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// `dir` if given, else the platform's config directory for Parley.
    pub fn new(dir: Option<PathBuf>) -> Result<Store> {
        let dir = match dir {
            Some(dir) => dir,
            None => directories::ProjectDirs::from("org", "parley", "parley")
                .map(|dirs| dirs.config_dir().to_path_buf())
                .ok_or_else(|| anyhow!("cannot find a configuration directory; pass --config-dir"))?,
        };
        Ok(Store { dir })
    }

    /// The trust-on-first-use file.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    fn session_path(&self) -> PathBuf {
        self.dir.join("session.toml")
    }

    /// The saved session, if there is one.
    pub fn load_session(&self) -> Result<Option<SavedSession>> {
        let path = self.session_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let session = toml::from_str(&text)
            .with_context(|| format!("{} is damaged; delete it and log in again", path.display()))?;
        Ok(Some(session))
    }

    /// Saves `session`, readable by the owner only.
    pub fn save_session(&self, session: &SavedSession) -> Result<()> {
        self.create_dir()?;
        let text = toml::to_string(session).context("encoding the session")?;
        let path = self.session_path();
        let tmp = self.dir.join(format!(".session.toml.{}", std::process::id()));
        write_private(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Forgets the saved session; no session is not an error.
    pub fn remove_session(&self) -> Result<()> {
        let path = self.session_path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }

    /// Creates the directory (owner-only on unix) if needed.
    pub fn create_dir(&self) -> Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))
    }
}

/// Writes a new file that only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SavedSession {
        SavedSession {
            server: "127.0.0.1:7420".into(),
            server_name: None,
            username: "alice".into(),
            token: "secret".into(),
        }
    }

    #[test]
    fn sessions_round_trip_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(Some(dir.path().join("cfg"))).unwrap();
        assert_eq!(store.load_session().unwrap(), None);
        store.save_session(&session()).unwrap();
        assert_eq!(store.load_session().unwrap(), Some(session()));
        store.remove_session().unwrap();
        store.remove_session().unwrap();
        assert_eq!(store.load_session().unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn the_session_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(Some(dir.path().join("cfg"))).unwrap();
        store.save_session(&session()).unwrap();
        let file = std::fs::metadata(dir.path().join("cfg/session.toml")).unwrap();
        assert_eq!(file.permissions().mode() & 0o777, 0o600);
        let folder = std::fs::metadata(dir.path().join("cfg")).unwrap();
        assert_eq!(folder.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_damaged_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(Some(dir.path().to_path_buf())).unwrap();
        std::fs::write(dir.path().join("session.toml"), "not = [toml").unwrap();
        let err = store.load_session().unwrap_err();
        assert!(format!("{err:#}").contains("damaged"));
    }
}
