//! Rebuilding an object from its staged spool volumes (`sluice-recv import`, docs/media.md):
//! which staged volumes to feed when hostile media added copies with another geometry (the
//! geometry with the most tag-checked records wins), starting over a partial object built from
//! outvoted frames, and feeding the chosen volumes into the pipeline, each with its own frame
//! length.

use std::collections::BTreeMap;
use std::time::Instant;

use sluice_common::spool::{HEADER_LEN, VolumeHeader};
use sluice_common::transport::params::Limits;

use crate::ingest::{Pipeline, Room};
use crate::media::{self, RecordReader};
use crate::store::StoreError;

/// Why the staged volumes of one object could not be fed (the store's own copy failed us).
pub enum FeedError {
    Store(StoreError),
    Read(String),
}

impl std::fmt::Display for FeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedError::Store(e) => write!(f, "{e}"),
            FeedError::Read(what) => write!(f, "reading {what}"),
        }
    }
}

/// Staged volumes of one object, keyed by volume index: header, the open copy, whole records.
pub type Group = BTreeMap<u16, (VolumeHeader, crate::store::media::StagedVolume, u64)>;

/// What one object's rebuild feeds: the staged volumes of one geometry.
pub struct Plan {
    /// (volume count, object length, frame length)
    pub geometry: (u16, u64, u32),
    pub volumes: Group,
}

/// Chooses what to feed for `id`: staged volumes grouped by geometry (volume count, object
/// length, frame length), one copy per index (the one with more records); hostile media may
/// add groups, and the group with the most records (all tag-checked when staged) is fed, the
/// others wait for the decision or their expiry.
pub fn plan_object(
    store: &crate::store::Store,
    id: [u8; 16],
    key: &sluice_common::transport::wire::LinkKey,
) -> Result<Option<Plan>, FeedError> {
    let staged = store.staged_volumes(id).map_err(FeedError::Store)?;
    let mut groups: BTreeMap<(u16, u64, u32), Group> = BTreeMap::new();
    for v in staged {
        let mut hb = [0u8; HEADER_LEN];
        use std::os::unix::fs::FileExt;
        v.file
            .read_exact_at(&mut hb, 0)
            .map_err(|e| FeedError::Read(format!("staged volume {}: {e}", v.index)))?;
        let Ok(h) = VolumeHeader::decode(&hb, key.as_bytes()) else {
            continue;
        };
        if h.object_id != id || h.volume_index != v.index {
            continue;
        }
        let records = h.whole_records_in(v.len);
        let group = groups
            .entry((h.volume_count, h.object_len, h.frame_len))
            .or_default();
        if group.get(&v.index).is_none_or(|(_, _, r)| *r < records) {
            group.insert(v.index, (h, v, records));
        }
    }
    let total = |g: &Group| g.values().map(|(_, _, r)| *r).sum::<u64>();
    let Some(best) = groups.iter().max_by_key(|(_, g)| total(g)).map(|(k, _)| *k) else {
        return Ok(None);
    };
    if groups.len() > 1 {
        let ignored: u64 = groups
            .iter()
            .filter(|(k, _)| **k != best)
            .map(|(_, g)| total(g))
            .sum();
        eprintln!(
            "note: object {}: staged volumes disagree on their geometry; using frame length {} \
             ({} records), ignoring {ignored} record(s) staged with another geometry",
            hex::encode(id),
            best.2,
            groups.get(&best).map(total).unwrap_or(0),
        );
    }
    Ok(Some(Plan {
        geometry: best,
        volumes: groups.remove(&best).unwrap_or_default(),
    }))
}

/// A partial object left in staging/objects/ by an earlier rebuild (or `listen`) whose saved
/// geometry is not the one the plan feeds would refuse every record of the plan; it was built
/// from frames the plan outvotes, so it is removed and the object rebuilt from the plan.
pub fn drop_conflicting_partial(store: &mut crate::store::Store, id: [u8; 16], plan: &Plan) {
    let Ok(list) = store.load_all_progress() else {
        return;
    };
    let Some((_, blob)) = list.iter().find(|(o, _)| *o == id) else {
        return;
    };
    let limits = Limits {
        max_object_bytes: u64::MAX,
        ..Limits::default()
    };
    let (_, object_len, frame_len) = plan.geometry;
    let symbol = (frame_len as usize).saturating_sub(sluice_common::transport::wire::DATA_OVERHEAD);
    let same =
        sluice_common::transport::progress::Progress::from_bytes(blob, &limits).is_ok_and(|p| {
            p.params.object_len == object_len && usize::from(p.params.symbol_size) == symbol
        });
    if !same {
        eprintln!(
            "note: object {}: the partial rebuild in staging was made from frames of another \
             geometry; starting it over from the staged volumes",
            hex::encode(id)
        );
        if let Err(e) = store.remove_object(id) {
            tracing::warn!(object = %hex::encode(id), error = %e, "removing a conflicting partial object");
        }
    }
}

/// Feeds the planned staged volumes of `id` into the pipeline, interleaved by each volume's
/// progress through its own share so records arrive in (nearly) the sender's order and the
/// receiver's bounded window of blocks suffices. Each volume is read with its own frame length.
/// Feeding pauses while decodes hold more than `room` (half the budget, for the window of partial
/// blocks the sender interleaves: 8 of about 2 MiB, `sender/src/media_plan.rs`): a medium can
/// wait, and a full budget would evict blocks of the window.
pub fn feed_object(
    pipeline: &mut Pipeline,
    id: [u8; 16],
    plan: Plan,
    room: Room,
) -> Result<(), FeedError> {
    let mut readers = Vec::new();
    let mut longest = 0usize;
    for (_, (h, v, _)) in plan.volumes {
        longest = longest.max(h.frame_len as usize);
        readers.push(
            RecordReader::new(v.file, &h, v.len)
                .map_err(|e| FeedError::Read(format!("staged volume {}: {e}", v.index)))?,
        );
    }
    let mut buf = vec![0u8; longest];
    let mut now = Instant::now();
    let mut n = 0u64;
    while let Some(i) = media::pick_next(&readers) {
        let record = readers[i]
            .read_next(&mut buf)
            .map_err(|e| FeedError::Read(format!("a staged volume: {e}")))?;
        pipeline.handle_datagram(now, record);
        n += 1;
        // Collect finished decodes often: a decoded block waiting in the result queue still
        // counts against the budget, and a full budget evicts blocks of the current window
        // whose symbols would not come again in this run.
        if n % 32 == 0 {
            if n % 4096 == 0 {
                now = Instant::now();
            }
            pipeline.drive(now);
            pipeline.wait_for_room(now, room);
        }
    }
    pipeline.drive(Instant::now());
    tracing::info!(object = %hex::encode(id), records = n, stats = ?pipeline.stats(),
        "volumes fed");
    Ok(())
}
