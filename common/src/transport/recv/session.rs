//! The session table: which objects are live, admission against `max_sessions` and the staging
//! quota (before anything is allocated), authentication (unauthenticated sessions, their held
//! blocks and the offers of their first bytes), the memory of completed objects that tells
//! stragglers from a resend, end frames, timeouts, and dropping a session whose staging failed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

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
    /// The driver authenticated the object's first bytes ([`Receiver::authenticate`]).
    pub(super) authenticated: bool,
    /// Completed blocks of an unauthenticated session, held (and charged) until it
    /// authenticates: it has no staging file.
    pub(super) held: BTreeMap<u64, Vec<u8>>,
    /// Bytes this session holds: block buffers (as charged) plus `held`.
    pub(super) bytes: u64,
    /// Length of the contiguous start last offered as [`Effect::Authenticate`].
    pub(super) offered: u64,
    /// Symbols stored recently: its progress, for choosing which unauthenticated session a
    /// newcomer replaces. Recent, not total: a session that stopped growing loses its standing
    /// (threat-model G12).
    pub(super) recent: RecentSymbols,
    /// Order of opening (the receiver's `sessions_opened` count then): the youngest has the
    /// highest, also when many open at the same `now`.
    pub(super) serial: u64,
}

/// How long a symbol counts toward a session's standing against newcomers: one to two of these.
/// Short, so a forged session must keep sending at a real transfer's pace to outrank it: a real
/// first block (about 1 100 frames) arrives within 15 ms at the default 909 Mbit/s and within
/// 1 s at 10 Mbit/s, while a forged session fed just often enough to stay alive (one frame per
/// 9 s against the 10 s idle timeout) scores 0 or 1.
pub(super) const RECENT_SYMBOLS_WINDOW: Duration = Duration::from_secs(1);

/// Symbols stored in the current and the previous [`RECENT_SYMBOLS_WINDOW`]: a session's recent
/// progress, however many symbols it stored before (threat-model G12).
#[derive(Debug, Clone, Copy)]
pub(super) struct RecentSymbols {
    window_start: Instant,
    current: u64,
    previous: u64,
}

impl RecentSymbols {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            current: 0,
            previous: 0,
        }
    }

    /// One more symbol stored at `now`.
    pub(super) fn record(&mut self, now: Instant) {
        let window = RECENT_SYMBOLS_WINDOW;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= window {
            self.previous = if elapsed < window * 2 {
                self.current
            } else {
                0
            };
            self.current = 0;
            self.window_start = now;
        }
        self.current += 1;
    }

    /// Symbols stored within the last one to two windows as of `now`.
    pub(super) fn score(&self, now: Instant) -> u64 {
        let window = RECENT_SYMBOLS_WINDOW;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= window * 2 {
            0
        } else if elapsed >= window {
            self.current
        } else {
            self.current + self.previous
        }
    }
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
    /// Only authenticated sessions are ever persisted, so a restored session is authenticated.
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
        self.insert_session(now, progress, true);
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

    /// A new unauthenticated session fits: below `max_unauthenticated_sessions` and the session
    /// table, after replacing the unauthenticated session with the fewest *recently* stored
    /// symbols (the youngest among equals) if either is full. A real object receiving its first
    /// block stores more symbols per window than a forged one-frame object or a forged session
    /// kept alive by a drip, however large that grew earlier (threat-model G12), and an old
    /// session survives a stream of new ones. Takes no staging quota (nothing is staged before
    /// authentication).
    fn admit_unauthenticated(&mut self, now: Instant) -> bool {
        let unauth = self.sessions.values().filter(|s| !s.authenticated).count();
        if unauth >= self.config.max_unauthenticated_sessions.max(1)
            || self.sessions.len() >= self.config.max_sessions
        {
            let victim = self
                .sessions
                .iter()
                .filter(|(_, s)| !s.authenticated)
                .min_by_key(|(_, s)| (s.recent.score(now), std::cmp::Reverse(s.serial)))
                .map(|(id, _)| *id);
            match victim {
                Some(id) => self.forget_unauthenticated(&id),
                None => {
                    self.stats.sessions_refused += 1;
                    return false;
                }
            }
        }
        true
    }

    /// Drops an unauthenticated session and tells the driver ([`Effect::Forgotten`]).
    pub(super) fn forget_unauthenticated(&mut self, id: &[u8; 16]) {
        if self.remove_session(id).is_some() {
            self.stats.sessions_unauthenticated_expired += 1;
            self.effects.push_back(Effect::Forgotten { object_id: *id });
        }
    }

    pub(super) fn insert_session(&mut self, now: Instant, progress: Progress, authenticated: bool) {
        if authenticated {
            self.staging += progress.params.object_len;
        }
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
                authenticated,
                held: BTreeMap::new(),
                bytes: 0,
                offered: 0,
                recent: RecentSymbols::new(now),
                serial: self.stats.sessions_opened,
            },
        );
    }

    /// The driver verified the object's first bytes (offered as [`Effect::Authenticate`]): the
    /// session becomes a normal one. Its staging quota is taken now (`false`, and the session is
    /// forgotten, if it does not fit), `Open` is emitted, then its held blocks as `Write`s.
    /// Returns whether the session is (now) authenticated.
    pub fn authenticate(&mut self, now: Instant, object_id: [u8; 16]) -> bool {
        let Some(s) = self.sessions.get(&object_id) else {
            return false;
        };
        if s.authenticated {
            return true;
        }
        let params = s.progress.params;
        let fits = self
            .staging
            .checked_add(params.object_len)
            .is_some_and(|t| t <= self.config.max_staging_bytes);
        if !fits {
            self.stats.sessions_refused += 1;
            self.forget_unauthenticated(&object_id);
            return false;
        }
        let Some(s) = self.sessions.get_mut(&object_id) else {
            return false;
        };
        s.authenticated = true;
        s.last_activity = now;
        let held = std::mem::take(&mut s.held);
        let held_bytes: u64 = held.values().map(|d| d.len() as u64).sum();
        // Everything it holds leaves the unauthenticated share; the held blocks stay charged to
        // the budget as queued writes until polled.
        self.unauth_buffered = self.unauth_buffered.saturating_sub(s.bytes);
        s.bytes = s.bytes.saturating_sub(held_bytes);
        self.staging += params.object_len;
        self.stats.sessions_authenticated += 1;
        self.effects.push_back(Effect::Open { params });
        for (block, data) in held {
            let offset = params.block_offset(block).unwrap_or(0);
            self.effects.push_back(Effect::Write {
                object_id,
                block,
                offset,
                data,
            });
        }
        if !self.maybe_complete(&object_id) {
            self.effects.push_back(Effect::Checkpoint { object_id });
        }
        true
    }

    /// The driver refused the object's first bytes (not a trusted bundle, or one it does not
    /// want again). The unauthenticated session is dropped and its id remembered like a
    /// completed object's, so its further frames are dropped as late. No effect is emitted.
    pub fn refuse(&mut self, object_id: [u8; 16]) {
        if self
            .sessions
            .get(&object_id)
            .is_none_or(|s| s.authenticated)
        {
            return;
        }
        self.remove_session(&object_id);
        self.stats.sessions_unauthenticated_refused += 1;
        self.remember_completed(object_id);
    }

    /// Offers the contiguous start of an unauthenticated session for authentication when it grew
    /// (at most `max_auth_prefix_bytes`; `complete` when nothing more will be offered). Before
    /// block 0 is complete, its leading source symbols are that start: a bundle whose signed
    /// header fits in them authenticates from its first frames, before the rest of its first
    /// window fills the unauthenticated pool (threat-model G14), and without waiting for a
    /// decode. Those are offered each time they double, so a large header costs a handful of
    /// offers, not one per symbol.
    pub(super) fn offer_prefix(&mut self, id: &[u8; 16]) {
        let cap = self.config.max_auth_prefix_bytes;
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let mut len = 0u64;
        let mut block = 0u64;
        while len < cap {
            let Some(d) = s.held.get(&block) else { break };
            len += d.len() as u64;
            block += 1;
        }
        if let (0, Some(first)) = (len, s.blocks.get(&0)) {
            let early = (first.asm.source_prefix_len() as u64).min(cap);
            if early == 0 || early < s.offered.saturating_mul(2).max(1) {
                return;
            }
            s.offered = early;
            let prefix = first.asm.source_prefix(early as usize);
            self.effects.push_back(Effect::Authenticate {
                object_id: *id,
                prefix,
                complete: early >= s.progress.params.object_len,
            });
            return;
        }
        if len <= s.offered {
            return;
        }
        s.offered = len;
        let take = usize::try_from(len.min(cap)).unwrap_or(usize::MAX);
        let mut prefix = Vec::with_capacity(take);
        for d in s.held.values() {
            if prefix.len() >= take {
                break;
            }
            let n = d.len().min(take - prefix.len());
            prefix.extend_from_slice(&d[..n]);
        }
        let complete = len >= s.progress.params.object_len || len >= cap;
        self.effects.push_back(Effect::Authenticate {
            object_id: *id,
            prefix,
            complete,
        });
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
        if !self.admit_unauthenticated(now) {
            return None;
        }
        self.insert_session(now, Progress::new(*params), false);
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
                    self.release_in_flight(object_id, task.block);
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
            .is_some_and(|s| s.authenticated && s.progress.is_complete())
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
        if s.authenticated {
            self.staging = self.staging.saturating_sub(s.progress.params.object_len);
        }
        self.release_blocks(&mut s);
        let held: u64 = s.held.values().map(|d| d.len() as u64).sum();
        s.held.clear();
        self.buffered = self.buffered.saturating_sub(held);
        if !s.authenticated {
            self.unauth_buffered = self.unauth_buffered.saturating_sub(held);
        }
        Some(s)
    }

    pub(super) fn release_blocks(&mut self, s: &mut Session) {
        for (_, b) in s.blocks.drain() {
            if let Some(t) = b.tick {
                self.lru.remove(&t);
            }
            self.buffered = self.buffered.saturating_sub(b.reserved);
            s.bytes = s.bytes.saturating_sub(b.reserved);
            if !s.authenticated {
                self.unauth_buffered = self.unauth_buffered.saturating_sub(b.reserved);
            }
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
        // An end frame never opens a session for a non-empty object: alone it would reserve
        // staging and survive a restart for an object of any declared length. An empty object
        // (never a bundle) is offered at once, with nothing to authenticate, and costs nothing.
        if !self.sessions.contains_key(&params.object_id) {
            if params.object_len != 0 {
                self.stats.end_frames_without_session += 1;
                return;
            }
            if self.session_for(now, &params).is_some() {
                self.effects.push_back(Effect::Authenticate {
                    object_id: params.object_id,
                    prefix: Vec::new(),
                    complete: true,
                });
            }
            return;
        }
        if self.session_for(now, &params).is_none() {
            return;
        }
        let id = params.object_id;
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
        let mut forgotten = Vec::new();
        for (id, s) in &self.sessions {
            if !s.authenticated {
                // Nothing staged, nothing to report: an unauthenticated session that goes idle
                // or ends its final pass before authenticating is only forgotten.
                if now >= s.last_activity + self.config.unauthenticated_idle_timeout
                    || s.incomplete_at.is_some_and(|t| now >= t)
                {
                    forgotten.push(*id);
                }
                continue;
            }
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
        forgotten.sort_unstable();
        for id in forgotten {
            self.forget_unauthenticated(&id);
        }
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
