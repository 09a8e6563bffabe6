//! Length-prefixed frames: a u32 big-endian payload length, then one protobuf
//! message.
//!
//! The limit is checked on the length prefix, before any payload is buffered,
//! so a peer announcing a 4 GiB frame costs us four bytes, not four gigabytes.
//! A frame over the limit or one that does not decode is a [`FrameError`]; the
//! caller answers with a typed error and closes, because after a lie about the
//! length the byte stream can no longer be trusted.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};

/// Size of the length prefix.
pub const HEADER_BYTES: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// A transport message that cannot hold a frame (e.g. a WebSocket text message).
    #[error("not a protocol frame: {0}")]
    NotAFrame(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Decodes one payload (without its length prefix) into `M`.
pub fn decode_payload<M: Message + Default>(payload: &[u8], max: usize) -> Result<M, FrameError> {
    if payload.len() > max {
        return Err(FrameError::TooLarge {
            len: payload.len(),
            max,
        });
    }
    Ok(M::decode(payload)?)
}

/// Encodes `msg` as a complete frame, length prefix included.
pub fn encode_frame<M: Message>(msg: &M, max: usize, dst: &mut BytesMut) -> Result<(), FrameError> {
    let len = msg.encoded_len();
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    dst.reserve(HEADER_BYTES + len);
    // Checked above: len <= max, and max is a usize we chose to fit u32.
    dst.put_u32(u32::try_from(len).map_err(|_| FrameError::TooLarge { len, max })?);
    msg.encode(dst)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(())
}

/// A `tokio_util` codec that reads frames of `In` and writes frames of `Out`.
///
/// The server uses `FrameCodec<ClientFrame, ServerFrame>`, the client the reverse.
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    max: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec refusing payloads larger than `max` bytes (capped at `u32::MAX`).
    pub fn new(max: usize) -> Self {
        FrameCodec {
            max: max.min(u32::MAX as usize),
            _types: PhantomData,
        }
    }

    /// The payload limit in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max
    }
}

impl<In: Message + Default, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        let Some(header) = src.get(..HEADER_BYTES) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if src.len() < HEADER_BYTES + len {
            src.reserve(HEADER_BYTES + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_BYTES);
        let payload = src.split_to(len);
        decode_payload(&payload, self.max).map(Some)
    }
}

impl<In, Out: Message> Encoder<Out> for FrameCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame(&item, self.max, dst)
    }
}

impl<In, Out: Message> Encoder<&Out> for FrameCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, item: &Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame(item, self.max, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    type ServerSide = FrameCodec<pb::ClientFrame, pb::ServerFrame>;
    type ClientSide = FrameCodec<pb::ServerFrame, pb::ClientFrame>;

    fn login_frame(user: &str) -> pb::ClientFrame {
        pb::ClientFrame {
            request_id: 7,
            body: Some(pb::client_frame::Body::Login(pb::Login {
                username: user.into(),
                password: "secret-pass".into(),
                device_name: "laptop".into(),
            })),
        }
    }

    #[test]
    fn round_trip_in_pieces() {
        let mut buf = BytesMut::new();
        ClientSide::new(1024)
            .encode(login_frame("alice"), &mut buf)
            .unwrap();
        ClientSide::new(1024)
            .encode(login_frame("bob"), &mut buf)
            .unwrap();
        let mut dec = ServerSide::new(1024);
        let mut fed = BytesMut::new();
        let mut out = Vec::new();
        // One byte at a time: partial headers and payloads must wait, not fail.
        for b in buf.iter() {
            fed.put_u8(*b);
            while let Some(f) = dec.decode(&mut fed).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, vec![login_frame("alice"), login_frame("bob")]);
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut buf = BytesMut::new();
        buf.put_u32(u32::MAX);
        match ServerSide::new(1024).decode(&mut buf) {
            Err(FrameError::TooLarge { len, max: 1024 }) => assert_eq!(len, u32::MAX as usize),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn encoder_refuses_oversized_frame() {
        let mut buf = BytesMut::new();
        let err = ClientSide::new(8)
            .encode(login_frame("alice"), &mut buf)
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { max: 8, .. }));
        assert!(buf.is_empty(), "nothing half-written");
    }

    #[test]
    fn garbage_payload_is_malformed() {
        let mut buf = BytesMut::new();
        buf.put_u32(3);
        buf.put_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(
            ServerSide::new(1024).decode(&mut buf),
            Err(FrameError::Malformed(_))
        ));
    }

    proptest::proptest! {
        /// Any byte string fed to the decoder yields frames or a typed error, never a panic,
        /// and never a frame larger than the limit.
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096),
                                max in 0usize..2048) {
            let mut dec = ServerSide::new(max);
            let mut buf = BytesMut::from(&data[..]);
            let mut frames = 0usize;
            while let Ok(Some(_)) = dec.decode(&mut buf) {
                frames += 1;
            }
            // Every frame consumes at least its 4-byte header.
            proptest::prop_assert!(frames <= data.len() / HEADER_BYTES);
        }

        /// Encoding then decoding any login frame returns it unchanged.
        #[test]
        fn round_trip(user in ".{0,64}", id in proptest::num::u64::ANY) {
            let mut frame = login_frame(&user);
            frame.request_id = id;
            let mut buf = BytesMut::new();
            ClientSide::new(4096).encode(frame.clone(), &mut buf).unwrap();
            let back = ServerSide::new(4096).decode(&mut buf).unwrap();
            proptest::prop_assert_eq!(back, Some(frame));
        }
    }
}
