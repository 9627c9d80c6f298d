//! What a [`Sender`](super::Sender) is configured with, and why it refuses a call.

use std::time::Duration;

use thiserror::Error;

use crate::transport::wire::LinkKey;

/// Sender configuration. Both sides must agree on `symbol_size` and `block_size` only in the
/// sense that the receiver's `Limits` must admit them: the values travel in every frame.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Key of the per-frame integrity tag.
    pub link_key: LinkKey,
    /// Identifies this sender in heartbeats.
    pub sender_id: [u8; 16],
    /// Bytes of payload per frame (RaptorQ symbol size).
    pub symbol_size: u16,
    /// Bytes of object per FEC block (the last block may be shorter).
    pub block_size: u32,
    /// Blocks interleaved at once. Memory: `window_blocks × block_size` plus encoder state.
    /// Default 16.
    pub window_blocks: u32,
    /// Repair symbols per block per pass, as a percentage of the block's source symbols K:
    /// `ceil(K × pct / 100)`, at least 1 when pct > 0. Default 10.
    pub overhead_percent: u32,
    /// How many times each object is sent; every pass after the first carries fresh repair
    /// symbols only. Default 1.
    pub passes: u16,
    /// Heartbeat period, also while idle. Default 1 s.
    pub heartbeat_interval: Duration,
    /// Wire bytes per second (frame + 28 bytes IP/UDP), or `None` for unpaced.
    pub rate_bytes_per_sec: Option<u64>,
    /// Token-bucket burst allowance in wire bytes. Default: 64 full frames (one GSO batch).
    pub burst_bytes: Option<u64>,
}

impl SenderConfig {
    /// Defaults for everything but the key, id and geometry.
    pub fn new(link_key: LinkKey, sender_id: [u8; 16], symbol_size: u16, block_size: u32) -> Self {
        Self {
            link_key,
            sender_id,
            symbol_size,
            block_size,
            window_blocks: 16,
            overhead_percent: 10,
            passes: 1,
            heartbeat_interval: Duration::from_secs(1),
            rate_bytes_per_sec: None,
            burst_bytes: None,
        }
    }

    /// Repair symbols per block per pass for a block of `k` source symbols.
    pub fn repair_symbols(&self, k: u32) -> u32 {
        if self.overhead_percent == 0 || k == 0 {
            return 0;
        }
        let r = (u64::from(k) * u64::from(self.overhead_percent)).div_ceil(100);
        u32::try_from(r).unwrap_or(u32::MAX).max(1)
    }
}

/// Why the sender refused a call.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The configuration or object cannot be sent (geometry out of range, too many passes for
    /// the ESI space, …).
    #[error("invalid sender configuration or object: {0}")]
    Invalid(&'static str),
    /// `handle_read` for a block that was not requested (or already answered).
    #[error("read answer for a block that was not requested")]
    UnexpectedRead,
    /// `handle_read` with a byte count different from the request.
    #[error("read answer has {got} bytes, {want} were requested")]
    ShortRead {
        /// Bytes requested.
        want: usize,
        /// Bytes given.
        got: usize,
    },
}
