//! The sender with its repair solves deferred (as a driver with an encode thread runs it): source
//! symbols go out before any solve finished, the sender waits — never skips — when a repair
//! symbol's solve is still out, and the frames are byte-identical to encoding inline.

use std::time::Instant;

use sluice_common::transport::send::{EncodeJob, SendError, Sender, SenderConfig};
use sluice_common::transport::wire::{self, Frame};
use sluice_testkit::drive;
use sluice_testkit::sim::{content, key, oid, reads};

const T: u16 = 64;
const BLOCK: u32 = 64 * 40;
/// Three full windows of 4 blocks and a short last block.
const LEN: u64 = 12 * BLOCK as u64 + 1000;
const SEED: u64 = 21;

fn sender(now: Instant) -> Sender {
    let mut c = SenderConfig::new(key(), [3; 16], T, BLOCK);
    c.window_blocks = 4;
    c.passes = 2;
    c.overhead_percent = 25;
    let mut s = Sender::new(c, now, 1_800_000_000_000).expect("sender");
    s.queue_object(now, oid(SEED), LEN, 1_800_000_000_000)
        .expect("queue");
    s
}

fn read(request: &sluice_common::transport::send::ReadRequest) -> Vec<u8> {
    content(SEED, request.offset, request.len)
}

fn drain(s: &mut Sender, now: Instant, out: &mut Vec<Vec<u8>>) {
    let mut buf = vec![0u8; 4096];
    while let Some(n) = s.poll_transmit(now, &mut buf) {
        out.push(buf[..n].to_vec());
    }
}

fn inline_frames(now: Instant) -> Vec<Vec<u8>> {
    drive::frames(&mut sender(now), now, reads(SEED))
}

/// (ESI, K) of a data frame, None for control frames.
fn esi_and_k(frame: &[u8]) -> Option<(u32, u32)> {
    match wire::decode(&key(), frame).expect("own frame decodes") {
        Frame::Data(d) => Some((
            d.header.esi,
            d.header.params.source_symbols(u64::from(d.header.block)),
        )),
        _ => None,
    }
}

#[test]
fn deferred_solves_give_the_same_frames_and_source_symbols_go_first() {
    let now = Instant::now();
    let expected = inline_frames(now);

    let mut s = sender(now);
    let mut out = Vec::new();
    let mut windows = 0;
    while !s.is_finished() {
        let mut jobs: Vec<EncodeJob> = Vec::new();
        while let Some(r) = s.poll_read() {
            let data = read(&r);
            jobs.push(s.handle_source(r, data).expect("source"));
        }
        let before = out.len();
        drain(&mut s, now, &mut out);
        if !jobs.is_empty() {
            windows += 1;
            // With no solve back yet, only source symbols (and control frames) may go out, and
            // in pass 1 every source symbol of the window does (repairs are all after them).
            let data: Vec<(u32, u32)> = out[before..].iter().filter_map(|f| esi_and_k(f)).collect();
            assert!(
                data.iter().all(|(esi, k)| esi < k),
                "a repair symbol went out unsolved"
            );
        }
        // Solves come back out of order, one at a time; each may release more frames.
        while let Some(job) = jobs.pop() {
            s.handle_encoded(job.run()).expect("encoded");
            drain(&mut s, now, &mut out);
        }
    }
    // 13 blocks in windows of 4 → 4 windows per pass, 2 passes.
    assert_eq!(windows, 8);
    assert_eq!(out.len(), expected.len());
    assert!(
        out == expected,
        "deferred solves changed the frame sequence"
    );
}

#[test]
fn pass_one_sends_every_source_symbol_of_a_window_before_any_solve() {
    let now = Instant::now();
    let mut s = sender(now);
    let mut jobs = Vec::new();
    while let Some(r) = s.poll_read() {
        let data = read(&r);
        jobs.push(s.handle_source(r, data).expect("source"));
    }
    let mut out = Vec::new();
    drain(&mut s, now, &mut out);
    let sources = out.iter().filter_map(|f| esi_and_k(f)).count();
    // The first window is block 0 alone (it carries the bundle's signed header, see
    // transport/send/): K = 40 source symbols.
    assert_eq!(sources, 40);
    assert_eq!(jobs.len(), 1);
    // The next window is 4 blocks × K = 40 source symbols each.
    for job in jobs.drain(..) {
        s.handle_encoded(job.run()).expect("encoded");
    }
    drain(&mut s, now, &mut out);
    let before = out.len();
    while let Some(r) = s.poll_read() {
        let data = read(&r);
        jobs.push(s.handle_source(r, data).expect("source"));
    }
    drain(&mut s, now, &mut out);
    let sources = out[before..].iter().filter_map(|f| esi_and_k(f)).count();
    assert_eq!(sources, 4 * 40);
    assert_eq!(jobs.len(), 4);
}

#[test]
fn encoded_results_for_the_wrong_block_or_twice_are_refused() {
    let now = Instant::now();
    let mut s = sender(now);
    let r = s.poll_read().expect("a read");
    let data = read(&r);
    let job = s.handle_source(r, data.clone()).expect("source");
    // The same block again: it is no longer an outstanding read.
    assert_eq!(
        s.handle_source(r, data).err(),
        Some(SendError::UnexpectedRead)
    );
    let encoded = job.run();
    s.handle_encoded(encoded).expect("first");
    let again = s.handle_source(r, read(&r));
    assert_eq!(again.err(), Some(SendError::UnexpectedRead));

    // Block 0 is a window of its own: sending it opens the next window.
    drain(&mut s, now, &mut Vec::new());
    // A short read is refused before anything is stored.
    let r2 = s.poll_read().expect("second read");
    assert_eq!(
        s.handle_source(r2, vec![0; r2.len - 1]).err(),
        Some(SendError::ShortRead {
            want: r2.len,
            got: r2.len - 1
        })
    );
    // A solve for a block of another sender's object is refused.
    let mut other = sender(now);
    let r3 = other.poll_read().expect("other read");
    let foreign = other.handle_source(r3, read(&r3)).expect("source").run();
    let mut fresh = sender(now);
    assert_eq!(
        fresh.handle_encoded(foreign),
        Err(SendError::UnexpectedRead)
    );
}
