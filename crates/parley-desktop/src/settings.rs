//! What the desktop client keeps between runs, in the user's config directory
//! (`PARLEY_CONFIG_DIR` overrides it, as for the CLI): `desktop.toml` with the
//! last server, user and theme, `desktop-session.toml` with the session token,
//! and the trust-on-first-use `known_hosts` file.
//!
//! The session file holds a bearer token, so it is written owner-only and
//! replaced atomically: a crash never leaves half a secret behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the config directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The platform has no config directory and no override was given.
    #[error("cannot find a configuration directory; set PARLEY_CONFIG_DIR")]
    NoConfigDir,
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file exists but is not valid TOML of the expected shape.
    #[error("{path} is damaged: {reason}")]
    Damaged {
        /// The file concerned.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
}

/// Preferences remembered across runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Preferences {
    /// The server last signed in to.
    #[serde(default)]
    pub last_server: String,
    /// The username last signed in with.
    #[serde(default)]
    pub last_user: String,
    /// Dark theme on.
    #[serde(default)]
    pub dark: bool,
    /// Microphone for calls (`None`: the system default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub microphone: Option<String>,
    /// Speaker for calls (`None`: the system default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

/// A session to resume at start-up.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SavedSession {
    /// The server address the session belongs to.
    pub server: String,
    /// Who is signed in.
    pub username: String,
    /// The session's secret; never logged.
    pub token: String,
}

/// The config directory and the files in it.
#[derive(Clone, Debug)]
pub struct ConfigDir {
    dir: PathBuf,
}

impl ConfigDir {
    /// `PARLEY_CONFIG_DIR` if set, else the platform's config directory.
    pub fn from_env() -> Result<ConfigDir, SettingsError> {
        if let Some(dir) = std::env::var_os("PARLEY_CONFIG_DIR").filter(|d| !d.is_empty()) {
            return Ok(ConfigDir::at(PathBuf::from(dir)));
        }
        directories::ProjectDirs::from("org", "parley", "parley")
            .map(|dirs| ConfigDir::at(dirs.config_dir().to_path_buf()))
            .ok_or(SettingsError::NoConfigDir)
    }

    /// A config directory at `dir` (created when first written).
    pub fn at(dir: PathBuf) -> ConfigDir {
        ConfigDir { dir }
    }

    /// The trust-on-first-use file, shared with the CLI.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Where downloaded files go by default.
    pub fn downloads(&self) -> PathBuf {
        directories::UserDirs::new()
            .and_then(|dirs| dirs.download_dir().map(Path::to_path_buf))
            .unwrap_or_else(|| self.dir.join("downloads"))
    }

    /// A cache directory for opened files.
    pub fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// Saved preferences; defaults when there are none yet.
    pub fn load_preferences(&self) -> Result<Preferences, SettingsError> {
        Ok(self.read_toml("desktop.toml")?.unwrap_or_default())
    }

    /// Saves preferences.
    pub fn save_preferences(&self, prefs: &Preferences) -> Result<(), SettingsError> {
        self.write_toml("desktop.toml", prefs)
    }

    /// The saved session, if any.
    pub fn load_session(&self) -> Result<Option<SavedSession>, SettingsError> {
        self.read_toml("desktop-session.toml")
    }

    /// Saves the session, readable by the owner only.
    pub fn save_session(&self, session: &SavedSession) -> Result<(), SettingsError> {
        self.write_toml("desktop-session.toml", session)
    }

    /// Forgets the session; having none is not an error.
    pub fn remove_session(&self) -> Result<(), SettingsError> {
        let path = self.dir.join("desktop-session.toml");
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SettingsError::Io { path, source }),
        }
    }

    fn read_toml<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, SettingsError> {
        let path = self.dir.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(SettingsError::Io { path, source }),
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| SettingsError::Damaged {
                path,
                reason: e.to_string(),
            })
    }

    fn write_toml<T: Serialize>(&self, name: &str, value: &T) -> Result<(), SettingsError> {
        let path = self.dir.join(name);
        let text = toml::to_string(value).map_err(|e| SettingsError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        self.create_dir()?;
        let tmp = self.dir.join(format!(".{name}.{}", std::process::id()));
        write_private(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| SettingsError::Io { path, source })
    }

    fn create_dir(&self) -> Result<(), SettingsError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&self.dir).map_err(|source| SettingsError::Io {
            path: self.dir.clone(),
            source,
        })
    }
}

/// Writes a new file only its owner can read.
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

    #[test]
    fn preferences_and_sessions_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ConfigDir::at(tmp.path().join("cfg"));
        assert_eq!(dir.load_preferences().unwrap(), Preferences::default());
        assert_eq!(dir.load_session().unwrap(), None);
        let prefs = Preferences {
            last_server: "chat.example.org:7420".into(),
            last_user: "ada".into(),
            dark: true,
            microphone: Some("USB Headset Mono".into()),
            speaker: None,
        };
        dir.save_preferences(&prefs).unwrap();
        assert_eq!(dir.load_preferences().unwrap(), prefs);
        let session = SavedSession {
            server: prefs.last_server.clone(),
            username: "ada".into(),
            token: "secret".into(),
        };
        dir.save_session(&session).unwrap();
        assert_eq!(dir.load_session().unwrap(), Some(session));
        dir.remove_session().unwrap();
        dir.remove_session().unwrap();
        assert_eq!(dir.load_session().unwrap(), None);
    }

    #[test]
    fn a_damaged_file_is_reported_not_panicked_on() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("desktop.toml"), "dark = [").unwrap();
        let dir = ConfigDir::at(tmp.path().to_path_buf());
        assert!(matches!(
            dir.load_preferences(),
            Err(SettingsError::Damaged { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn the_session_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = ConfigDir::at(tmp.path().join("cfg"));
        let session = SavedSession {
            server: "s".into(),
            username: "u".into(),
            token: "t".into(),
        };
        dir.save_session(&session).unwrap();
        let mode = std::fs::metadata(tmp.path().join("cfg/desktop-session.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
