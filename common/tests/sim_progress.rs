//! The progress record is read back from disk, so it is parsed like wire input: arbitrary
//! bytes never panic, every accepted record re-encodes to the same bytes, and any single-byte
//! change is refused.

use proptest::prelude::*;
use sluice_common::transport::params::Limits;
use sluice_common::transport::progress::Progress;

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Progress::from_bytes(&bytes, &Limits::default());
    }

    #[test]
    fn valid_records_round_trip_and_detect_any_flip(
        blocks in 1u64..300,
        done in proptest::collection::vec(any::<bool>(), 300),
        flip in any::<proptest::sample::Index>(),
    ) {
        // Build a record by hand in the documented layout.
        let block_size = 1u32 << 20;
        let len = blocks * u64::from(block_size) - 3;
        let mut bitmap = vec![0u8; blocks.div_ceil(8) as usize];
        for b in 0..blocks as usize {
            if done[b] {
                bitmap[b / 8] |= 1 << (b % 8);
            }
        }
        let mut rec = Vec::new();
        rec.extend_from_slice(b"SLPG");
        rec.push(1);
        rec.extend_from_slice(&[9; 16]);
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&block_size.to_le_bytes());
        rec.extend_from_slice(&1024u16.to_le_bytes());
        rec.extend_from_slice(&(bitmap.len() as u32).to_le_bytes());
        rec.extend_from_slice(&bitmap);
        let sum = blake3::hash(&rec);
        rec.extend_from_slice(sum.as_bytes());

        let p = Progress::from_bytes(&rec, &Limits::default()).expect("valid");
        prop_assert_eq!(p.to_bytes(), rec.clone());
        prop_assert_eq!(p.block_count(), blocks);
        for b in 0..blocks {
            prop_assert_eq!(p.is_done(b), done[b as usize]);
        }
        prop_assert_eq!(
            p.missing_blocks().count() as u64,
            blocks - p.done_count()
        );
        let mut bad = rec.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 0x01;
        prop_assert!(Progress::from_bytes(&bad, &Limits::default()).is_err());
    }
}
