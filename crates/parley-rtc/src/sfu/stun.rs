//! Just enough STUN parsing to route a binding request to its call leg.
//!
//! Every leg has its own ICE username fragment, issued in the SDP answer through
//! signalling. A binding request names it as the first half of `USERNAME`
//! ("ours:theirs"), so one map lookup finds the only leg that may accept it; str0m
//! then checks the message integrity with that leg's password. Requests naming no
//! known leg cost one bounded scan of the attribute list.

/// First byte range of STUN in the RFC 7983 demultiplexing scheme.
pub(crate) fn is_stun(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(0..=3))
}

const HEADER_LEN: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
/// RFC 8489 caps USERNAME at 513 bytes.
const MAX_USERNAME: usize = 513;

/// The local (first) username fragment of a STUN message, if it carries one.
pub(crate) fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < HEADER_LEN || datagram.get(4..8)? != MAGIC_COOKIE {
        return None;
    }
    let declared = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(HEADER_LEN..HEADER_LEN.checked_add(declared)?)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let typ = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if typ == ATTR_USERNAME {
            if len > MAX_USERNAME {
                return None;
            }
            let username = std::str::from_utf8(value).ok()?;
            let (local, _remote) = username.split_once(':')?;
            return Some(local);
        }
        // Attribute values are padded to a multiple of four bytes.
        let padded = (4 + len).checked_next_multiple_of(4)?;
        rest = rest.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (typ, value) in attrs {
            body.extend_from_slice(&typ.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn finds_the_local_fragment_after_other_attributes() {
        let msg = message(&[(0x8022, b"soft"), (ATTR_USERNAME, b"abcd:efgh")]);
        assert!(is_stun(&msg));
        assert_eq!(local_ufrag(&msg), Some("abcd"));
    }

    #[test]
    fn rejects_truncated_and_malformed_messages() {
        let msg = message(&[(ATTR_USERNAME, b"abcd:efgh")]);
        for cut in 0..msg.len() {
            assert_eq!(local_ufrag(&msg[..cut]), None, "cut at {cut}");
        }
        assert_eq!(local_ufrag(&message(&[(ATTR_USERNAME, b"nocolon")])), None);
        assert_eq!(
            local_ufrag(&message(&[(ATTR_USERNAME, &[0xff, b':', 0xfe])])),
            None
        );
        let mut bad_cookie = msg.clone();
        bad_cookie[4] = 0;
        assert_eq!(local_ufrag(&bad_cookie), None);
        // An attribute claiming more bytes than the message holds.
        let mut overlong = msg;
        overlong[22] = 0xff;
        assert_eq!(local_ufrag(&overlong), None);
    }
}
