// Fuzz entry points, shared verbatim by the cargo-fuzz targets (fuzz/fuzz_targets/*.rs) and the
// stable corpus replay (common/tests/fuzz_corpus.rs) through `include!`, so both run exactly
// the same checks without adding a fuzzing API to sluice-common.

use sluice_common::transport::fec::{Assembled, BlockAssembler};
use sluice_common::transport::params::{Limits, ObjectParams};
use sluice_common::transport::wire::{self, Frame, LinkKey};

/// The key fuzz inputs are tagged with.
#[allow(dead_code)]
pub fn fuzz_key() -> LinkKey {
    LinkKey::from_bytes([0x5A; 32])
}

/// First byte even: the rest is a datagram as received. First byte odd: the rest is a frame
/// body that gets a valid tag appended, so the fuzzer reaches the field checks behind the tag.
/// Properties: no panic; an accepted frame re-encodes to exactly the same bytes.
#[allow(dead_code)]
pub fn frame_decode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = fuzz_key();
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        let tag = key.tag(&bytes);
        bytes.extend_from_slice(&tag);
    }
    if let Ok(frame) = wire::decode(&key, &bytes) {
        assert_eq!(frame.encoded_len(), bytes.len());
        let mut out = Vec::new();
        wire::encode_append(&key, &frame, &mut out).expect("a decoded frame re-encodes");
        assert_eq!(out, bytes, "decode → encode must give the input back");
        if let Frame::Data(d) = frame {
            let limits = Limits {
                min_symbol_size: 1,
                ..Limits::default()
            };
            if limits.check(&d.header.params).is_ok() {
                // Geometry that passed the limits must be usable by the FEC adapter.
                BlockAssembler::new(&d.header.params, d.header.block, &limits)
                    .expect("limit-checked params build an assembler");
            }
        }
    }
}

/// Drive one block assembler with fuzzer-chosen geometry and symbols, decoding whenever a job
/// is offered. Input: `symbol_size u8`, `block_len u16`, then records of `esi u24` + payload.
/// Properties: no panic (raptorq's own assertions are unreachable), memory capped at
/// K + surplus symbols, a complete block has the block's length.
#[allow(dead_code)]
pub fn block_assemble(data: &[u8]) {
    let [t, l0, l1, rest @ ..] = data else {
        return;
    };
    let symbol_size = u16::from(*t).max(1);
    let block_len = u32::from(u16::from_be_bytes([*l0, *l1])).max(1);
    let params = ObjectParams {
        object_id: [0; 16],
        object_len: u64::from(block_len),
        block_size: block_len,
        symbol_size,
    };
    let limits = Limits {
        min_symbol_size: 1,
        max_source_symbols: 512,
        repair_surplus: 4,
        ..Limits::default()
    };
    let Ok(mut asm) = BlockAssembler::new(&params, 0, &limits) else {
        return;
    };
    let cap = u64::from(asm.source_symbol_count() + 4) * u64::from(symbol_size);
    let t = usize::from(symbol_size);
    for record in rest.chunks(3 + t) {
        let Some((esi, payload)) = record.split_first_chunk::<3>() else {
            break;
        };
        let esi = u32::from_be_bytes([0, esi[0], esi[1], esi[2]]);
        // Short final records exercise the length check.
        let _ = asm.add(esi, payload);
        assert!(asm.symbols_held() <= asm.source_symbol_count() + 4);
        assert!(asm.bytes_held() as u64 <= cap + 64 * 1024);
        match asm.poll() {
            Assembled::Pending => {}
            Assembled::Complete(bytes) => {
                assert_eq!(bytes.len(), block_len as usize);
                return;
            }
            Assembled::Decode(job) => match job.run() {
                Ok(bytes) => {
                    assert_eq!(bytes.len(), block_len as usize);
                    return;
                }
                Err(failed) => asm.restore(failed),
            },
        }
    }
}
