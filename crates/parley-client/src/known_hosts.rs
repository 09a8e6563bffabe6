//! The trust-on-first-use file: one `address fingerprint` line per server.
//!
//! The format is plain text so a user can read it and delete a line when a
//! server's certificate was replaced on purpose. Lines starting with `#` and
//! lines that do not parse are kept as they are, so the SDK never destroys
//! what a person wrote. Updates go through a temporary file and a rename, so
//! a crash never leaves half a file.

use std::path::Path;

use crate::error::ClientError;
use crate::tls::normalize_fingerprint;

/// The fingerprint recorded for `address` in the file at `path`; `None` when
/// the file or the entry does not exist yet.
pub(crate) fn lookup(path: &Path, address: &str) -> Result<Option<String>, ClientError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(find(&text, address)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::Io(e)),
    }
}

/// Records `fingerprint` for `address`, replacing an older entry.
pub(crate) fn remember(path: &Path, address: &str, fingerprint: &str) -> Result<(), ClientError> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ClientError::Io(e)),
    };
    let new = upsert(&old, address, fingerprint);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    std::fs::write(&tmp, new)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The key a server is filed under: the address as configured, without
/// surrounding space, host names compared case-insensitively.
fn key(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

/// Parses one line into `(address, fingerprint)`, `None` for comments and junk.
fn parse_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    let mut words = line.split_whitespace();
    let address = words.next()?;
    let fingerprint = normalize_fingerprint(words.next()?)?;
    Some((key(address), fingerprint))
}

fn find(text: &str, address: &str) -> Option<String> {
    let wanted = key(address);
    text.lines()
        .filter_map(parse_line)
        .find(|(a, _)| *a == wanted)
        .map(|(_, fp)| fp)
}

/// `text` with the entry for `address` set to `fingerprint`.
fn upsert(text: &str, address: &str, fingerprint: &str) -> String {
    let wanted = key(address);
    let mut out = String::new();
    if text.is_empty() {
        out.push_str("# Parley server certificates trusted on first use: address sha256\n");
    }
    for line in text.lines() {
        let is_old_entry = parse_line(line).is_some_and(|(a, _)| a == wanted);
        if !is_old_entry {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("{wanted} {fingerprint}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const FP_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn missing_file_means_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        assert_eq!(lookup(&path, "example.org:7420").unwrap(), None);
    }

    #[test]
    fn remembers_and_replaces_per_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("known_hosts");
        remember(&path, "a.example:7420", FP_A).unwrap();
        remember(&path, "b.example:7420", FP_B).unwrap();
        assert_eq!(lookup(&path, "A.example:7420").unwrap().as_deref(), Some(FP_A));
        assert_eq!(lookup(&path, "b.example:7420").unwrap().as_deref(), Some(FP_B));
        remember(&path, "a.example:7420", FP_B).unwrap();
        assert_eq!(lookup(&path, "a.example:7420").unwrap().as_deref(), Some(FP_B));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("a.example")).count(), 1);
    }

    #[test]
    fn keeps_comments_and_junk() {
        let text = "# mine\nnot a valid line\n";
        let out = upsert(text, "x:1", FP_A);
        assert!(out.starts_with("# mine\nnot a valid line\n"));
        assert_eq!(find(&out, "x:1").as_deref(), Some(FP_A));
        assert_eq!(find(&out, "y:1"), None);
    }
}
