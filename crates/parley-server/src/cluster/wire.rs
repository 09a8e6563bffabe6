//! The bytes nodes exchange over NATS, with no I/O.
//!
//! A node publishes *batches* on its own subject: its instance id (random per
//! process start, so a restarted node is told apart from its previous life)
//! followed by length-prefixed records. Batching lets one NATS message carry
//! everything the publisher had queued, so the per-message cost of NATS is
//! paid once per burst, not once per event. Client frames travel exactly as
//! the hub encoded them: the receiving node hands the same bytes to its
//! connections without decoding them.
//!
//! All integers are little-endian. Decoding never panics: NATS is trusted
//! infrastructure, but a truncated or foreign message must cost one log line,
//! not a node.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// One item of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Deliver `frame` (an encoded `ServerFrame`, length prefix included) to every local
    /// connection of each user in `users`.
    Push { users: Vec<i64>, frame: Bytes },
    /// Send `frame` to the local connections of `session_id` and close them.
    EndSession {
        user_id: i64,
        session_id: i64,
        frame: Bytes,
    },
    /// Forget the cached membership of a conversation.
    InvalidateConv(i64),
    /// Forget the cached direct-message permission of a pair of users.
    InvalidatePair(i64, i64),
    /// The publisher's local presence changed: `user_id` came online or went offline there.
    /// `version` counts the publisher's presence changes, so a receiver notices a lost one.
    Presence {
        user_id: i64,
        online: bool,
        version: u64,
    },
    /// The publisher is alive; its presence is at `version`.
    Heartbeat { version: u64 },
    /// The publisher is shutting down: forget it now instead of waiting for its heartbeat to stop.
    Bye,
}

/// A record or page that could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message truncated")]
    Truncated,
    #[error("unknown record tag {0}")]
    UnknownTag(u8),
}

const TAG_PUSH: u8 = 1;
const TAG_END_SESSION: u8 = 2;
const TAG_INVALIDATE_CONV: u8 = 3;
const TAG_INVALIDATE_PAIR: u8 = 4;
const TAG_PRESENCE: u8 = 5;
const TAG_HEARTBEAT: u8 = 6;
const TAG_BYE: u8 = 7;

/// Bytes a batch header takes (the instance id).
pub const BATCH_HEADER: usize = 8;

/// Starts a batch from `instance`.
pub fn begin_batch(instance: u64, buf: &mut BytesMut) {
    buf.put_u64_le(instance);
}

/// Appends one record to a batch.
pub fn put_record(record: &Record, buf: &mut BytesMut) {
    let len_at = buf.len();
    buf.put_u32_le(0);
    match record {
        Record::Push { users, frame } => {
            buf.put_u8(TAG_PUSH);
            buf.put_u32_le(u32::try_from(users.len()).unwrap_or(u32::MAX));
            for u in users.iter().take(u32::MAX as usize) {
                buf.put_i64_le(*u);
            }
            buf.put_slice(frame);
        }
        Record::EndSession {
            user_id,
            session_id,
            frame,
        } => {
            buf.put_u8(TAG_END_SESSION);
            buf.put_i64_le(*user_id);
            buf.put_i64_le(*session_id);
            buf.put_slice(frame);
        }
        Record::InvalidateConv(conv_id) => {
            buf.put_u8(TAG_INVALIDATE_CONV);
            buf.put_i64_le(*conv_id);
        }
        Record::InvalidatePair(a, b) => {
            buf.put_u8(TAG_INVALIDATE_PAIR);
            buf.put_i64_le(*a);
            buf.put_i64_le(*b);
        }
        Record::Presence {
            user_id,
            online,
            version,
        } => {
            buf.put_u8(TAG_PRESENCE);
            buf.put_i64_le(*user_id);
            buf.put_u8(u8::from(*online));
            buf.put_u64_le(*version);
        }
        Record::Heartbeat { version } => {
            buf.put_u8(TAG_HEARTBEAT);
            buf.put_u64_le(*version);
        }
        Record::Bye => buf.put_u8(TAG_BYE),
    }
    let len = u32::try_from(buf.len() - len_at - 4).unwrap_or(u32::MAX);
    buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
}

fn need(buf: &Bytes, n: usize) -> Result<(), WireError> {
    if buf.remaining() < n {
        Err(WireError::Truncated)
    } else {
        Ok(())
    }
}

fn i64_of(buf: &mut Bytes) -> Result<i64, WireError> {
    need(buf, 8)?;
    Ok(buf.get_i64_le())
}

fn u64_of(buf: &mut Bytes) -> Result<u64, WireError> {
    need(buf, 8)?;
    Ok(buf.get_u64_le())
}

fn u32_of(buf: &mut Bytes) -> Result<u32, WireError> {
    need(buf, 4)?;
    Ok(buf.get_u32_le())
}

fn users_of(buf: &mut Bytes) -> Result<Vec<i64>, WireError> {
    let n = u32_of(buf)? as usize;
    need(buf, n.checked_mul(8).ok_or(WireError::Truncated)?)?;
    Ok((0..n).map(|_| buf.get_i64_le()).collect())
}

fn record_of(mut body: Bytes) -> Result<Record, WireError> {
    need(&body, 1)?;
    Ok(match body.get_u8() {
        TAG_PUSH => {
            let users = users_of(&mut body)?;
            Record::Push { users, frame: body }
        }
        TAG_END_SESSION => Record::EndSession {
            user_id: i64_of(&mut body)?,
            session_id: i64_of(&mut body)?,
            frame: body,
        },
        TAG_INVALIDATE_CONV => Record::InvalidateConv(i64_of(&mut body)?),
        TAG_INVALIDATE_PAIR => Record::InvalidatePair(i64_of(&mut body)?, i64_of(&mut body)?),
        TAG_PRESENCE => {
            let user_id = i64_of(&mut body)?;
            need(&body, 1)?;
            let online = body.get_u8() != 0;
            Record::Presence {
                user_id,
                online,
                version: u64_of(&mut body)?,
            }
        }
        TAG_HEARTBEAT => Record::Heartbeat {
            version: u64_of(&mut body)?,
        },
        TAG_BYE => Record::Bye,
        other => return Err(WireError::UnknownTag(other)),
    })
}

/// Splits a batch into its sender's instance id and records. Frames are slices of `payload`
/// (no copy).
pub fn decode_batch(mut payload: Bytes) -> Result<(u64, Vec<Record>), WireError> {
    let instance = u64_of(&mut payload)?;
    let mut records = Vec::new();
    while payload.has_remaining() {
        let len = u32_of(&mut payload)? as usize;
        need(&payload, len)?;
        records.push(record_of(payload.split_to(len))?);
    }
    Ok((instance, records))
}

/// One page of a node's presence snapshot: the users connected to it at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPage {
    pub instance: u64,
    pub version: u64,
    /// This page's index, from 0.
    pub page: u32,
    /// How many pages the snapshot has (at least 1).
    pub pages: u32,
    pub users: Vec<i64>,
}

impl SnapshotPage {
    /// The page as bytes.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(28 + self.users.len() * 8);
        buf.put_u64_le(self.instance);
        buf.put_u64_le(self.version);
        buf.put_u32_le(self.page);
        buf.put_u32_le(self.pages);
        buf.put_u32_le(u32::try_from(self.users.len()).unwrap_or(u32::MAX));
        for u in self.users.iter().take(u32::MAX as usize) {
            buf.put_i64_le(*u);
        }
        buf.freeze()
    }

    /// Parses a page.
    pub fn decode(mut payload: Bytes) -> Result<SnapshotPage, WireError> {
        Ok(SnapshotPage {
            instance: u64_of(&mut payload)?,
            version: u64_of(&mut payload)?,
            page: u32_of(&mut payload)?,
            pages: u32_of(&mut payload)?,
            users: users_of(&mut payload)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_records() -> Vec<Record> {
        vec![
            Record::Push {
                users: vec![1, -2, i64::MAX],
                frame: Bytes::from_static(b"\0\0\0\x03abc"),
            },
            Record::EndSession {
                user_id: 7,
                session_id: 9,
                frame: Bytes::from_static(b"xyz"),
            },
            Record::InvalidateConv(42),
            Record::InvalidatePair(3, 4),
            Record::Presence {
                user_id: 5,
                online: true,
                version: 77,
            },
            Record::Heartbeat { version: 78 },
            Record::Bye,
            Record::Push {
                users: vec![],
                frame: Bytes::new(),
            },
        ]
    }

    #[test]
    fn batches_round_trip() {
        let mut buf = BytesMut::new();
        begin_batch(0xfeed, &mut buf);
        for r in all_records() {
            put_record(&r, &mut buf);
        }
        let (instance, records) = decode_batch(buf.freeze()).unwrap();
        assert_eq!(instance, 0xfeed);
        assert_eq!(records, all_records());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut buf = BytesMut::new();
        begin_batch(1, &mut buf);
        for r in all_records() {
            put_record(&r, &mut buf);
        }
        let full = buf.freeze();
        for cut in 0..full.len() {
            // A cut exactly between records is a valid shorter batch; anything else errs.
            let _ = decode_batch(full.slice(..cut));
        }
        assert_eq!(
            decode_batch(Bytes::from_static(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 99])),
            Err(WireError::UnknownTag(99))
        );
        let huge_count = [
            0u8, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, TAG_PUSH, 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(
            decode_batch(Bytes::copy_from_slice(&huge_count)),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn snapshot_pages_round_trip() {
        let page = SnapshotPage {
            instance: 9,
            version: 10,
            page: 1,
            pages: 3,
            users: vec![4, 5, 6],
        };
        assert_eq!(SnapshotPage::decode(page.encode()), Ok(page.clone()));
        let bytes = page.encode();
        for cut in 0..bytes.len() {
            assert!(SnapshotPage::decode(bytes.slice(..cut)).is_err());
        }
    }
}
