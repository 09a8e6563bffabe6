//! Input rules for names, passwords and short texts (SPEC §2).
//!
//! Each rule returns the normalised value or a typed error the client can show
//! as is, so the same message reaches every client.

use parley_proto::pb::{self, ErrorCode};

/// Longest password accepted, in bytes: argon2 cost must not be attacker-chosen.
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
pub const MAX_STATUS_CHARS: usize = 140;
pub const MAX_NOTE_CHARS: usize = 256;
pub const MAX_REMARK_CHARS: usize = 64;
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// 3–32 of `a-z 0-9 _ . -`, case-insensitive: returns the lowercase form.
pub fn username(raw: &str) -> Result<String, pb::Error> {
    let name = raw.trim().to_ascii_lowercase();
    let ok_len = (3..=32).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if ok_len && ok_chars {
        Ok(name)
    } else {
        Err(pb::Error::new(
            ErrorCode::InvalidUsername,
            "username must be 3 to 32 characters of a-z, 0-9, '_', '.' or '-'",
        ))
    }
}

/// 8+ characters, at most [`MAX_PASSWORD_BYTES`] bytes.
pub fn password(raw: &str) -> Result<(), pb::Error> {
    if raw.chars().count() < 8 {
        return Err(pb::Error::new(
            ErrorCode::WeakPassword,
            "password must be at least 8 characters",
        ));
    }
    if raw.len() > MAX_PASSWORD_BYTES {
        return Err(pb::Error::new(
            ErrorCode::InvalidArgument,
            format!("password must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Trimmed, free of control characters, at most `max` characters; `field` names it in errors.
pub fn short_text(raw: &str, max: usize, field: &str) -> Result<String, pb::Error> {
    let text = raw.trim();
    if text.chars().count() > max {
        return Err(pb::Error::new(
            ErrorCode::InvalidArgument,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(pb::Error::new(
            ErrorCode::InvalidArgument,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(text.to_string())
}

/// A display name: non-empty short text.
pub fn display_name(raw: &str) -> Result<String, pb::Error> {
    let name = short_text(raw, MAX_DISPLAY_NAME_CHARS, "display name")?;
    if name.is_empty() {
        return Err(pb::Error::new(
            ErrorCode::InvalidArgument,
            "display name must not be empty",
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(username("Alice_01").unwrap(), "alice_01");
        assert_eq!(username("a.b-c").unwrap(), "a.b-c");
        for bad in [
            "ab",
            "",
            "with space",
            "ünïcode",
            "x".repeat(33).as_str(),
            "semi;colon",
        ] {
            assert_eq!(
                username(bad).unwrap_err().kind(),
                ErrorCode::InvalidUsername,
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords() {
        assert!(password("12345678").is_ok());
        assert!(password("пароль12").is_ok());
        assert_eq!(password("short").unwrap_err().kind(), ErrorCode::WeakPassword);
        assert_eq!(
            password(&"x".repeat(2000)).unwrap_err().kind(),
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn texts() {
        assert_eq!(display_name("  Zoë 🌸 ").unwrap(), "Zoë 🌸");
        assert!(display_name("   ").is_err());
        assert!(short_text("bell\u{7}", 10, "note").is_err());
        assert!(short_text(&"é".repeat(11), 10, "note").is_err());
    }
}
