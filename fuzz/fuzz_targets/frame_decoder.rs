//! Feeds arbitrary bytes to the server-side frame decoder, split at an
//! arbitrary point, as a network peer could. Any panic is a bug.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use parley_proto::{FrameCodec, pb};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = (split as usize).min(rest.len());
    let mut codec = FrameCodec::<pb::ClientFrame, pb::ServerFrame>::new(64 * 1024);
    let mut buf = BytesMut::from(&rest[..cut]);
    // First part alone (may be a partial frame), then the remainder appended.
    for chunk in [&rest[cut..], &[][..]] {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let _ = parley_proto::request_name_opt(&frame);
                }
                Ok(None) | Err(_) => break,
            }
        }
        buf.extend_from_slice(chunk);
    }
    // The payload decoder on its own.
    let _ = parley_proto::frame::decode_payload::<pb::ClientFrame>(rest, 64 * 1024);
});
