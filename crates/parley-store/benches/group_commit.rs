//! The group-commit batcher's core: `append_messages` on SQLite, one
//! transaction per batch. Per-message cost for batches of 1 (what a server
//! without group commit would pay) up to 1 024, in one conversation and spread
//! over 64 (each distinct conversation adds statements to the transaction).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use parley_store::{Effect, NewMessage, Store, StoreOptions};

const T0: i64 = 1_764_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    sender: i64,
    convs: Vec<i64>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
    let a = store.create_user("bench_a", "A", "x", T0).await.unwrap().id;
    let b = store.create_user("bench_b", "B", "x", T0).await.unwrap().id;
    let mut convs = Vec::new();
    for i in 0..64 {
        convs.push(
            store
                .create_group(a, &format!("g{i}"), &[b], 500, T0)
                .await
                .unwrap()
                .id,
        );
    }
    Fixture {
        _dir: dir,
        store,
        sender: a,
        convs,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let fx = rt.block_on(fixture());
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("append_messages_sqlite");
    group.sample_size(20);
    for (spread, batch) in [
        (1usize, 1usize),
        (1, 16),
        (1, 256),
        (1, 1024),
        (64, 256),
        (64, 1024),
    ] {
        group.throughput(Throughput::Elements(batch as u64));
        let id = BenchmarkId::new(format!("{spread}_conversations"), batch);
        group.bench_function(id, |b| {
            b.iter_batched(
                || {
                    (0..batch)
                        .map(|i| NewMessage {
                            conv_id: fx.convs[i % spread],
                            sender_id: fx.sender,
                            client_msg_id: format!("m{}", next.fetch_add(1, Relaxed)),
                            kind: 1,
                            body: "a message of about a hundred bytes, which is what most chat messages are, give or take"
                                .into(),
                            file_id: None,
                            effect: Effect::None,
                        })
                        .collect::<Vec<_>>()
                },
                |msgs| rt.block_on(fx.store.append_messages(&msgs, T0)).unwrap(),
                criterion::BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
