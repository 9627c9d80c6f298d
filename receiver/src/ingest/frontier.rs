//! The written extent of a staged object, shared by the staging writer (which reports each block
//! it wrote) and an early verifier (which waits for the contiguous prefix to grow). It sits
//! apart from both so that neither imports the other: `stager` → `frontier` ← `early`.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Written ranges a [`Frontier`] keeps beyond its contiguous prefix. Blocks complete within a
/// window of 16 (at most a few hundred with decode lag), so this is never reached in practice;
/// it caps memory if a sender orders blocks adversarially.
pub const MAX_AHEAD_RANGES: usize = 65_536;

/// How much of a staged object is written, as far as a reader may rely on: the contiguous prefix
/// `0..contiguous`, plus ranges written ahead of it. Shared by the staging writer (which reports
/// each block it wrote) and an early verifier (which waits for the prefix to grow).
pub struct Frontier {
    state: Mutex<FrontierState>,
    grew: Condvar,
}

struct FrontierState {
    len: u64,
    contiguous: u64,
    /// start → end of ranges written beyond `contiguous`.
    ahead: BTreeMap<u64, u64>,
    aborted: bool,
}

impl std::fmt::Debug for Frontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Frontier")
            .field("len", &s.len)
            .field("contiguous", &s.contiguous)
            .field("ahead", &s.ahead.len())
            .field("aborted", &s.aborted)
            .finish()
    }
}

impl Frontier {
    pub fn new(len: u64) -> Arc<Frontier> {
        Arc::new(Frontier {
            state: Mutex::new(FrontierState {
                len,
                contiguous: 0,
                ahead: BTreeMap::new(),
                aborted: false,
            }),
            grew: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, FrontierState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes `offset..offset + len` are written to the staged object (readable, not necessarily
    /// durable).
    pub fn written(&self, offset: u64, len: u64) {
        let mut s = self.lock();
        if s.aborted {
            return;
        }
        let end = offset.saturating_add(len).min(s.len);
        if end <= s.contiguous {
            return;
        }
        if offset > s.contiguous {
            if s.ahead.len() >= MAX_AHEAD_RANGES {
                s.aborted = true;
                drop(s);
                self.grew.notify_all();
                return;
            }
            let e = s.ahead.entry(offset).or_insert(end);
            *e = (*e).max(end);
            return;
        }
        s.contiguous = end;
        while let Some((&start, &stop)) = s.ahead.first_key_value() {
            if start > s.contiguous {
                break;
            }
            s.ahead.pop_first();
            s.contiguous = s.contiguous.max(stop);
        }
        drop(s);
        self.grew.notify_all();
    }

    /// The transfer ended (abandoned, staging failed, shutdown): a waiting reader gets an error.
    pub fn abort(&self) {
        self.lock().aborted = true;
        self.grew.notify_all();
    }

    /// True once every byte of the object is reported written.
    pub fn is_whole(&self) -> bool {
        let s = self.lock();
        s.contiguous >= s.len
    }

    /// Whether the frontier was aborted.
    #[cfg(test)]
    pub fn is_aborted(&self) -> bool {
        self.lock().aborted
    }

    /// The contiguous written prefix.
    #[cfg(test)]
    pub fn contiguous(&self) -> u64 {
        self.lock().contiguous
    }

    /// Waits until bytes at `pos` are written, returning the end of the contiguous prefix, or
    /// returns at once when `pos` is at or past the object's end (EOF for the reader).
    pub(super) fn wait_past(&self, pos: u64) -> io::Result<u64> {
        let mut s = self.lock();
        loop {
            if s.aborted {
                return Err(io::Error::other(
                    "the transfer ended before the object was complete",
                ));
            }
            if s.contiguous > pos || pos >= s.len {
                return Ok(s.contiguous);
            }
            // The timeout only guards against a missed wake-up; abort and growth both notify.
            s = self
                .grew
                .wait_timeout(s, Duration::from_millis(500))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}
