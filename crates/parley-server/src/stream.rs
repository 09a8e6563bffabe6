//! Framing over a byte stream with no buffer held while a connection is idle.
//!
//! `tokio_util`'s `FramedRead`/`FramedWrite` each keep an 8 KiB buffer for the
//! life of the connection. Most connections are idle most of the time, and at
//! tens of thousands of connections those buffers are most of the server's
//! memory. Here the read buffer exists only while a frame is partially
//! received, and outbound frames are written straight from their shared
//! `Bytes` with vectored writes instead of being copied into a write buffer.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use parley_proto::{FrameCodec, FrameError};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::Decoder as _;

/// Bytes read per call when no frame is pending. Lives on the stack of `poll_next`.
const READ_CHUNK: usize = 2048;
/// Most frames handed to one vectored write.
const MAX_IOV: usize = 64;

/// Decodes length-prefixed frames of type `In` from `io`.
pub struct FrameReader<R, In> {
    io: R,
    codec: FrameCodec<In, ()>,
    buf: BytesMut,
    eof: bool,
}

impl<R, In> FrameReader<R, In> {
    pub fn new(io: R, max_frame_bytes: usize) -> Self {
        FrameReader {
            io,
            codec: FrameCodec::new(max_frame_bytes),
            buf: BytesMut::new(),
            eof: false,
        }
    }
}

impl<R: AsyncRead + Unpin, In: Message + Default + Unpin> Stream for FrameReader<R, In> {
    type Item = Result<In, FrameError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.codec.decode(&mut this.buf) {
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(Some(frame)) => {
                    if this.buf.is_empty() {
                        // Give the memory back: the next frame may be minutes away.
                        this.buf = BytesMut::new();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(None) => {}
            }
            if this.eof {
                if this.buf.is_empty() {
                    return Poll::Ready(None);
                }
                let err = io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a frame");
                this.buf = BytesMut::new();
                return Poll::Ready(Some(Err(FrameError::Io(err))));
            }
            if this.buf.capacity() > this.buf.len() {
                // The decoder reserved room for a partial frame: read straight into it.
                match ready!(tokio_util::io::poll_read_buf(
                    Pin::new(&mut this.io),
                    cx,
                    &mut this.buf
                )) {
                    Ok(0) => this.eof = true,
                    Ok(_) => {}
                    Err(e) => return Poll::Ready(Some(Err(FrameError::Io(e)))),
                }
            } else {
                let mut chunk = [0u8; READ_CHUNK];
                let mut rb = ReadBuf::new(&mut chunk);
                match ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb)) {
                    Ok(()) if rb.filled().is_empty() => this.eof = true,
                    Ok(()) => this.buf.extend_from_slice(rb.filled()),
                    Err(e) => return Poll::Ready(Some(Err(FrameError::Io(e)))),
                }
            }
        }
    }
}

/// Writes already-encoded frames to `io`, many per vectored write.
pub struct FrameWriter<W> {
    io: W,
    pending: VecDeque<Bytes>,
}

impl<W> FrameWriter<W> {
    pub fn new(io: W) -> Self {
        FrameWriter {
            io,
            pending: VecDeque::new(),
        }
    }
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    fn poll_write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, bytes) in slices.iter_mut().zip(self.pending.iter()) {
                *slot = IoSlice::new(bytes);
                count += 1;
            }
            let mut written = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while written > 0 {
                let Some(front) = self.pending.front_mut() else {
                    break;
                };
                if written >= front.len() {
                    written -= front.len();
                    self.pending.pop_front();
                } else {
                    front.advance(written);
                    written = 0;
                }
            }
        }
        if self.pending.capacity() > MAX_IOV {
            self.pending = VecDeque::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> Sink<Bytes> for FrameWriter<W> {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.len() >= MAX_IOV {
            ready!(this.poll_write_pending(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> io::Result<()> {
        if !item.is_empty() {
            self.get_mut().pending.push_back(item);
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_pending(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_pending(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt as _, StreamExt as _};
    use parley_proto::pb;
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    fn encoded(nonce: u64) -> Bytes {
        let frame = pb::ClientFrame {
            request_id: nonce,
            body: Some(pb::client_frame::Body::Ping(pb::Ping { nonce })),
        };
        let mut buf = BytesMut::new();
        parley_proto::frame::encode_frame(&frame, 1 << 20, &mut buf).unwrap();
        buf.freeze()
    }

    #[tokio::test]
    async fn frames_split_anywhere_arrive_whole_and_in_order() {
        let (client, server) = tokio::io::duplex(7);
        let mut reader = FrameReader::<_, pb::ClientFrame>::new(server, 1 << 20);
        let writer = tokio::spawn(async move {
            let mut client = client;
            let mut all = Vec::new();
            for n in 1..=300u64 {
                all.extend_from_slice(&encoded(n));
            }
            // Odd-sized writes through a 7-byte pipe cut frames at every position.
            for chunk in all.chunks(13) {
                client.write_all(chunk).await.unwrap();
            }
        });
        for n in 1..=300u64 {
            let frame = reader.next().await.unwrap().unwrap();
            assert_eq!(frame.request_id, n);
        }
        writer.await.unwrap();
        assert!(reader.next().await.is_none());
        assert_eq!(reader.buf.capacity(), 0, "no buffer kept between frames");
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_an_error() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = FrameReader::<_, pb::ClientFrame>::new(server, 1 << 20);
        let frame = encoded(1);
        client.write_all(&frame[..frame.len() - 1]).await.unwrap();
        drop(client);
        assert!(matches!(reader.next().await, Some(Err(FrameError::Io(_)))));
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_buffering() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = FrameReader::<_, pb::ClientFrame>::new(server, 1024);
        client.write_all(&(1_000_000u32).to_be_bytes()).await.unwrap();
        assert!(matches!(
            reader.next().await,
            Some(Err(FrameError::TooLarge { .. }))
        ));
    }

    #[tokio::test]
    async fn writer_delivers_many_frames_through_a_narrow_pipe() {
        let (client, mut server) = tokio::io::duplex(5);
        let mut writer = FrameWriter::new(client);
        let frames: Vec<Bytes> = (1..=200u64).map(encoded).collect();
        let expected: Vec<u8> = frames.iter().flat_map(|b| b.iter().copied()).collect();
        let read = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut server, &mut got)
                .await
                .unwrap();
            got
        });
        for f in frames {
            writer.feed(f).await.unwrap();
        }
        writer.close().await.unwrap();
        assert_eq!(read.await.unwrap(), expected);
    }
}
