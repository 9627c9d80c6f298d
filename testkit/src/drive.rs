//! Driving a sans-IO [`Sender`] to completion outside a real driver: answer its reads, take its
//! frames, until it is finished. One loop for every test that needs "the frames of an object"
//! (a capture to replay, a receiver to feed) instead of a hand-written copy in each.
//!
//! - [`frames`]: every frame at a fixed instant; [`first_frames`]: the first `n`.
//! - [`drive`]: the same loop, handing each frame (and the sender, for its stats) to a closure
//!   that may stop early.
//! - [`object_frames`]: build the sender from a config and one object's bytes, then [`frames`].
//! - [`drive_paced`]: the real-clock variant (sleeps while the pacer holds frames back), for
//!   tests that send over a socket.
//!
//! At a fixed instant a rate-limited sender can never send, so the fixed-clock loops panic on a
//! stall rather than spin.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use sluice_common::transport::send::{ReadRequest, Sender, SenderConfig};
use sluice_common::transport::wire::MAX_FRAME_LEN;

/// Rounds without a read or a frame after which a fixed-clock drive gives up.
const STALL_ROUNDS: u32 = 10_000;

/// Answers every read the sender asks for with `read(request)`.
pub fn answer_reads(sender: &mut Sender, read: &mut impl FnMut(&ReadRequest) -> Vec<u8>) -> bool {
    let mut any = false;
    while let Some(r) = sender.poll_read() {
        let data = read(&r);
        sender.handle_read(r, data).expect("read answer accepted");
        any = true;
    }
    any
}

/// A read function serving an object held in memory.
pub fn read_from(object: &[u8]) -> impl FnMut(&ReadRequest) -> Vec<u8> + '_ {
    move |r| {
        let start = r.offset as usize;
        object[start..start + r.len].to_vec()
    }
}

/// Drives `sender` at the fixed instant `now` until it is finished or `on_frame` breaks, as a
/// driver does: answer every pending read with `read`, then take frames until the sender has
/// none to give, repeat. Each frame goes to `on_frame` with the sender (whose stats then
/// include that frame). Returns the frames taken.
///
/// The frame sequence depends on when reads are answered (a read answered earlier lets the
/// next window start earlier), so every fixed-clock test uses this one order.
pub fn drive(
    sender: &mut Sender,
    now: Instant,
    mut read: impl FnMut(&ReadRequest) -> Vec<u8>,
    mut on_frame: impl FnMut(&Sender, &[u8]) -> ControlFlow<()>,
) -> u64 {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let mut taken = 0;
    let mut idle = 0;
    while !sender.is_finished() {
        let mut progressed = answer_reads(sender, &mut read);
        while let Some(n) = sender.poll_transmit(now, &mut buf) {
            taken += 1;
            progressed = true;
            if on_frame(sender, &buf[..n]).is_break() {
                return taken;
            }
        }
        if progressed {
            idle = 0;
        } else {
            idle += 1;
            assert!(
                idle < STALL_ROUNDS,
                "sender stalled at a fixed clock (rate-limited?) after {taken} frames"
            );
        }
    }
    taken
}

/// Every frame `sender` emits at the fixed instant `now` (data, object-end and heartbeat frames,
/// in send order): what a capture on the link would record.
pub fn frames(
    sender: &mut Sender,
    now: Instant,
    read: impl FnMut(&ReadRequest) -> Vec<u8>,
) -> Vec<Vec<u8>> {
    first_frames(sender, now, read, usize::MAX)
}

/// The first `n` frames (fewer if the sender finishes first).
pub fn first_frames(
    sender: &mut Sender,
    now: Instant,
    read: impl FnMut(&ReadRequest) -> Vec<u8>,
    n: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    drive(sender, now, read, |_, f| {
        out.push(f.to_vec());
        if out.len() >= n {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    out
}

/// Every frame of one object: a [`Sender`] made from `config` at `unix_ms`, `object` queued as
/// `object_id`, driven at one fixed instant.
pub fn object_frames(
    config: SenderConfig,
    object_id: [u8; 16],
    object: &[u8],
    unix_ms: u64,
) -> Vec<Vec<u8>> {
    let now = Instant::now();
    let mut sender = Sender::new(config, now, unix_ms).expect("sender config");
    sender
        .queue_object(now, object_id, object.len() as u64, unix_ms)
        .expect("queue object");
    frames(&mut sender, now, read_from(object))
}

/// Drives `sender` on the real clock until it is finished: reads answered by `read`, every frame
/// the pacer allows handed to `send`, short sleeps while it holds frames back. Fails with
/// `TimedOut` after `limit`, or with the first error `send` returns.
pub fn drive_paced(
    sender: &mut Sender,
    mut read: impl FnMut(&ReadRequest) -> Vec<u8>,
    mut send: impl FnMut(&[u8]) -> std::io::Result<()>,
    limit: Duration,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let deadline = Instant::now() + limit;
    while !sender.is_finished() {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("sender did not finish within {limit:?}"),
            ));
        }
        answer_reads(sender, &mut read);
        let mut sent = false;
        while let Some(n) = sender.poll_transmit(Instant::now(), &mut buf) {
            sent = true;
            send(&buf[..n])?;
        }
        if !sent && let Some(t) = sender.poll_timeout() {
            let wait = t.saturating_duration_since(Instant::now());
            std::thread::sleep(wait.min(Duration::from_millis(5)));
        }
    }
    Ok(())
}
