//! Early verification: a bundle is verified and extracted *while* it arrives, so that the
//! quarantine commit follows its last block by moments instead of by a second pass over it.
//!
//! Why: verifying only after the last block meant reading the whole staged object back, hashing
//! it and copying every file into the extraction after reception had ended — 2.8 s of an 8.9 s
//! transfer of 1 GiB at 1.6 Gbit/s was that tail (`sluice-bench`, bench/README.md). A bundle is
//! laid out envelope first and files in manifest order, and blocks complete nearly in order (a
//! window of interleaved blocks at a time), so a verifier can follow the *contiguous written
//! prefix* of the staged object ([`Frontier`], advanced by the staging writer after each block
//! write) and be finished soon after the last block lands.
//!
//! Early verification is a head start, never a verdict. When it succeeds, the verifier thread
//! re-checks the time- and sequence-dependent rules at completion
//! ([`sluice_common::bundle::verify::recheck_freshness`]) and commits the extraction under the
//! `Verified` it produced. On any failure or doubt (bad signature, disk full, the transfer
//! abandoned, expiry reached meanwhile) its extraction is deleted and the complete object is
//! verified from the start as before, which is what decides and records a rejection. Outcomes and
//! rejection reasons are therefore exactly those of verifying after completion.
//!
//! Bounds: at most [`MAX_RUNNING`] early verifiers run at once (each holds a thread, two 1 MiB
//! buffers and an extraction directory that grows to the bundle's file bytes, the same disk the
//! after-completion path would use); objects beyond that are verified after completion. A
//! frontier remembers at most [`super::frontier::MAX_AHEAD_RANGES`] written ranges beyond its contiguous prefix
//! (a `BTreeMap<u64, u64>`: about 1.5 MiB at the cap); past that it gives up rather than grow.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sluice_common::bundle::Verified;
use sluice_common::bundle::auth::{self, AuthStep};
use sluice_common::bundle::trust::TrustStore;
use sluice_common::bundle::verify::{self, VerifyOptions};

use super::frontier::Frontier;
use crate::store::{DropBehind, Extraction, Store};

/// Early verifiers running at once. Two lets one bundle's verification overlap the next one's
/// reception (a sender's queue of bundles) without letting a flood of junk objects (one per
/// forged frame with the public link key) spawn threads without bound.
pub const MAX_RUNNING: usize = 2;

/// Reads a staged object as it is being written: each read waits for the frontier to pass the
/// position, then reads what is contiguous. Ends exactly at the object's length.
struct GrowingReader {
    frontier: Arc<Frontier>,
    store: Arc<Mutex<Store>>,
    object_id: [u8; 16],
    /// Opened at the first read, when the staging writer has certainly created the file.
    file: Option<File>,
    pos: u64,
    drop_behind: DropBehind,
}

/// Read bytes of a staged object after which they leave the page cache: they are on disk (or
/// will be, by the next checkpoint) for a fallback verification or a resume, and keeping GiBs of
/// transit data cached only pushes out what the host needs.
const DROP_STEP: u64 = 16 << 20;

impl Read for GrowingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let end = self.frontier.wait_past(self.pos)?;
        if end <= self.pos {
            return Ok(0);
        }
        if self.file.is_none() {
            let file = self
                .store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open_object_reader(self.object_id)
                .map_err(io::Error::other)?;
            self.file = Some(file);
        }
        let Some(file) = &self.file else {
            return Err(io::Error::other("staged object not open"));
        };
        let want = usize::try_from(end - self.pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the staged object is shorter than the bytes reported written",
            ));
        }
        self.pos += n as u64;
        self.drop_behind.advance(file, self.pos);
        Ok(n)
    }
}

/// What an early verifier hands over: the verified bundle with its extraction, or why it gave up
/// (for the log; the after-completion path decides what to record).
pub type EarlyResult = Result<(Verified, Extraction), String>;

/// One early verifier: its thread, the frontier it follows and where its result arrives.
pub struct EarlyVerify {
    frontier: Arc<Frontier>,
    result: mpsc::Receiver<EarlyResult>,
    thread: Option<JoinHandle<()>>,
}

impl EarlyVerify {
    /// Starts following object `object_id` of `len` bytes. `None` if the thread cannot start (the
    /// object is then verified after completion).
    pub fn spawn(
        store: Arc<Mutex<Store>>,
        trust: Arc<TrustStore>,
        object_id: [u8; 16],
        len: u64,
    ) -> Option<EarlyVerify> {
        let frontier = Frontier::new(len);
        let (tx, rx) = mpsc::sync_channel(1);
        let reader = GrowingReader {
            frontier: Arc::clone(&frontier),
            store: Arc::clone(&store),
            object_id,
            file: None,
            pos: 0,
            drop_behind: DropBehind::new(DROP_STEP),
        };
        let thread = std::thread::Builder::new()
            .name("verify-early".into())
            .spawn(move || {
                let _ = tx.send(run(reader, &store, &trust));
            })
            .ok()?;
        Some(EarlyVerify {
            frontier,
            result: rx,
            thread: Some(thread),
        })
    }

    /// The frontier the staging writer advances.
    pub fn frontier(&self) -> Arc<Frontier> {
        Arc::clone(&self.frontier)
    }

    /// True while the thread still works (a finished one, even a failed one, frees its slot).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits for the verdict once the object is complete (every byte reported written).
    pub fn join(mut self) -> EarlyResult {
        let result = self
            .result
            .recv()
            .unwrap_or_else(|_| Err("the early verifier stopped without a result".into()));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        result
    }

    /// Stops it and waits until its extraction is deleted (shutdown).
    pub fn abort_and_wait(mut self) {
        self.frontier.abort();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EarlyVerify {
    /// Stops the verifier without waiting: it notices at its next read and deletes its
    /// extraction (a restart deletes any left behind).
    fn drop(&mut self) {
        self.frontier.abort();
    }
}

fn run(mut reader: GrowingReader, store: &Mutex<Store>, trust: &TrustStore) -> EarlyResult {
    let lock = || store.lock().unwrap_or_else(|p| p.into_inner());
    // The channel's high-water mark is needed before verification starts, so authenticate the
    // prefix and header first (signature before any decoding), then start over from byte 0
    // (the same bytes, from the page cache).
    let step = auth::authenticate_from(
        BufReader::new(&mut reader),
        trust,
        auth::DEFAULT_MAX_HEADER_BYTES,
    )
    .map_err(|e| e.to_string())?;
    let AuthStep::Authenticated(prefix) = step else {
        return Err("the object's first bytes did not authenticate".into());
    };
    if prefix.object_id() != reader.object_id {
        return Err("the transport object id does not match the bundle inside it".into());
    }
    let (extraction, last_sequence) = {
        let store = lock();
        if store.is_accepted(&prefix.id()) {
            return Err("already accepted: a resend".into());
        }
        let last = store
            .high_water_mark(prefix.channel())
            .map_err(|e| e.to_string())?;
        (store.stage_extract().map_err(|e| e.to_string())?, last)
    };
    reader.pos = 0;
    reader.drop_behind.rewind();
    let mut extraction = extraction;
    let options = VerifyOptions {
        now: sluice_host::time::now_unix(),
        last_sequence,
    };
    match verify::verify(
        BufReader::with_capacity(1 << 20, &mut reader),
        trust,
        &options,
        &mut extraction,
    ) {
        Ok(verified) => Ok((verified, extraction)),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    fn frontier_follows_out_of_order_writes() {
        let f = Frontier::new(100);
        f.written(10, 10);
        f.written(30, 10);
        assert_eq!(f.contiguous(), 0);
        f.written(0, 10);
        assert_eq!(f.contiguous(), 20);
        f.written(20, 10);
        assert_eq!(f.contiguous(), 40);
        // A range overlapping the prefix, and one past the end, are clipped.
        f.written(35, 100);
        assert_eq!(f.contiguous(), 100);
        assert_eq!(f.wait_past(100).unwrap(), 100);
    }

    #[test]
    fn frontier_wakes_a_waiting_reader_and_abort_fails_it() {
        let f = Frontier::new(1 << 20);
        let waiter = {
            let f = Arc::clone(&f);
            std::thread::spawn(move || f.wait_past(0))
        };
        std::thread::sleep(Duration::from_millis(20));
        f.written(0, 4096);
        assert_eq!(waiter.join().unwrap().unwrap(), 4096);

        let waiter = {
            let f = Arc::clone(&f);
            std::thread::spawn(move || f.wait_past(4096))
        };
        std::thread::sleep(Duration::from_millis(20));
        f.abort();
        assert!(waiter.join().unwrap().is_err());
        // Once aborted, later writes change nothing.
        f.written(4096, 4096);
        assert_eq!(f.contiguous(), 4096);
    }

    #[test]
    fn frontier_gives_up_instead_of_growing_without_bound() {
        let f = Frontier::new(u64::MAX);
        for i in 0..=crate::ingest::frontier::MAX_AHEAD_RANGES as u64 {
            f.written(10 + 2 * i, 1);
        }
        assert!(f.wait_past(0).is_err(), "one range too many aborts it");
    }

    mod with_store {

        use sluice_common::bundle::build::{self, BundleSpec, MemSource};
        use sluice_common::bundle::keys::SecretKey;

        use super::*;
        use crate::ingest::stager::{StageDone, StageOp, Stager};
        use crate::store::{Decision, Source, StoreConfig, TransportFigures};

        const BLOCK: usize = 64 << 10;

        struct Fixture {
            dir: tempfile::TempDir,
            store: Arc<Mutex<Store>>,
            trust: Arc<TrustStore>,
            bundle: Vec<u8>,
            object_id: [u8; 16],
        }

        fn fixture() -> Fixture {
            let key = SecretKey::from_seed(&[9; 32]);
            let trust = TrustStore::from_parts(
                vec![("officer".into(), key.public().to_sluice_text("officer"))],
                None,
            )
            .unwrap();
            let mut files = BTreeMap::new();
            files.insert(
                "big.bin".to_string(),
                (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect(),
            );
            files.insert("small.txt".to_string(), b"hello\n".to_vec());
            files.insert("z/empty".to_string(), Vec::new());
            let mut source = MemSource(files);
            let spec = BundleSpec {
                channel: "updates".into(),
                sequence: 5,
                created: 1_795_000_000,
                expires: None,
                note: None,
            };
            let mut bundle = Vec::new();
            let built = build::build(
                &spec,
                source.entries(),
                &key,
                &mut source,
                &mut bundle,
                &mut |_, _| {},
            )
            .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let config = StoreConfig {
                staging_quota_bytes: 64 << 20,
            };
            let store = Arc::new(Mutex::new(Store::open(dir.path(), config).unwrap()));
            Fixture {
                dir,
                store,
                trust: Arc::new(trust),
                bundle,
                object_id: built.id.object_id(),
            }
        }

        /// An early verifier for the fixture's bundle.
        fn follow(f: &Fixture) -> EarlyVerify {
            EarlyVerify::spawn(
                Arc::clone(&f.store),
                Arc::clone(&f.trust),
                f.object_id,
                f.bundle.len() as u64,
            )
            .expect("spawn the early verifier")
        }

        /// Writes the bundle through a real staging writer in the order given (block indexes),
        /// pausing so the verifier really waits on the frontier, then completes it.
        fn stage(f: &Fixture, early: &EarlyVerify, order: &[usize], complete: bool) -> Stager {
            let mut stager = Stager::spawn(Arc::clone(&f.store));
            stager.submit(StageOp::Open {
                object_id: f.object_id,
                generation: 1,
                len: f.bundle.len() as u64,
                frontier: Some(early.frontier()),
            });
            for &i in order {
                let start = i * BLOCK;
                let end = (start + BLOCK).min(f.bundle.len());
                stager.submit(StageOp::Write {
                    object_id: f.object_id,
                    generation: 1,
                    offset: start as u64,
                    data: f.bundle[start..end].to_vec(),
                });
                if i % 8 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            if complete {
                stager.submit(StageOp::Complete {
                    object_id: f.object_id,
                    generation: 1,
                    progress: None,
                });
            }
            stager
        }

        fn blocks(f: &Fixture) -> usize {
            f.bundle.len().div_ceil(BLOCK)
        }

        fn figures() -> TransportFigures {
            TransportFigures {
                frames: 1,
                lost_frames: 0,
                bad_frames: 0,
                repaired_blocks: 0,
                passes: 1,
                source: Source::Udp,
                object_bytes: 0,
            }
        }

        fn extractions(f: &Fixture) -> usize {
            std::fs::read_dir(f.dir.path().join("staging/extract"))
                .unwrap()
                .count()
        }

        /// Blocks arriving out of order (each window reversed, as decodes finish late) still
        /// give a verified extraction whose commit puts byte-identical files in quarantine.
        #[test]
        fn follows_out_of_order_blocks_to_a_committable_extraction() {
            let f = fixture();
            let early = follow(&f);
            let n = blocks(&f);
            let order: Vec<usize> = (0..n)
                .collect::<Vec<_>>()
                .chunks(16)
                .flat_map(|w| w.iter().rev().copied().collect::<Vec<_>>())
                .collect();
            let mut stager = stage(&f, &early, &order, true);
            let synced = stager.finish();
            assert!(matches!(synced.as_slice(), [StageDone::Synced { .. }]));
            let (verified, extraction) = early.join().expect("early verification succeeds");
            assert_eq!(verified.id().object_id(), f.object_id);
            let decision = f
                .store
                .lock()
                .unwrap()
                .commit(extraction, &verified, true, figures())
                .unwrap();
            let Decision::Accepted { path } = decision else {
                panic!("not accepted: {decision:?}")
            };
            let big = std::fs::read(path.join("files/big.bin")).unwrap();
            assert!(
                big == (0..3_000_000u32)
                    .map(|i| (i * 7 % 251) as u8)
                    .collect::<Vec<_>>()
            );
            assert_eq!(
                std::fs::read(path.join("files/small.txt")).unwrap(),
                b"hello\n"
            );
            assert_eq!(extractions(&f), 0);
        }

        /// A byte changed in transit (after the envelope) fails the early verifier with the
        /// file named, and leaves no extraction behind; the after-completion path decides.
        #[test]
        fn a_corrupt_body_gives_up_and_leaves_nothing() {
            let mut f = fixture();
            let last = f.bundle.len() - 10;
            f.bundle[last] ^= 1;
            let early = follow(&f);
            let order: Vec<usize> = (0..blocks(&f)).collect();
            let mut stager = stage(&f, &early, &order, true);
            stager.finish();
            let Err(why) = early.join() else {
                panic!("a corrupt bundle must not verify")
            };
            assert!(why.contains("hash_mismatch"), "{why}");
            assert_eq!(extractions(&f), 0);
        }

        /// A transfer that stops half-way (abandoned, staging failed, shutdown) ends the
        /// verifier, which deletes its partly written extraction.
        #[test]
        fn an_abandoned_transfer_stops_the_verifier_and_deletes_its_extraction() {
            let f = fixture();
            let early = follow(&f);
            let half: Vec<usize> = (0..blocks(&f) / 2).collect();
            let stager = stage(&f, &early, &half, false);
            let written = (half.len() * BLOCK) as u64;
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while early.frontier().contiguous() < written && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            // The verifier is now waiting for bytes that will not come, with a file open.
            std::thread::sleep(Duration::from_millis(100));
            assert!(early.is_running());
            assert_eq!(extractions(&f), 1);
            early.abort_and_wait();
            assert_eq!(extractions(&f), 0);
            drop(stager);
        }

        /// The staging writer's failure ends the frontier, so a verifier never waits forever for
        /// writes that were skipped.
        #[test]
        fn a_staging_failure_aborts_the_frontier() {
            let f = fixture();
            let early = follow(&f);
            let mut stager = stage(&f, &early, &[0], false);
            // A write past the object's end is refused by the store: the attempt fails.
            stager.submit(StageOp::Write {
                object_id: f.object_id,
                generation: 1,
                offset: f.bundle.len() as u64,
                data: vec![0; 16],
            });
            // The writer stays up: the failure itself, not the writer stopping, ends the wait.
            let mut done = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while done.is_empty() && std::time::Instant::now() < deadline {
                done.extend(stager.poll());
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(
                matches!(done.as_slice(), [StageDone::Failed { .. }]),
                "{done:?}"
            );
            assert!(early.join().is_err());
            assert_eq!(extractions(&f), 0);
            drop(stager);
        }
    }
}
