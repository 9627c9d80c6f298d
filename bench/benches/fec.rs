//! FEC and tag micro-benchmarks at the recommended geometry (docs/protocol.md §7), one core:
//! encode (intermediate symbols + 10 % repair), decode when every source symbol arrived (copy
//! path), decode at 5 % loss (RaptorQ path), and the per-frame tag (encode and verify).
//!
//! Run: `cargo bench -p sluice-bench --bench fec -- --warm-up-time 1 --measurement-time 3`;
//! with `SLUICE_BENCH_ALTERNATIVES=1`, the FEC cases run at the alternative geometries the
//! recommended block sizes were chosen against instead.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_common::transport::fec::{Assembled, BlockAssembler, BlockEncoder};
use sluice_common::transport::params::{Limits, ObjectParams, recommended_block_size};
use sluice_common::transport::wire::{self, DataHeader, LinkKey};

const SYMBOL_SIZES: [u16; 2] = [1414, 8914];

/// Deterministic filler and loss pattern without pulling a RNG crate into the bench.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Alternative geometries (T, K) that the recommended ones were chosen against.
const ALTERNATIVES: [(u16, u32); 4] = [(1414, 371), (1414, 1484), (8914, 118), (8914, 942)];

fn block_params(t: u16) -> (ObjectParams, Vec<u8>) {
    geometry(t, recommended_block_size(t))
}

fn geometry(t: u16, block_size: u32) -> (ObjectParams, Vec<u8>) {
    let params = ObjectParams {
        object_id: [1; 16],
        object_len: u64::from(block_size),
        block_size,
        symbol_size: t,
    };
    let mut seed = u64::from(t);
    let data = (0..block_size).map(|_| splitmix(&mut seed) as u8).collect();
    (params, data)
}

/// Every symbol the sender emits for one block in pass 1 with 10 % repair: (esi, payload).
fn sent_symbols(enc: &BlockEncoder) -> Vec<(u32, Vec<u8>)> {
    let k = enc.source_symbol_count();
    let mut out: Vec<(u32, Vec<u8>)> = (0..k)
        .map(|esi| (esi, enc.source_symbol(esi).expect("esi < K").to_vec()))
        .collect();
    enc.repair_symbols(k, k.div_ceil(10), |esi, s| out.push((esi, s.to_vec())))
        .expect("repair range fits");
    out
}

fn assemble(params: &ObjectParams, symbols: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut asm = BlockAssembler::new(params, 0, &Limits::default()).expect("within limits");
    for (esi, payload) in symbols {
        asm.add(*esi, payload).expect("valid symbol");
        match asm.poll() {
            Assembled::Pending => {}
            Assembled::Complete(bytes) => return bytes,
            Assembled::Decode(job) => match job.run() {
                Ok(bytes) => return bytes,
                Err(failed) => asm.restore(failed),
            },
        }
    }
    panic!("block did not decode");
}

fn fec(c: &mut Criterion) {
    let mut group = c.benchmark_group("fec");
    group.sample_size(10);
    let recommended = SYMBOL_SIZES.map(|t| (t, recommended_block_size(t) / u32::from(t)));
    let alternatives = std::env::var_os("SLUICE_BENCH_ALTERNATIVES").is_some();
    let cases: Vec<(u16, u32)> = if alternatives {
        ALTERNATIVES.to_vec()
    } else {
        recommended.to_vec()
    };
    for (t, k) in cases {
        let (params, data) = geometry(t, k * u32::from(t));
        let label = format!("T{t}_K{}", params.max_source_symbols());
        group.throughput(Throughput::Bytes(data.len() as u64));

        group.bench_with_input(
            BenchmarkId::new("encode_10pct_repair", &label),
            &data,
            |b, data| {
                b.iter(|| {
                    let enc = BlockEncoder::new(&params, 0, data).expect("valid block");
                    let k = enc.source_symbol_count();
                    let mut sum = 0u8;
                    enc.repair_symbols(k, k.div_ceil(10), |_, s| sum ^= s[0])
                        .expect("repair range fits");
                    black_box(sum)
                })
            },
        );

        let enc = BlockEncoder::new(&params, 0, &data).expect("valid block");
        let all = sent_symbols(&enc);
        let k = enc.source_symbol_count() as usize;

        let source_only = &all[..k];
        group.bench_function(BenchmarkId::new("decode_all_source_copy", &label), |b| {
            b.iter(|| black_box(assemble(&params, source_only)))
        });

        let mut seed = 5;
        let survivors: Vec<(u32, Vec<u8>)> = all
            .iter()
            .filter(|_| splitmix(&mut seed) % 100 >= 5)
            .cloned()
            .collect();
        assert_eq!(assemble(&params, &survivors), data, "5 % loss decodes");
        group.bench_function(BenchmarkId::new("decode_5pct_loss", &label), |b| {
            b.iter(|| black_box(assemble(&params, &survivors)))
        });
    }
    group.finish();
}

fn tag(c: &mut Criterion) {
    let mut group = c.benchmark_group("tag");
    let key = LinkKey::from_bytes([7; 32]);
    for t in SYMBOL_SIZES {
        let (params, _) = block_params(t);
        let header = DataHeader {
            params,
            block: 0,
            esi: 3,
        };
        let payload = vec![0x5A; usize::from(t)];
        let mut frame = vec![0u8; wire::data_frame_len(t)];
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(BenchmarkId::new("encode_data_frame", t), |b| {
            b.iter(|| wire::encode_data(&key, &header, black_box(&payload), &mut frame))
        });
        let len = wire::encode_data(&key, &header, &payload, &mut frame).expect("valid");
        group.bench_function(BenchmarkId::new("decode_data_frame", t), |b| {
            b.iter(|| wire::decode(&key, black_box(&frame[..len])).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, fec, tag);
criterion_main!(benches);
