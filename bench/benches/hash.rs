//! Bundle hashing micro-benchmarks, one core: raw blake3 over a 64 MiB buffer in the 1 MiB chunks
//! the builder and verifier use (`CHUNK_BYTES`), building a signed bundle in memory (hash pass +
//! write pass), and verifying it (signature + streaming blake3 of every file into a discarding
//! sink) — the work `sluice-send udp` does before sending and the receiver's verifier does
//! before commit.
//!
//! Run: `cargo bench -p sluice-bench --bench hash -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_common::bundle::build::CHUNK_BYTES;
use sluice_common::bundle::*;

const SIZE: usize = 64 << 20;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn data(len: usize) -> Vec<u8> {
    let mut seed = 42;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&splitmix(&mut seed).to_le_bytes());
    }
    v.truncate(len);
    v
}

fn source(files: usize) -> MemSource {
    let mut src = MemSource::default();
    let body = data(SIZE);
    let each = SIZE / files;
    for i in 0..files {
        src.0.insert(
            format!("d/f{i:04}.bin"),
            body[i * each..(i + 1) * each].to_vec(),
        );
    }
    src
}

fn spec() -> BundleSpec {
    BundleSpec {
        channel: "bench".into(),
        sequence: 1,
        created: 1_800_000_000,
        expires: None,
        note: None,
    }
}

fn hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("hash");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(SIZE as u64));
    let buf = data(SIZE);
    group.bench_function("blake3_update_1MiB_chunks", |b| {
        b.iter(|| {
            let mut h = blake3::Hasher::new();
            for chunk in buf.chunks(CHUNK_BYTES) {
                h.update(chunk);
            }
            black_box(h.finalize())
        })
    });
    group.bench_function("blake3_keyed_1414B_frames", |b| {
        // The per-frame tag's raw cost at MTU 1500, as a byte rate.
        let key = [7u8; 32];
        b.iter(|| {
            let mut x = 0u8;
            for frame in buf.chunks(1414) {
                x ^= blake3::keyed_hash(&key, frame).as_bytes()[0];
            }
            black_box(x)
        })
    });

    let key = SecretKey::from_seed(&[0xB7; 32]);
    let trust = TrustStore::from_parts(
        vec![("bench".into(), key.public().to_sluice_text("bench"))],
        None,
    )
    .expect("trust");
    let opts = VerifyOptions {
        now: 1_800_000_001,
        last_sequence: None,
    };
    for files in [1usize, 64] {
        let src = source(files);
        group.bench_function(BenchmarkId::new("build_bundle", files), |b| {
            b.iter(|| {
                let mut s = src.clone();
                let mut out = Vec::with_capacity(SIZE + 65536);
                build(&spec(), s.entries(), &key, &mut s, &mut out, &mut |_, _| {}).expect("build");
                black_box(out.len())
            })
        });
        let mut bytes = Vec::new();
        let mut s = src.clone();
        build(
            &spec(),
            s.entries(),
            &key,
            &mut s,
            &mut bytes,
            &mut |_, _| {},
        )
        .expect("build");
        group.bench_function(BenchmarkId::new("verify_bundle", files), |b| {
            b.iter(|| {
                verify(bytes.as_slice(), &trust, &opts, &mut DiscardSink).expect("verifies");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, hash);
criterion_main!(benches);
