//! Object geometry and the receiver's limits: every block shape, every refusal, and the
//! sender's recommended block sizes staying inside the default limits.

use sluice_common::transport::params::{
    Limits, ObjectParams, ParamsError, RAPTORQ_MAX_SOURCE_SYMBOLS, recommended_block_size,
};
use sluice_common::transport::wire;

fn params(object_len: u64, block_size: u32, symbol_size: u16) -> ObjectParams {
    ObjectParams {
        object_id: [0; 16],
        object_len,
        block_size,
        symbol_size,
    }
}

#[test]
fn geometry_of_full_short_and_empty_objects() {
    let p = params(2_500, 1_000, 64);
    assert_eq!(p.block_count(), 3);
    assert_eq!(p.block_len(0), Some(1_000));
    assert_eq!(p.block_len(2), Some(500));
    assert_eq!(p.block_len(3), None);
    assert_eq!(p.block_offset(2), Some(2_000));
    assert_eq!(p.source_symbols(0), 16); // ceil(1000 / 64)
    assert_eq!(p.source_symbols(2), 8); // ceil(500 / 64)
    assert_eq!(p.source_symbols(3), 0);
    assert_eq!(p.max_source_symbols(), 16);

    let empty = params(0, 1_000, 64);
    assert_eq!(empty.block_count(), 0);
    assert_eq!(empty.block_len(0), None);

    let tiny = params(1, 1_000, 1414);
    assert_eq!(tiny.block_count(), 1);
    assert_eq!(tiny.source_symbols(0), 1);

    let huge = params(u64::MAX, u32::MAX, 1);
    assert_eq!(huge.block_count(), u64::MAX.div_ceil(u64::from(u32::MAX)));
    // 2^64 − 1 = (2^32 − 1)(2^32 + 1): the last block is full.
    assert_eq!(huge.block_len(huge.block_count() - 1), Some(u32::MAX));
    assert_eq!(huge.block_count(), (1 << 32) + 1);
    assert_eq!(params(10, 0, 64).block_count(), 0);
    assert_eq!(params(10, 10, 0).source_symbols(0), 0);
}

#[test]
fn limits_refuse_each_parameter_before_allocation() {
    let limits = Limits::default();
    assert_eq!(limits.check(&params(64 << 30, 1 << 20, 1414)), Ok(()));
    assert_eq!(limits.check(&params(0, 1 << 20, 1414)), Ok(()));
    assert!(matches!(
        limits.check(&params((64 << 30) + 1, 1 << 20, 1414)),
        Err(ParamsError::ObjectTooLarge { .. })
    ));
    assert!(matches!(
        limits.check(&params(u64::MAX, 1 << 20, 1414)),
        Err(ParamsError::ObjectTooLarge { .. })
    ));
    for t in [0u16, 1, 63, 511, 8915, u16::MAX] {
        assert!(
            matches!(
                limits.check(&params(1000, 1 << 20, t)),
                Err(ParamsError::SymbolSize { .. })
            ),
            "T = {t}"
        );
    }
    for bs in [0u32, (16 << 20) + 1, u32::MAX] {
        assert!(
            matches!(
                limits.check(&params(1000, bs, 8914)),
                Err(ParamsError::BlockSize { .. })
            ),
            "block size {bs}"
        );
    }
    // 2 MiB blocks of 512-byte symbols (the smallest admitted): K = 4096 > 2048.
    assert_eq!(
        limits.check(&params(1000, 2 << 20, 512)),
        Err(ParamsError::TooManySourceSymbols { k: 4096, max: 2048 })
    );
    // The configured K never exceeds raptorq's own maximum.
    let loose = Limits {
        max_source_symbols: u32::MAX,
        min_symbol_size: 1,
        max_block_bytes: u32::MAX,
        ..limits
    };
    assert_eq!(
        loose.check(&params(1000, RAPTORQ_MAX_SOURCE_SYMBOLS + 1, 1)),
        Err(ParamsError::TooManySourceSymbols {
            k: RAPTORQ_MAX_SOURCE_SYMBOLS + 1,
            max: RAPTORQ_MAX_SOURCE_SYMBOLS
        })
    );
    // 64 GiB in 8 KiB blocks is 8 Mi blocks > 1 Mi.
    assert!(matches!(
        limits.check(&params(64 << 30, 8 << 10, 1414)),
        Err(ParamsError::TooManyBlocks { .. })
    ));
}

#[test]
fn recommended_block_sizes_are_whole_symbols_within_default_limits() {
    assert_eq!(recommended_block_size(1414), 742 * 1414);
    assert_eq!(recommended_block_size(8914), 471 * 8914);
    let limits = Limits::default();
    for t in limits.min_symbol_size..=limits.max_symbol_size {
        let bs = recommended_block_size(t);
        assert_eq!(bs % u32::from(t), 0, "T = {t}");
        let p = params(limits.max_object_bytes, bs, t);
        assert_eq!(limits.check(&p), Ok(()), "T = {t}");
        assert!(p.max_source_symbols() <= 8192);
    }
    // Every datagram size a sender might be configured with gives a T the limits admit.
    for mtu_payload in [1472usize, 8972] {
        let t = wire::symbol_size_for_datagram(mtu_payload);
        assert_eq!(
            limits.check(&params(1 << 30, recommended_block_size(t), t)),
            Ok(())
        );
    }
}

#[test]
fn worst_case_block_memory_is_documented_bound() {
    let limits = Limits::default();
    assert_eq!(limits.max_stored_symbols(742), 758);
    assert_eq!(limits.worst_case_block_bytes(), (16 << 20) + 17 * 8914);
}
