//! Frame encode/decode: the per-frame cost every request and every pushed
//! message pays, for a typical chat message and for a 64 KiB frame.

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use parley_proto::{DEFAULT_MAX_FRAME_BYTES, FrameCodec, pb};
use tokio_util::codec::Decoder as _;

fn message_event(text_len: usize) -> pb::ServerFrame {
    pb::ServerFrame::event(pb::event::Kind::Message(pb::Message {
        conv_id: 7_321_442_113_024,
        seq: 184_223,
        id: 7_321_442_999_111,
        sender_id: 7_321_440_000_001,
        client_msg_id: "0192f3a4-5b6c-7d8e-9f01-23456789abcd".into(),
        kind: pb::MessageKind::Text as i32,
        text: "x".repeat(text_len),
        created_at_ms: 1_764_000_000_000,
        ..Default::default()
    }))
}

fn send_request(text_len: usize) -> pb::ClientFrame {
    pb::ClientFrame {
        request_id: 42,
        body: Some(pb::client_frame::Body::SendMessage(pb::SendMessage {
            conv_id: 7_321_442_113_024,
            client_msg_id: "0192f3a4-5b6c-7d8e-9f01-23456789abcd".into(),
            text: "x".repeat(text_len),
            ..Default::default()
        })),
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    for text_len in [100usize, 64 * 1024] {
        let event = message_event(text_len);
        let mut probe = BytesMut::new();
        parley_proto::frame::encode_frame(&event, DEFAULT_MAX_FRAME_BYTES, &mut probe).unwrap();
        group.throughput(Throughput::Bytes(probe.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("encode_message_event", text_len),
            &event,
            |b, event| {
                let mut buf = BytesMut::with_capacity(probe.len());
                b.iter(|| {
                    buf.clear();
                    parley_proto::frame::encode_frame(event, DEFAULT_MAX_FRAME_BYTES, &mut buf).unwrap();
                    std::hint::black_box(&buf);
                });
            },
        );

        let request = send_request(text_len);
        let mut wire = BytesMut::new();
        parley_proto::frame::encode_frame(&request, DEFAULT_MAX_FRAME_BYTES, &mut wire).unwrap();
        let wire = wire.freeze();
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("decode_send_request", text_len),
            &wire,
            |b, wire| {
                let mut codec = FrameCodec::<pb::ClientFrame, pb::ServerFrame>::new(DEFAULT_MAX_FRAME_BYTES);
                b.iter(|| {
                    let mut src = BytesMut::from(&wire[..]);
                    let frame = codec.decode(&mut src).unwrap().unwrap();
                    std::hint::black_box(frame);
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
