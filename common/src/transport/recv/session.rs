//! The session table: which objects are live, admission against `max_sessions` and the staging
//! quota (before anything is allocated), the memory of completed objects that tells stragglers
//! from a resend, end frames, timeouts, and dropping a session whose staging failed.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::blocks::BlockBuf;
use super::{
    AbandonReason, COMPLETED_MEMORY, Effect, Event, REPLAY_END_GAP, REPLAY_FRAMES, Receiver,
    RestoreError,
};
use crate::transport::params::ObjectParams;
use crate::transport::progress::Progress;
use crate::transport::wire::ObjectEnd;

/// One live object.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) progress: Progress,
    pub(super) blocks: HashMap<u64, BlockBuf>,
    pub(super) opened_at: Instant,
    pub(super) last_activity: Instant,
    /// (pass, passes) of the last end frame seen.
    pub(super) last_end: Option<(u16, u16)>,
    /// After the final pass's end: when to declare it incomplete.
    pub(super) incomplete_at: Option<Instant>,
    pub(super) writes_since_checkpoint: u32,
    /// Data frames inferred lost so far (gaps in each block's symbol ids until it completes).
    pub(super) lost_frames: u64,
}

impl Session {
    pub(super) fn missing(&self) -> u64 {
        self.progress
            .block_count()
            .saturating_sub(self.progress.done_count())
    }
}

/// What the receiver remembers of a completed object, to tell late stragglers from a resend.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CompletedObject {
    /// When the last final-pass end frame for it arrived.
    pub(super) final_end_at: Option<Instant>,
    /// Data frames for it since then.
    pub(super) frames_after_final_end: u32,
    /// Whether the resend in progress was already reported.
    pub(super) replay_reported: bool,
}

impl Receiver {
    /// Re-open an object from stored progress (after a restart), so only missing blocks are
    /// written. Emits no `Open` (the staging file exists); emits `Complete` at once if nothing
    /// is missing.
    pub fn restore(&mut self, now: Instant, progress: Progress) -> Result<(), RestoreError> {
        let params = progress.params;
        if self.config.limits.check(&params).is_err() {
            return Err(RestoreError::OverLimit);
        }
        if self.sessions.contains_key(&params.object_id) {
            return Err(RestoreError::AlreadyOpen);
        }
        if !self.admit(&params) {
            return Err(RestoreError::Refused);
        }
        self.completed.remove(&params.object_id);
        self.insert_session(now, progress);
        self.maybe_complete(&params.object_id);
        Ok(())
    }

    /// Whether a new object fits the session table and the staging quota.
    pub(super) fn admit(&mut self, params: &ObjectParams) -> bool {
        let fits = self.sessions.len() < self.config.max_sessions
            && self
                .staging
                .checked_add(params.object_len)
                .is_some_and(|s| s <= self.config.max_staging_bytes);
        if !fits {
            self.stats.sessions_refused += 1;
        }
        fits
    }

    pub(super) fn insert_session(&mut self, now: Instant, progress: Progress) {
        self.staging += progress.params.object_len;
        self.stats.sessions_opened += 1;
        self.sessions.insert(
            progress.params.object_id,
            Session {
                progress,
                blocks: HashMap::new(),
                opened_at: now,
                last_activity: now,
                last_end: None,
                incomplete_at: None,
                writes_since_checkpoint: 0,
                lost_frames: 0,
            },
        );
    }

    /// Find the live session for `params` (checking the pinned params) or open one. `None`
    /// means the frame was counted and must be dropped.
    pub(super) fn session_for(&mut self, now: Instant, params: &ObjectParams) -> Option<()> {
        if let Some(done) = self.completed.get_mut(&params.object_id) {
            self.stats.late_symbols += 1;
            if done.final_end_at.is_some() {
                done.frames_after_final_end = done.frames_after_final_end.saturating_add(1);
                if done.frames_after_final_end >= REPLAY_FRAMES && !done.replay_reported {
                    done.replay_reported = true;
                    self.stats.replays += 1;
                    self.effects.push_back(Effect::Replayed {
                        object_id: params.object_id,
                    });
                }
            }
            return None;
        }
        if let Some(s) = self.sessions.get_mut(&params.object_id) {
            if s.progress.params != *params {
                self.stats.param_mismatch += 1;
                return None;
            }
            s.last_activity = now;
            return Some(());
        }
        if let Some(retry_at) = self.staging_failed.get(&params.object_id) {
            if now < *retry_at {
                self.stats.staging_refused += 1;
                return None;
            }
            self.staging_failed.remove(&params.object_id);
        }
        if !self.admit(params) {
            return None;
        }
        self.insert_session(now, Progress::new(*params));
        self.effects.push_back(Effect::Open { params: *params });
        Some(())
    }

    /// The driver could not stage object `object_id` (its [`Effect::Open`] or a later write
    /// failed: disk full, quota, I/O error). Drops the session, its buffers and every effect
    /// still queued for it (their budget released), and drops its frames for
    /// `config.staging_retry`; the first frame after that opens a fresh session, so a resend or
    /// a later pass retries staging once space is freed, with no restart. Progress saved
    /// earlier for the object is the driver's to keep or discard.
    pub fn handle_staging_failed(&mut self, now: Instant, object_id: [u8; 16]) {
        if self.remove_session(&object_id).is_some() {
            self.stats.objects_abandoned += 1;
        }
        // It may have completed in the state machine already (its Complete still queued): it
        // is not complete on disk, so resends must not be dropped as replays.
        if self.completed.remove(&object_id).is_some() {
            self.completed_order.retain(|id| *id != object_id);
            self.stats.objects_completed = self.stats.objects_completed.saturating_sub(1);
        }
        let mut kept = VecDeque::with_capacity(self.effects.len());
        for effect in std::mem::take(&mut self.effects) {
            match effect {
                Effect::Write {
                    object_id: id,
                    data,
                    ..
                } if id == object_id => self.release(data.len() as u64),
                Effect::Decode(task) if task.object_id == object_id => {
                    let cost = self.in_flight.remove(&(object_id, task.block)).unwrap_or(0);
                    self.release(cost);
                }
                Effect::Open { params } if params.object_id == object_id => {}
                Effect::Checkpoint { object_id: id }
                | Effect::Complete { object_id: id, .. }
                | Effect::Incomplete { object_id: id, .. }
                    if id == object_id => {}
                other => kept.push_back(other),
            }
        }
        self.effects = kept;
        if self.staging_failed.len() >= self.config.max_sessions.max(1)
            && !self.staging_failed.contains_key(&object_id)
        {
            // Forget the retry that is due first: it only shortens that object's pause.
            if let Some(first) = self
                .staging_failed
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(id, _)| *id)
            {
                self.staging_failed.remove(&first);
            }
        }
        self.staging_failed
            .insert(object_id, now + self.config.staging_retry);
    }

    /// Complete the object if every block is done. True if it completed.
    pub(super) fn maybe_complete(&mut self, id: &[u8; 16]) -> bool {
        if !self
            .sessions
            .get(id)
            .is_some_and(|s| s.progress.is_complete())
        {
            return false;
        }
        let Some(s) = self.remove_session(id) else {
            return false;
        };
        self.remember_completed(*id);
        self.stats.objects_completed += 1;
        self.effects.push_back(Effect::Complete {
            object_id: *id,
            len: s.progress.params.object_len,
        });
        true
    }

    pub(super) fn remember_completed(&mut self, id: [u8; 16]) {
        if self
            .completed
            .insert(id, CompletedObject::default())
            .is_none()
        {
            self.completed_order.push_back(id);
        }
        while self.completed_order.len() > COMPLETED_MEMORY {
            if let Some(old) = self.completed_order.pop_front() {
                self.completed.remove(&old);
            }
        }
    }

    /// Drop a session and every buffer it holds (in-flight decodes are released when they
    /// come back).
    pub(super) fn remove_session(&mut self, id: &[u8; 16]) -> Option<Session> {
        let mut s = self.sessions.remove(id)?;
        self.staging = self.staging.saturating_sub(s.progress.params.object_len);
        self.release_blocks(&mut s);
        Some(s)
    }

    pub(super) fn release_blocks(&mut self, s: &mut Session) {
        for (_, b) in s.blocks.drain() {
            if let Some(t) = b.tick {
                self.lru.remove(&t);
            }
            self.buffered = self.buffered.saturating_sub(b.reserved);
        }
    }

    pub(super) fn handle_end(&mut self, now: Instant, e: ObjectEnd) {
        let params = e.params;
        if self.config.limits.check(&params).is_err() {
            self.stats.over_limit += 1;
            return;
        }
        self.stats.end_frames += 1;
        if let Some(done) = self.completed.get_mut(&params.object_id) {
            if e.pass >= e.passes {
                let resent = done.frames_after_final_end > 0
                    && done
                        .final_end_at
                        .is_some_and(|t| now.saturating_duration_since(t) > REPLAY_END_GAP);
                if resent && !done.replay_reported {
                    self.stats.replays += 1;
                    self.effects.push_back(Effect::Replayed {
                        object_id: params.object_id,
                    });
                }
                *done = CompletedObject {
                    final_end_at: Some(now),
                    ..CompletedObject::default()
                };
            }
            return;
        }
        if self.session_for(now, &params).is_none() {
            return;
        }
        let id = params.object_id;
        // A zero-length object is complete on its (authenticated) end frame.
        if self.maybe_complete(&id) {
            return;
        }
        let grace = self.config.end_grace;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.last_end == Some((e.pass, e.passes)) {
            return;
        }
        s.last_end = Some((e.pass, e.passes));
        if e.pass >= e.passes {
            s.incomplete_at = Some(now + grace);
        }
        let missing = s.missing();
        self.push_event(Event::PassEnded {
            object_id: id,
            pass: e.pass,
            passes: e.passes,
            missing_blocks: missing,
        });
    }

    /// Expire sessions whose deadlines passed, and report objects whose final pass ended
    /// without enough symbols.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut incomplete = Vec::new();
        for (id, s) in &self.sessions {
            if now >= s.opened_at + self.config.object_deadline {
                expired.push((*id, AbandonReason::Deadline));
            } else if now >= s.last_activity + self.config.idle_timeout {
                expired.push((*id, AbandonReason::IdleTimeout));
            } else if s.incomplete_at.is_some_and(|t| now >= t) {
                incomplete.push(*id);
            }
        }
        expired.sort_unstable();
        incomplete.sort_unstable();
        for (id, reason) in expired {
            if let Some(s) = self.remove_session(&id) {
                self.stats.objects_abandoned += 1;
                self.effects.push_back(Effect::Abandoned {
                    object_id: id,
                    reason,
                    missing_blocks: s.missing(),
                });
            }
        }
        for id in incomplete {
            let Some(mut s) = self.sessions.remove(&id) else {
                continue;
            };
            s.incomplete_at = None;
            self.release_blocks(&mut s);
            let missing = s.missing();
            self.sessions.insert(id, s);
            self.stats.objects_incomplete += 1;
            self.effects.push_back(Effect::Checkpoint { object_id: id });
            self.effects.push_back(Effect::Incomplete {
                object_id: id,
                missing_blocks: missing,
            });
        }
    }
}
