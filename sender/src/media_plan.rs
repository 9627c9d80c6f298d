//! The geometry of a bundle's spool volumes (docs/media.md, "Spreading across volumes" and
//! "Several media"): how many volumes, which repair overhead, which medium each volume goes to,
//! and what losses the set survives — all settled before anything is written. Pure arithmetic
//! over the transport parameters; `media_out.rs` does the writing.

use std::time::Duration;

use sluice_common::exit::CommandError;
use sluice_common::spool::{self, HEADER_LEN, MAX_VOLUMES};
use sluice_common::transport::params::{ObjectParams, recommended_block_size};
use sluice_common::transport::send::SenderConfig;
use sluice_common::transport::wire::{self, LinkKey};

/// Largest volume file when --volume-size is not given: 4 GiB − 1 MiB, under FAT32's limit.
pub const DEFAULT_VOLUME_SIZE: u64 = (4 << 30) - (1 << 20);
/// `--volume-size`'s default as the flag spells it (a unit test checks it is the constant).
pub const DEFAULT_VOLUME_SIZE_TEXT: &str = "4095MiB";
/// Payload bytes per frame on media: no MTU applies, so symbols are large (fewer frames, less
/// header overhead) but within the receiver's default symbol limit (8914).
pub const MEDIA_SYMBOL_SIZE: u16 = 4096;
/// Blocks interleaved at once. 8 × ~1.9 MiB keeps the importer's window well inside its budget.
pub const MEDIA_WINDOW_BLOCKS: u32 = 8;
/// Largest overhead the automatic choice will consider.
const MAX_AUTO_OVERHEAD: u32 = 1000;

/// The geometry of one bundle's volume set, computed before anything is written.
#[derive(Debug, Clone)]
pub struct Plan {
    pub volumes: u16,
    pub overhead: u32,
    /// Whole volumes that may be lost (the worst case over every block).
    pub survivable: u16,
    /// Media the volumes are spread over (`--out` given this many times).
    pub media: u16,
    /// Whole media that may be lost: `survivable` over the most volumes one medium holds.
    pub survivable_media: u16,
    /// Data frames per volume.
    pub frames: Vec<u64>,
    pub frame_len: u32,
}

impl Plan {
    pub fn volume_bytes(&self, v: usize) -> u64 {
        HEADER_LEN as u64 + self.frames[v] * u64::from(self.frame_len)
    }
    pub fn total_bytes(&self) -> u64 {
        (0..self.frames.len()).map(|v| self.volume_bytes(v)).sum()
    }
    /// The medium volume `v` goes to: `v mod media`, so each medium gets every n-th volume.
    pub fn medium_of(&self, v: usize) -> usize {
        v % usize::from(self.media.max(1))
    }
    /// The most volumes any one medium holds.
    pub fn volumes_per_medium(&self) -> u16 {
        self.volumes.div_ceil(self.media.max(1))
    }
}

/// The volume of a data frame: `(block + esi) mod V`. Every block's symbols (consecutive ESIs)
/// cycle through all volumes, so each volume holds ⌊P/V⌋ or ⌈P/V⌉ of each block's P symbols,
/// whatever the sender's interleaving (docs/media.md, "Spreading across volumes").
pub fn volume_of(block: u32, esi: u32, volumes: u16) -> u16 {
    spool::volume_for_frame(u64::from(block) + u64::from(esi), volumes)
}

pub fn sender_config(link_key: LinkKey, overhead: u32) -> SenderConfig {
    let mut c = SenderConfig::new(
        link_key,
        crate::link::sender_id(),
        MEDIA_SYMBOL_SIZE,
        recommended_block_size(MEDIA_SYMBOL_SIZE),
    );
    c.window_blocks = MEDIA_WINDOW_BLOCKS;
    c.overhead_percent = overhead;
    c.passes = 1;
    c.rate_bytes_per_sec = None;
    c.heartbeat_interval = Duration::from_secs(24 * 3600);
    c
}

/// Frames per volume and the volume losses survivable for an object of `len` bytes, on one
/// medium ([`settle_plan`] fills in the media).
pub fn plan_for(object_id: [u8; 16], len: u64, volumes: u16, overhead: u32) -> Plan {
    let config = sender_config(LinkKey::public_default(), overhead);
    let params = ObjectParams {
        object_id,
        object_len: len,
        block_size: config.block_size,
        symbol_size: config.symbol_size,
    };
    let v = u64::from(volumes.max(1));
    let mut frames = vec![0u64; v as usize];
    let mut survivable = spool::survivable_volume_losses(volumes, overhead);
    for b in 0..params.block_count() {
        let k = params.source_symbols(b);
        let p = u64::from(k) + u64::from(config.repair_symbols(k));
        let (q, r) = (p / v, p % v);
        for (i, f) in frames.iter_mut().enumerate() {
            // ESIs e with (b + e) mod V == i: q of them, plus one if i's offset is among the
            // first r residues after b.
            let offset = (i as u64 + v - b % v) % v;
            *f += q + u64::from(offset < r);
        }
        // Losing the L fullest volumes loses L·q + min(L, r) symbols of this block.
        let block_ok = (0..v)
            .rev()
            .find(|&l| p - (l * q + l.min(r)) >= u64::from(k))
            .unwrap_or(0) as u16;
        survivable = survivable.min(block_ok);
    }
    Plan {
        volumes,
        overhead,
        survivable,
        media: 1,
        survivable_media: 0,
        frames,
        frame_len: wire::data_frame_len(MEDIA_SYMBOL_SIZE) as u32,
    }
}

/// Volume losses the automatic overhead must survive: one medium's worth of volumes when there
/// are several media, one volume when one medium holds several, nothing for a single volume.
fn losses_to_survive(volumes: u16, media: u16) -> u16 {
    match (volumes, media) {
        (v, m) if m > 1 => v.div_ceil(m),
        (v, _) if v > 1 => 1,
        _ => 0,
    }
}

fn round_up_to_media(volumes: u16, media: u16) -> Option<u16> {
    let rounded = u32::from(volumes).div_ceil(u32::from(media)) * u32::from(media);
    u16::try_from(rounded).ok().filter(|&v| v <= MAX_VOLUMES)
}

/// Settles volume count and overhead together: more volumes can follow from a larger overhead
/// (more bytes), and the automatic overhead depends on the volume count. With several media the
/// count is a multiple of the media (each holds the same number of volumes) and the automatic
/// overhead survives the loss of any one medium.
pub fn settle_plan(
    object_id: [u8; 16],
    len: u64,
    min_volumes: u16,
    overhead: Option<u32>,
    volume_size: u64,
    media: u16,
) -> Result<Plan, CommandError> {
    let frame_len = wire::data_frame_len(MEDIA_SYMBOL_SIZE) as u64;
    if volume_size < HEADER_LEN as u64 + frame_len {
        return Err(CommandError::usage(format!(
            "--volume-size {volume_size} is smaller than one volume header plus one frame ({} bytes)",
            HEADER_LEN as u64 + frame_len
        )));
    }
    let media = media.max(1);
    let too_many = |v: u32| {
        CommandError::usage(format!(
            "the bundle needs {v} or more volumes (over {media} media) of at most {volume_size} \
             bytes, more than {MAX_VOLUMES}; raise --volume-size"
        ))
    };
    let mut volumes = round_up_to_media(min_volumes.max(media), media)
        .ok_or_else(|| too_many(u32::from(min_volumes)))?;
    loop {
        let target = losses_to_survive(volumes, media);
        let mut plan = match overhead {
            Some(o) => plan_for(object_id, len, volumes, o),
            None if target == 0 => plan_for(object_id, len, 1, 10),
            None => (10..=MAX_AUTO_OVERHEAD)
                .map(|o| plan_for(object_id, len, volumes, o))
                .find(|p| p.survivable >= target)
                .ok_or_else(|| {
                    CommandError::usage(format!(
                        "no overhead up to {MAX_AUTO_OVERHEAD} % survives losing {target} of \
                         {volumes} volumes"
                    ))
                })?,
        };
        plan.media = media;
        plan.survivable_media = if media > 1 {
            plan.survivable / plan.volumes_per_medium().max(1)
        } else {
            0
        };
        let largest = (0..plan.frames.len())
            .map(|v| plan.volume_bytes(v))
            .max()
            .unwrap_or(0);
        if largest <= volume_size {
            return Ok(plan);
        }
        let needed = plan.total_bytes().div_ceil(volume_size.max(1));
        let next = u16::try_from(needed)
            .unwrap_or(u16::MAX)
            .max(volumes.saturating_add(1));
        volumes = round_up_to_media(next, media).ok_or_else(|| too_many(u32::from(next)))?;
    }
}

/// "any 1 of 3 media may be lost", "any 1 of 4 volumes may be lost".
pub fn survival_text(plan: &Plan) -> String {
    if plan.media > 1 {
        let per = plan.volumes_per_medium();
        let each = if per == 1 {
            "one volume on each".to_string()
        } else {
            format!("{per} volumes on each")
        };
        return match plan.survivable_media {
            0 => format!(
                "all {} media are needed ({each}; raise --overhead to survive a lost one)",
                plan.media
            ),
            s => format!("any {s} of {} media may be lost ({each})", plan.media),
        };
    }
    match (plan.volumes, plan.survivable) {
        (1, _) => {
            "a single volume: it must arrive (damaged records are repaired within the overhead)"
                .to_string()
        }
        (v, 0) => format!("all {v} volumes are needed (no whole volume may be lost)"),
        (v, s) => format!("any {s} of {v} volumes may be lost"),
    }
}

/// `vol-003-of-004.sluicevol` for index 2 of 4.
pub fn volume_name(index: usize, count: u16) -> String {
    format!("vol-{:03}-of-{:03}.sluicevol", index + 1, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_is_spread_over_every_volume() {
        // 4 volumes with the sender's window of 8 blocks: a plain round-robin over the send order
        // would put each block into one volume; (block + esi) mod V never does.
        let plan = plan_for([1; 16], 100 << 20, 4, 35);
        assert_eq!(plan.survivable, 1, "{plan:?}");
        let total: u64 = plan.frames.iter().sum();
        let (min, max) = (
            plan.frames.iter().min().unwrap(),
            plan.frames.iter().max().unwrap(),
        );
        assert!(max - min <= 60, "{plan:?} total {total}");
    }

    #[test]
    fn automatic_overhead_survives_one_loss() {
        let p = settle_plan([2; 16], 300 << 20, 4, None, DEFAULT_VOLUME_SIZE, 1).unwrap();
        assert_eq!(p.volumes, 4);
        assert!(p.survivable >= 1);
        assert!(p.overhead >= 34 && p.overhead <= 40, "{}", p.overhead);
        let single = settle_plan([2; 16], 1 << 20, 1, None, DEFAULT_VOLUME_SIZE, 1).unwrap();
        assert_eq!((single.volumes, single.overhead), (1, 10));
    }

    #[test]
    fn volume_size_forces_more_volumes() {
        let p = settle_plan([3; 16], 64 << 20, 1, None, 20 << 20, 1).unwrap();
        assert!(p.volumes >= 4, "{p:?}");
        assert!((0..p.frames.len()).all(|v| p.volume_bytes(v) <= 20 << 20));
        assert!(p.survivable >= 1);
    }

    #[test]
    fn several_media_get_equal_shares_and_survive_losing_one() {
        let p = settle_plan([4; 16], 8 << 20, 1, None, DEFAULT_VOLUME_SIZE, 3).unwrap();
        assert_eq!((p.volumes, p.media, p.survivable_media), (3, 3, 1), "{p:?}");
        assert!(p.overhead >= 52, "{}", p.overhead);
        assert_eq!(
            survival_text(&p),
            "any 1 of 3 media may be lost (one volume on each)"
        );
        // --volumes 4 over 3 media becomes 6 (two on each), and losing a medium costs two.
        let p = settle_plan([4; 16], 8 << 20, 4, None, DEFAULT_VOLUME_SIZE, 3).unwrap();
        assert_eq!((p.volumes, p.survivable_media), (6, 1), "{p:?}");
        assert!(p.survivable >= 2);
        assert_eq!(
            (0..6).map(|v| p.medium_of(v)).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 2]
        );
        // --volume-size forcing more volumes keeps them a multiple of the media.
        let p = settle_plan([5; 16], 64 << 20, 1, None, 20 << 20, 3).unwrap();
        assert_eq!(p.volumes % 3, 0, "{p:?}");
        assert!(p.survivable_media >= 1, "{p:?}");
        // An explicit overhead too small for a lost medium says so.
        let p = settle_plan([4; 16], 8 << 20, 1, Some(10), DEFAULT_VOLUME_SIZE, 3).unwrap();
        assert_eq!(p.survivable_media, 0);
        assert!(survival_text(&p).starts_with("all 3 media are needed"));
    }
}
