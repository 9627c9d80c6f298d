//! The RaptorQ adapter round-trips every block shape, survives loss, and refuses (never panics
//! on) every input raptorq itself would panic on.

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_common::transport::fec::{
    AddOutcome, Assembled, BlockAssembler, BlockEncoder, FecError,
};
use sluice_common::transport::params::{Limits, ObjectParams, ParamsError};

fn params(len: u64, block_size: u32, symbol_size: u16) -> ObjectParams {
    ObjectParams {
        object_id: [7; 16],
        object_len: len,
        block_size,
        symbol_size,
    }
}

fn test_limits() -> Limits {
    Limits {
        min_symbol_size: 1,
        ..Limits::default()
    }
}

fn object(len: u64, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; usize::try_from(len).expect("test sizes fit usize")];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

fn block_bytes<'a>(p: &ObjectParams, data: &'a [u8], block: u32) -> &'a [u8] {
    let start =
        usize::try_from(p.block_offset(u64::from(block)).expect("block in range")).expect("fits");
    let len = p.block_len(u64::from(block)).expect("block in range") as usize;
    &data[start..start + len]
}

/// Feed `esis` of block `block` to a fresh assembler and drive it to the block's bytes.
fn assemble(enc: &BlockEncoder, p: &ObjectParams, block: u32, esis: &[u32]) -> Option<Vec<u8>> {
    let mut asm = BlockAssembler::new(p, block, &test_limits()).expect("params within limits");
    let mut buf = vec![0u8; usize::from(p.symbol_size)];
    for &esi in esis {
        enc.write_symbol(esi, &mut buf).expect("valid esi");
        asm.add(esi, &buf).expect("valid symbol");
        match asm.poll() {
            Assembled::Pending => {}
            Assembled::Complete(bytes) => return Some(bytes),
            Assembled::Decode(job) => match job.run() {
                Ok(bytes) => return Some(bytes),
                Err(failed) => asm.restore(failed),
            },
        }
    }
    None
}

#[test]
fn all_source_symbols_round_trip_for_every_block_shape() {
    // (object length, block size, symbol size): block < T, len = T ± 1, last block short,
    // exact multiples, a single byte.
    let cases: &[(u64, u32, u16)] = &[
        (1, 1024, 64),
        (63, 1024, 64),
        (64, 1024, 64),
        (65, 1024, 64),
        (100, 50, 64),
        (5000, 1000, 64),
        (5001, 1000, 64),
        (4096, 4096, 1414),
        (3 * 1414 * 10 + 17, 1414 * 10, 1414),
        (20_000, 8914 * 2, 8914),
    ];
    for &(len, bs, t) in cases {
        let p = params(len, bs, t);
        let data = object(len, len);
        let mut out = Vec::new();
        for block in 0..u32::try_from(p.block_count()).expect("small") {
            let bytes = block_bytes(&p, &data, block);
            let enc = BlockEncoder::new(&p, block, bytes).expect("valid block");
            let k = enc.source_symbol_count();
            assert_eq!(k, p.source_symbols(u64::from(block)));
            let esis: Vec<u32> = (0..k).collect();
            let got = assemble(&enc, &p, block, &esis).expect("all source symbols decode");
            assert_eq!(got.len(), bytes.len(), "case {len}/{bs}/{t} block {block}");
            out.extend_from_slice(&got);
        }
        assert_eq!(out, data, "case {len}/{bs}/{t}");
    }
}

#[test]
fn repair_only_and_mixed_symbols_decode_for_every_block_shape() {
    let cases: &[(u64, u32, u16)] = &[
        (1, 1024, 64),
        (65, 1024, 64),
        (5001, 1000, 64),
        (3 * 1414 * 10 + 17, 1414 * 10, 1414),
        (20_000, 8914 * 2, 8914),
    ];
    for &(len, bs, t) in cases {
        let p = params(len, bs, t);
        let data = object(len, len + 1);
        for block in 0..u32::try_from(p.block_count()).expect("small") {
            let bytes = block_bytes(&p, &data, block);
            let enc = BlockEncoder::new(&p, block, bytes).expect("valid block");
            let k = enc.source_symbol_count();
            // Repair symbols only, with a few spare in case exact K fails.
            let repair: Vec<u32> = (k..k + k + 8).collect();
            assert_eq!(assemble(&enc, &p, block, &repair).as_deref(), Some(bytes));
            // Every other source symbol, then repair.
            let mixed: Vec<u32> = (0..k).step_by(2).chain(k + 100..k + 100 + k + 8).collect();
            assert_eq!(assemble(&enc, &p, block, &mixed).as_deref(), Some(bytes));
        }
    }
}

#[test]
fn random_loss_with_at_least_k_plus_two_survivors_decodes() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (bs, t, loss) in [
        (1414 * 742, 1414u16, 0.05),
        (8914 * 60, 8914, 0.2),
        (64 * 500, 64, 0.3),
    ] {
        let len = u64::from(bs) * 2 + 999;
        let p = params(len, bs, t);
        let data = object(len, 9);
        for block in 0..u32::try_from(p.block_count()).expect("small") {
            let bytes = block_bytes(&p, &data, block);
            let enc = BlockEncoder::new(&p, block, bytes).expect("valid block");
            let k = enc.source_symbol_count();
            let sent = k + k / 2 + 4;
            let mut survivors: Vec<u32> = (0..sent).filter(|_| !rng.random_bool(loss)).collect();
            assert!(survivors.len() as u32 >= k + 2, "test sends enough repair");
            survivors.shuffle(&mut rng);
            assert_eq!(
                assemble(&enc, &p, block, &survivors).as_deref(),
                Some(bytes),
                "bs {bs} t {t} block {block}"
            );
        }
    }
}

#[test]
fn exact_k_decode_failures_are_need_more_and_retry_succeeds() {
    // At exactly K symbols RaptorQ fails ~1/256 of the time. Try many small blocks with
    // distinct repair-only symbol sets so some attempt fails; every failure must be a NeedMore,
    // and adding symbols must then succeed.
    let p = params(64 * 20, 64 * 20, 64);
    let data = object(p.object_len, 3);
    let enc = BlockEncoder::new(&p, 0, &data).expect("valid");
    let k = enc.source_symbol_count();
    let mut failures = 0;
    let mut buf = vec![0u8; 64];
    for start in 0..1500u32 {
        let mut asm = BlockAssembler::new(&p, 0, &test_limits()).expect("valid");
        let first = k + start * k;
        for esi in first..first + k {
            enc.write_symbol(esi, &mut buf).expect("valid");
            assert_eq!(asm.add(esi, &buf), Ok(AddOutcome::Stored));
        }
        let Assembled::Decode(job) = asm.poll() else {
            panic!("K repair symbols must offer a decode job");
        };
        assert_eq!(job.symbols(), k);
        match job.run() {
            Ok(bytes) => assert_eq!(bytes, data),
            Err(need_more) => {
                failures += 1;
                assert_eq!(need_more.symbols, k);
                asm.restore(need_more);
                // One more symbol is not yet a new attempt; two more is.
                enc.write_symbol(first + k, &mut buf).expect("valid");
                asm.add(first + k, &buf).expect("valid");
                assert!(matches!(asm.poll(), Assembled::Pending));
                let mut esi = first + k + 1;
                let bytes = loop {
                    enc.write_symbol(esi, &mut buf).expect("valid");
                    asm.add(esi, &buf).expect("valid");
                    esi += 1;
                    match asm.poll() {
                        Assembled::Decode(job) => match job.run() {
                            Ok(bytes) => break bytes,
                            Err(failed) => asm.restore(failed),
                        },
                        Assembled::Pending => {}
                        Assembled::Complete(_) => panic!("no source symbols were added"),
                    }
                    assert!(esi < first + k + 16, "retries must succeed quickly");
                };
                assert_eq!(bytes, data);
            }
        }
    }
    assert!(
        failures > 0,
        "expected at least one exact-K failure in 1500 tries"
    );
}

/// A decode job takes the assembler's symbols instead of copying them (the receiver never holds
/// a block's symbols twice). While it runs, new symbols are stored and lent ones are still
/// duplicates; a failed job's symbols come back with those, and the next attempt decodes.
#[test]
fn a_decode_job_takes_the_symbols_and_a_failed_one_gives_them_back() {
    let p = params(64 * 20, 64 * 20, 64);
    let data = object(p.object_len, 3);
    let enc = BlockEncoder::new(&p, 0, &data).expect("valid");
    let k = enc.source_symbol_count();
    let mut buf = vec![0u8; 64];
    let mut failures = 0;
    for start in 0..1500u32 {
        let mut asm = BlockAssembler::new(&p, 0, &test_limits()).expect("valid");
        let first = k + start * k;
        for esi in first..first + k {
            enc.write_symbol(esi, &mut buf).expect("valid");
            asm.add(esi, &buf).expect("valid");
        }
        let held = asm.bytes_held();
        let Assembled::Decode(job) = asm.poll() else {
            panic!("K repair symbols must offer a decode job");
        };
        assert!(
            asm.bytes_held() + (k as usize) * 64 <= held,
            "the payloads left with the job"
        );
        assert_eq!(asm.add(first, &buf), Ok(AddOutcome::Duplicate));
        enc.write_symbol(first + k, &mut buf).expect("valid");
        assert_eq!(asm.add(first + k, &buf), Ok(AddOutcome::Stored));
        assert_eq!(asm.symbols_held(), k + 1);
        assert!(
            matches!(asm.poll(), Assembled::Pending),
            "one job at a time"
        );
        let Err(failed) = job.run() else { continue };
        failures += 1;
        asm.restore(failed);
        assert_eq!(asm.symbols_held(), k + 1);
        enc.write_symbol(first + k + 1, &mut buf).expect("valid");
        asm.add(first + k + 1, &buf).expect("valid");
        let Assembled::Decode(job) = asm.poll() else {
            panic!("K + 2 symbols after a failure must offer a new job");
        };
        assert_eq!(job.symbols(), k + 2);
        match job.run() {
            Ok(bytes) => assert_eq!(bytes, data),
            // ≈ 1/256² per try; the restored symbols are then all there for the next one.
            Err(failed) => {
                asm.restore(failed);
                assert_eq!(asm.symbols_held(), k + 2);
            }
        }
    }
    assert!(failures > 0, "expected an exact-K failure in 1500 tries");
}

#[test]
fn duplicates_are_first_wins_and_storage_is_capped() {
    let p = params(64 * 10, 64 * 10, 64);
    let data = object(p.object_len, 4);
    let enc = BlockEncoder::new(&p, 0, &data).expect("valid");
    let limits = Limits {
        repair_surplus: 3,
        ..test_limits()
    };
    let mut asm = BlockAssembler::new(&p, 0, &limits).expect("valid");
    let mut buf = vec![0u8; 64];
    enc.write_symbol(0, &mut buf).expect("valid");
    assert_eq!(asm.add(0, &buf), Ok(AddOutcome::Stored));
    assert_eq!(asm.add(0, &[0xFF; 64]), Ok(AddOutcome::Duplicate));
    // Flood with repair ESIs: only K + surplus are kept.
    let mut stored = 1;
    for esi in 10..100_000u32 {
        if asm.add(esi, &[0xAA; 64]) == Ok(AddOutcome::Stored) {
            stored += 1;
        }
    }
    assert_eq!(stored, 10 + 3);
    assert_eq!(asm.symbols_held(), 13);
    assert!(asm.is_full());
    assert!(asm.bytes_held() <= 13 * 64 + 13 * 4 + 10 * 4 + 64 * 8);
    assert_eq!(asm.add(20, &[0; 64]), Ok(AddOutcome::Duplicate));
    assert_eq!(asm.add(5, &buf), Ok(AddOutcome::Full));
}

#[test]
fn invalid_inputs_are_errors_not_panics() {
    let p = params(1000, 500, 64);
    let data = object(1000, 1);
    // Encoder: wrong block length, block out of range, zero sizes, K over raptorq's maximum.
    assert!(matches!(
        BlockEncoder::new(&p, 0, &data[..499]),
        Err(FecError::BlockLength { .. })
    ));
    assert!(matches!(
        BlockEncoder::new(&p, 2, &data[..0]),
        Err(FecError::BlockOutOfRange { .. })
    ));
    assert!(matches!(
        BlockEncoder::new(&params(1000, 500, 0), 0, &data[..500]),
        Err(FecError::ZeroSize)
    ));
    assert!(matches!(
        BlockEncoder::new(&params(1000, 0, 64), 0, &data[..0]),
        Err(FecError::ZeroSize)
    ));
    let huge = params(56_404, 56_404, 1);
    assert!(matches!(
        BlockEncoder::new(&huge, 0, &vec![0; 56_404]),
        Err(FecError::TooManySourceSymbols(56_404))
    ));
    let enc = BlockEncoder::new(&p, 1, &data[500..]).expect("valid");
    let k = enc.source_symbol_count();
    assert_eq!(k, 8);
    assert!(matches!(
        enc.source_symbol(k),
        Err(FecError::EsiOutOfRange(8))
    ));
    let mut buf = vec![0u8; 64];
    assert!(matches!(
        enc.write_symbol(1 << 24, &mut buf),
        Err(FecError::EsiOutOfRange(_))
    ));
    assert!(matches!(
        enc.write_symbol(0, &mut buf[..63]),
        Err(FecError::SymbolLength { .. })
    ));
    assert!(matches!(
        enc.repair_symbols((1 << 24) - 2, 3, |_, _| {}),
        Err(FecError::EsiOutOfRange(_))
    ));
    assert!(matches!(
        enc.repair_symbols(k - 1, 1, |_, _| {}),
        Err(FecError::EsiOutOfRange(_))
    ));
    // The highest valid ESI encodes and decodes without panicking.
    enc.write_symbol((1 << 24) - 1, &mut buf)
        .expect("last ESI is valid");

    // Assembler: K over the configured limit, block out of range, wrong payload length, ESI
    // out of range.
    let strict = Limits {
        max_source_symbols: 7,
        ..test_limits()
    };
    assert!(matches!(
        BlockAssembler::new(&p, 0, &strict),
        Err(FecError::Params(ParamsError::TooManySourceSymbols {
            k: 8,
            max: 7
        }))
    ));
    assert!(matches!(
        BlockAssembler::new(&p, 2, &test_limits()),
        Err(FecError::BlockOutOfRange { .. })
    ));
    let mut asm = BlockAssembler::new(&p, 1, &test_limits()).expect("valid");
    assert!(matches!(
        asm.add(0, &buf[..10]),
        Err(FecError::SymbolLength { .. })
    ));
    assert!(matches!(
        asm.add(0, &[0; 65]),
        Err(FecError::SymbolLength { .. })
    ));
    assert!(matches!(
        asm.add(1 << 24, &buf),
        Err(FecError::EsiOutOfRange(_))
    ));
    assert!(matches!(
        asm.add(u32::MAX, &buf),
        Err(FecError::EsiOutOfRange(_))
    ));
    assert_eq!(asm.symbols_held(), 0);
    assert_eq!(asm.bytes_held(), 0, "nothing allocated for refused symbols");
}

#[test]
fn garbage_symbols_at_extreme_esis_never_panic_the_decoder() {
    // Tag-valid but meaningless symbols (as from a sender holding the public key) must at worst
    // decode wrongly or need more, never panic.
    let p = params(64 * 30, 64 * 30, 64);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..20 {
        let mut asm = BlockAssembler::new(&p, 0, &test_limits()).expect("valid");
        let mut payload = [0u8; 64];
        while asm.symbols_held() < 30 + 5 {
            rng.fill_bytes(&mut payload);
            let esi = if rng.random_bool(0.5) {
                rng.random_range(0..30)
            } else {
                rng.random_range((1 << 24) - 1000..1 << 24)
            };
            asm.add(esi, &payload).expect("valid shape");
            if let Assembled::Decode(job) = asm.poll() {
                if let Err(failed) = job.run() {
                    asm.restore(failed);
                }
            }
        }
    }
}

#[test]
fn complete_assembler_is_spent() {
    let p = params(100, 100, 64);
    let data = object(100, 2);
    let enc = BlockEncoder::new(&p, 0, &data).expect("valid");
    let mut asm = BlockAssembler::new(&p, 0, &test_limits()).expect("valid");
    for esi in 0..2 {
        asm.add(esi, enc.source_symbol(esi).expect("valid"))
            .expect("valid");
    }
    let Assembled::Complete(bytes) = asm.poll() else {
        panic!("all source symbols present");
    };
    assert_eq!(bytes, data);
    assert_eq!(asm.bytes_held(), 0);
    assert_eq!(asm.add(2, &[0; 64]), Ok(AddOutcome::Finished));
    assert!(matches!(asm.poll(), Assembled::Pending));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any geometry within limits, any loss pattern that leaves at least K + 2 distinct
        /// symbols per block, any order: the object comes back byte for byte.
        #[test]
        fn any_geometry_and_loss_pattern_round_trips(
            len in 1u64..20_000,
            block_symbols in 1u32..120,
            t in 16u16..300,
            seed in any::<u64>(),
        ) {
            let p = params(len, block_symbols * u32::from(t), t);
            let data = object(len, seed);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for block in 0..u32::try_from(p.block_count()).expect("small") {
                let bytes = block_bytes(&p, &data, block);
                let enc = BlockEncoder::new(&p, block, bytes).expect("valid block");
                let k = enc.source_symbol_count();
                let mut esis: Vec<u32> = (0..k + k / 2 + 6).collect();
                esis.shuffle(&mut rng);
                let keep = usize::try_from(k + 2).expect("small")
                    + rng.random_range(0..=k as usize / 2);
                esis.truncate(keep);
                let decoded = assemble(&enc, &p, block, &esis);
                prop_assert_eq!(decoded.as_deref(), Some(bytes));
            }
        }
    }
}
