//! The staging writer's contract: order, a followed object's frontier, one report per failed
//! attempt with its queue skipped, and the byte bound on the queue.

use std::io::Read;

use super::*;
use crate::store::StoreConfig;

fn store(dir: &std::path::Path, quota: u64) -> Arc<Mutex<Store>> {
    let config = StoreConfig {
        staging_quota_bytes: quota,
    };
    Arc::new(Mutex::new(Store::open(dir, config).expect("store")))
}

fn wait_for(stager: &mut Stager, want: usize) -> Vec<StageDone> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.len() < want && std::time::Instant::now() < deadline {
        got.extend(stager.poll());
        std::thread::sleep(Duration::from_millis(5));
    }
    got
}

/// Blocks queued behind an Open land in order, the checkpoint's progress is saved after
/// them, and Complete reports Synced only after every byte is in the staged file.
#[test]
fn operations_land_in_order_and_complete_reports_synced() {
    let dir = tempfile::tempdir().unwrap();
    let shared = store(dir.path(), 64 << 20);
    let mut stager = Stager::spawn(Arc::clone(&shared));
    let id = [7u8; 16];
    let block = 1 << 20;
    stager.submit(StageOp::Open {
        object_id: id,
        generation: 1,
        len: 4 * block,
        frontier: None,
    });
    for i in 0..4u64 {
        stager.submit(StageOp::Write {
            object_id: id,
            generation: 1,
            offset: i * block,
            data: vec![i as u8 + 1; block as usize],
        });
    }
    stager.submit(StageOp::Checkpoint {
        object_id: id,
        generation: 1,
        progress: Some(b"four blocks".to_vec()),
    });
    stager.submit(StageOp::Complete {
        object_id: id,
        generation: 1,
        progress: None,
    });
    let done = wait_for(&mut stager, 1);
    assert!(
        matches!(done.as_slice(), [StageDone::Synced { object_id, generation: 1 }] if *object_id == id),
        "{done:?}"
    );
    let store = shared.lock().unwrap();
    let mut bytes = Vec::new();
    store
        .open_object_reader(id)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(bytes.len(), 4 * block as usize);
    for i in 0..4 {
        assert!(
            bytes[i * block as usize..(i + 1) * block as usize]
                .iter()
                .all(|b| *b == i as u8 + 1)
        );
    }
    let saved = store.load_all_progress().unwrap();
    assert_eq!(saved, vec![(id, b"four blocks".to_vec())]);
}

/// An attempt an early verifier followed to its end completes without the final fsync and
/// "complete" progress (the last checkpoint stays the claim); one whose frontier is short at
/// Complete has its verifier aborted and is made durable as usual.
#[test]
fn a_followed_object_completes_without_claiming_durability() {
    let dir = tempfile::tempdir().unwrap();
    let shared = store(dir.path(), 64 << 20);
    let mut stager = Stager::spawn(Arc::clone(&shared));
    let block = 1u64 << 20;
    let run = |stager: &mut Stager, id: [u8; 16], frontier: &Arc<Frontier>, blocks: u64| {
        stager.submit(StageOp::Open {
            object_id: id,
            generation: 1,
            len: 2 * block,
            frontier: Some(Arc::clone(frontier)),
        });
        stager.submit(StageOp::Checkpoint {
            object_id: id,
            generation: 1,
            progress: Some(b"none yet".to_vec()),
        });
        for i in 0..blocks {
            stager.submit(StageOp::Write {
                object_id: id,
                generation: 1,
                offset: i * block,
                data: vec![1; block as usize],
            });
        }
        stager.submit(StageOp::Complete {
            object_id: id,
            generation: 1,
            progress: Some(b"complete".to_vec()),
        });
    };
    let (followed, short) = ([1u8; 16], [2u8; 16]);
    let whole = Frontier::new(2 * block);
    run(&mut stager, followed, &whole, 2);
    // The transport never completes an object with a block missing; if the writer's view
    // disagrees, the verifier must not wait forever for the missing bytes.
    let partial = Frontier::new(2 * block);
    run(&mut stager, short, &partial, 1);
    let done = wait_for(&mut stager, 2);
    assert!(
        done.iter().all(|d| matches!(d, StageDone::Synced { .. })),
        "{done:?}"
    );
    assert!(whole.is_whole() && !whole.is_aborted());
    assert!(
        partial.is_aborted(),
        "a short frontier is aborted at Complete"
    );
    let mut saved = shared.lock().unwrap().load_all_progress().unwrap();
    saved.sort();
    assert_eq!(
        saved,
        vec![
            (followed, b"none yet".to_vec()),
            (short, b"complete".to_vec())
        ]
    );
}

/// A failed Open is reported once; the rest of that attempt is skipped silently (no Synced,
/// no failure per block); a newer attempt of the same object is unaffected.
#[test]
fn a_failed_attempt_is_reported_once_and_its_queue_skipped() {
    let dir = tempfile::tempdir().unwrap();
    // Quota smaller than the object: create_object fails.
    let shared = store(dir.path(), 1 << 20);
    let mut stager = Stager::spawn(Arc::clone(&shared));
    let id = [9u8; 16];
    stager.submit(StageOp::Open {
        object_id: id,
        generation: 1,
        len: 8 << 20,
        frontier: None,
    });
    for i in 0..8u64 {
        stager.submit(StageOp::Write {
            object_id: id,
            generation: 1,
            offset: i << 20,
            data: vec![1; 1 << 20],
        });
    }
    stager.submit(StageOp::Complete {
        object_id: id,
        generation: 1,
        progress: None,
    });
    // The next attempt fits.
    stager.submit(StageOp::Open {
        object_id: id,
        generation: 2,
        len: 1000,
        frontier: None,
    });
    stager.submit(StageOp::Write {
        object_id: id,
        generation: 2,
        offset: 0,
        data: vec![2; 1000],
    });
    stager.submit(StageOp::Complete {
        object_id: id,
        generation: 2,
        progress: None,
    });
    let done = stager.finish();
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(
        matches!(&done[0], StageDone::Failed { generation: 1, what, .. } if what.contains("cannot stage")),
        "{done:?}"
    );
    assert!(
        matches!(done[1], StageDone::Synced { generation: 2, .. }),
        "{done:?}"
    );
}

/// The queue admits at most QUEUE_BYTES (plus one block): with the writer blocked on the
/// store lock, submitting more than that waits until the writer drains.
#[test]
fn the_queue_is_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let shared = store(dir.path(), 256 << 20);
    let mut stager = Stager::spawn(Arc::clone(&shared));
    let id = [3u8; 16];
    stager.submit(StageOp::Open {
        object_id: id,
        generation: 1,
        len: 64 << 20,
        frontier: None,
    });
    let held = shared.lock().unwrap();
    let gate = Arc::clone(&stager.gate);
    let submitter = std::thread::spawn(move || {
        for i in 0..64u64 {
            stager.submit(StageOp::Write {
                object_id: id,
                generation: 1,
                offset: i << 20,
                data: vec![5; 1 << 20],
            });
        }
        stager.finish()
    });
    std::thread::sleep(Duration::from_millis(300));
    let queued = *gate.lock();
    assert!(
        queued <= QUEUE_BYTES + (1 << 20),
        "{queued} bytes queued while the writer was blocked"
    );
    assert!(
        queued >= QUEUE_BYTES - (1 << 20),
        "the queue filled: {queued}"
    );
    drop(held);
    let done = submitter.join().unwrap();
    assert!(done.is_empty(), "{done:?}");
    assert_eq!(*gate.lock(), 0);
}
