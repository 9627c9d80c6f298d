//! One promotion pass over the store: for every quarantine entry whose channel has a pipeline,
//! advance it as far as it can go (scan → approve → publish), recording every transition in
//! `DIR/promote/<id>/state.json` (atomically) and then in the store's hash-chained audit log.
//!
//! Safety rules, each enforced here:
//! - nothing is promoted unless the entry re-verifies against its receipt (every file re-hashed)
//!   *and* the audit chain is intact and holds an `accepted` record with that receipt's blake3;
//! - stages run in order and a failed stage stops the entry (terminal, with the reason);
//! - publish starts only after every pending target passed its preflight, targets done are
//!   recorded one by one, and a target is never published twice (state lists what is done; each
//!   publisher is idempotent for the crash window between publishing and recording);
//! - a transition is saved before it is audited; one saved but not yet audited (a crash in
//!   between) is audited by the next pass, so each is audited exactly once.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use sluice_common::bundle::TrustStore;
use sluice_recv::store::audit::{self, AuditRecord, ChainReport, Receipt};
use sluice_recv::store::inspect;

use crate::approval::{self, Decision, Judged, SignedStatement, Statement};
use crate::config::{Config, Pipeline};
use crate::publish::{self, Entry, PubError};
use crate::scan::{self, ScanOutcome};
use crate::state::{self, Stage, State, Transition};

/// Environment variable of the crash-test hook: `pause-after-target:N` (print a line on stderr
/// and sleep forever after the N-th target of a bundle is recorded) or `abort-after-target:N`.
pub const TEST_HOOK_ENV: &str = "SLUICE_PROMOTE_TEST_HOOK";

/// What one pass did to one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No pipeline for its channel, or not yet recorded as accepted: left alone.
    Ignored(String),
    /// Waiting for approvals (normal).
    Waiting(String),
    /// Publishing failed for a reason that may pass (registry down...): retried next pass.
    Retrying(String),
    /// Stopped in this pass.
    Stopped(String),
    /// Published in this pass.
    Published,
    /// Terminal before this pass.
    Done,
}

#[derive(Debug, Default)]
pub struct PassReport {
    pub outcomes: Vec<(String, Outcome)>,
    /// Store-level problems (audit chain broken, unreadable state...).
    pub errors: Vec<String>,
    pub chain_broken: bool,
}

impl PassReport {
    /// The exit code of `run --once` (docs/promotion.md): 8 store error, 4 audit chain broken,
    /// 6 a bundle stopped, 7 a bundle waits to retry publishing, else 0.
    pub fn exit_code(&self) -> i32 {
        use sluice_common::exit;
        if !self.errors.is_empty() && !self.chain_broken {
            return exit::STORAGE;
        }
        if self.chain_broken {
            return exit::INVALID;
        }
        if self
            .outcomes
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Stopped(_)))
        {
            return exit::POLICY;
        }
        if self
            .outcomes
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Retrying(_)))
        {
            return exit::INCOMPLETE;
        }
        exit::OK
    }
}

pub struct Engine<'a> {
    pub store: &'a Path,
    pub config: &'a Config,
    hook: Option<(bool, usize)>,
}

fn open_dir(p: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The intact chain of the store's audit log (Err: unreadable or broken).
pub fn read_chain(store: &Path) -> Result<ChainReport, String> {
    let bytes = std::fs::read(store.join(audit::AUDIT_FILE))
        .map_err(|e| format!("{}/audit.jsonl: {e}", store.display()))?;
    let chain = audit::check_chain(&bytes);
    let problems: Vec<&String> = chain
        .problems
        .iter()
        .filter(|p| !p.contains("partial line"))
        .collect();
    if !problems.is_empty() {
        return Err(format!(
            "audit.jsonl chain is broken; promoting nothing until `sluice-recv audit verify` passes: {}",
            problems
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok(chain)
}

/// Re-verifies `quarantine/<id>` (every file against the receipt) and that the audit chain
/// accepted exactly this receipt. Ok((receipt, receipt_blake3)).
pub fn verified_entry(
    quarantine: &OwnedFd,
    chain: &ChainReport,
    id: &str,
) -> Result<(Receipt, String), EntryProblem> {
    let (receipt, rh) = inspect::check_entry(quarantine, id).map_err(|ps| {
        EntryProblem::Invalid(format!(
            "quarantine entry fails verification: {}",
            ps.join("; ")
        ))
    })?;
    match chain.accepted.get(id) {
        Some(a) if a.receipt_blake3.as_deref() == Some(rh.as_str()) => Ok((receipt, rh)),
        Some(_) => Err(EntryProblem::Invalid(
            "receipt.json does not match the blake3 in its accepted audit record".into(),
        )),
        None => Err(EntryProblem::NotYetAccepted),
    }
}

#[derive(Debug)]
pub enum EntryProblem {
    Invalid(String),
    NotYetAccepted,
}

impl<'a> Engine<'a> {
    pub fn new(store: &'a Path, config: &'a Config) -> Engine<'a> {
        let hook = std::env::var(TEST_HOOK_ENV).ok().and_then(|v| {
            let (kind, n) = v.split_once(':')?;
            let n: usize = n.parse().ok()?;
            match kind {
                "pause-after-target" => Some((false, n)),
                "abort-after-target" => Some((true, n)),
                _ => None,
            }
        });
        Engine {
            store,
            config,
            hook,
        }
    }

    fn work_dir(&self) -> std::io::Result<PathBuf> {
        let root = state::promote_root(self.store)?;
        let w = root.join(".work");
        state::ensure_dir(&w, 0o700)?;
        Ok(w)
    }

    pub fn pass(&self) -> PassReport {
        let mut report = PassReport::default();
        let chain = match read_chain(self.store) {
            Ok(c) => c,
            Err(e) => {
                report.chain_broken = e.contains("chain is broken");
                report.errors.push(e);
                return report;
            }
        };
        let qpath = self.store.join("quarantine");
        let q = match open_dir(&qpath) {
            Ok(q) => q,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return report,
            Err(e) => {
                report.errors.push(format!("{}: {e}", qpath.display()));
                return report;
            }
        };
        let mut ids: Vec<String> = match std::fs::read_dir(&qpath) {
            Ok(rd) => rd
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| state::is_bundle_id(n))
                .collect(),
            Err(e) => {
                report.errors.push(format!("{}: {e}", qpath.display()));
                return report;
            }
        };
        ids.sort();
        // Oldest first by received time, so a channel's bundles go out in arrival order.
        let mut keyed: Vec<(u64, u64, String)> = ids
            .into_iter()
            .map(|id| {
                let (t, s) = std::fs::read(qpath.join(&id).join("receipt.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Receipt>(&b).ok())
                    .map_or((u64::MAX, 0), |r| (r.received_unix_ms, r.sequence));
                (t, s, id)
            })
            .collect();
        keyed.sort();
        let reviewers = approval::load_reviewers(&self.config.reviewers.trust);
        for (_, _, id) in keyed {
            match self.entry(&q, &chain, &id, &reviewers) {
                Ok(o) => report.outcomes.push((id, o)),
                Err(e) => report.errors.push(format!("{id}: {e}")),
            }
        }
        report
    }

    /// Appends the audit records of transitions saved but not yet audited, then saves again.
    fn audit_pending(&self, st: &mut State) -> anyhow::Result<()> {
        let mut changed = false;
        for i in 0..st.history.len() {
            if st.history[i].audit_seq.is_some() {
                continue;
            }
            let t = st.history[i].clone();
            let rec = AuditRecord {
                outcome: format!("promote_{}", t.stage),
                bundle_id: Some(st.bundle_id.clone()),
                channel: Some(st.channel.clone()),
                sequence: Some(st.sequence),
                signer: (!t.reviewers.is_empty()).then(|| t.reviewers.join(",")),
                reason: Some(t.result.clone()),
                detail: Some(match &t.target {
                    Some(tg) => format!("{tg}: {}", t.detail),
                    None => t.detail.clone(),
                }),
                path: Some(format!("promote/{}/state.json", st.bundle_id)),
                receipt_blake3: Some(st.receipt_blake3.clone()),
                time_unix_ms: t.time_unix_ms,
                ..AuditRecord::default()
            };
            let rec = audit::append_shared(self.store, rec)
                .map_err(|e| anyhow::anyhow!("append to audit.jsonl: {e}"))?;
            st.history[i].audit_seq = Some(rec.seq);
            changed = true;
        }
        if changed {
            state::save(self.store, st)?;
        }
        Ok(())
    }

    /// Records a transition: saved (atomically) first, then audited.
    #[allow(clippy::too_many_arguments)]
    fn transition(
        &self,
        st: &mut State,
        stage: Stage,
        what: &str,
        result: &str,
        detail: String,
        target: Option<String>,
        reviewers: Vec<String>,
    ) -> anyhow::Result<()> {
        let now_ms = sluice_host::time::now_unix_ms();
        st.history.push(Transition {
            time: sluice_host::time::rfc3339_ms(now_ms),
            time_unix_ms: now_ms,
            stage: what.into(),
            result: result.into(),
            detail: detail.clone(),
            target,
            reviewers,
            audit_seq: None,
        });
        st.stage = stage;
        match stage {
            Stage::Stopped => {
                st.reason = Some(format!("{what}: {detail}"));
                st.waiting_for = None;
            }
            Stage::Published => {
                st.reason = None;
                st.waiting_for = None;
            }
            _ => {}
        }
        state::save(self.store, st)?;
        self.audit_pending(st)
    }

    fn stop(
        &self,
        st: &mut State,
        what: &str,
        result: &str,
        why: String,
    ) -> anyhow::Result<Outcome> {
        tracing::warn!(bundle = %st.bundle_id, stage = what, reason = %why, "promotion stopped");
        self.transition(st, Stage::Stopped, what, result, why.clone(), None, vec![])?;
        Ok(Outcome::Stopped(format!("{what}: {why}")))
    }

    fn entry(
        &self,
        q: &OwnedFd,
        chain: &ChainReport,
        id: &str,
        reviewers: &anyhow::Result<TrustStore>,
    ) -> anyhow::Result<Outcome> {
        let existing = state::load(self.store, id)?;
        if let Some(mut st) = existing.clone()
            && st.stage.terminal()
        {
            self.audit_pending(&mut st)?;
            return Ok(Outcome::Done);
        }
        let (receipt, rh) = match verified_entry(q, chain, id) {
            Ok(v) => v,
            Err(EntryProblem::NotYetAccepted) => {
                return Ok(Outcome::Ignored(
                    "no accepted audit record for this entry yet".into(),
                ));
            }
            Err(EntryProblem::Invalid(why)) => {
                return match existing {
                    Some(mut st) => self.stop(&mut st, "verify", "failed", why),
                    None => Ok(Outcome::Ignored(why)),
                };
            }
        };
        let Some(pipe) = self.config.pipeline(&receipt.channel) else {
            return Ok(Outcome::Ignored(format!(
                "no pipeline for channel {:?}",
                receipt.channel
            )));
        };
        let mut st =
            existing.unwrap_or_else(|| State::new(id, &receipt.channel, receipt.sequence, &rh));
        self.audit_pending(&mut st)?;
        if st.receipt_blake3 != rh {
            return self.stop(
                &mut st,
                "verify",
                "failed",
                "receipt.json changed since promotion began".into(),
            );
        }
        let entry = Entry {
            id: id.to_string(),
            files: self.store.join("quarantine").join(id).join("files"),
            receipt,
        };
        loop {
            match st.stage {
                Stage::Scan => {
                    if let Some(o) = self.scan(&mut st, pipe, &entry, q, chain)? {
                        return Ok(o);
                    }
                }
                Stage::Approve => {
                    if let Some(o) = self.approve(&mut st, pipe, &entry, reviewers)? {
                        return Ok(o);
                    }
                }
                Stage::Publish => return self.publish(&mut st, pipe, &entry),
                Stage::Published | Stage::Stopped => return Ok(Outcome::Done),
            }
        }
    }

    fn scan(
        &self,
        st: &mut State,
        pipe: &Pipeline,
        entry: &Entry,
        q: &OwnedFd,
        chain: &ChainReport,
    ) -> anyhow::Result<Option<Outcome>> {
        let mut passed = Vec::new();
        for s in &pipe.scan {
            match scan::run_scanner(s, &entry.files) {
                ScanOutcome::Clean(d) => passed.push(d),
                ScanOutcome::Failed(why) => return self.stop(st, "scan", "failed", why).map(Some),
            }
        }
        // The scanners ran on the quarantine copy: prove they left it byte-identical.
        if let Err(p) = verified_entry(q, chain, &entry.id) {
            let why = match p {
                EntryProblem::Invalid(w) => w,
                EntryProblem::NotYetAccepted => "accepted record vanished".into(),
            };
            return self
                .stop(
                    st,
                    "scan",
                    "failed",
                    format!("entry changed during scanning: {why}"),
                )
                .map(Some);
        }
        let detail = if passed.is_empty() {
            "no scanners configured".to_string()
        } else {
            format!("clean: {}", passed.join("; "))
        };
        st.waiting_for = None;
        self.transition(st, Stage::Approve, "scan", "passed", detail, None, vec![])?;
        Ok(None)
    }

    fn approve(
        &self,
        st: &mut State,
        pipe: &Pipeline,
        entry: &Entry,
        reviewers: &anyhow::Result<TrustStore>,
    ) -> anyhow::Result<Option<Outcome>> {
        let reviewers = match reviewers {
            Ok(r) => r,
            Err(e) => {
                let w = format!("approvals cannot be checked: {e}");
                self.wait(st, &w)?;
                return Ok(Some(Outcome::Waiting(w)));
            }
        };
        let expect = Statement {
            decision: Decision::Approve,
            bundle_id: entry.id.clone(),
            channel: st.channel.clone(),
            receipt_blake3: st.receipt_blake3.clone(),
            reason: String::new(),
        };
        let mut approvers: Vec<String> = Vec::new();
        let mut ignored = Vec::new();
        for s in load_statements(self.store, &entry.id)? {
            match approval::judge(&s, &expect, reviewers) {
                Judged::Valid {
                    name,
                    decision: Decision::Reject,
                    reason,
                } => {
                    return self
                        .transition(
                            st,
                            Stage::Stopped,
                            "approve",
                            "rejected",
                            format!("rejected by reviewer {name}: {reason}"),
                            None,
                            vec![name.clone()],
                        )
                        .map(|()| {
                            Some(Outcome::Stopped(format!(
                                "approve: rejected by {name}: {reason}"
                            )))
                        });
                }
                Judged::Valid { name, .. } => {
                    if !approvers.contains(&name) {
                        approvers.push(name);
                    }
                }
                Judged::Ignored(why) => ignored.push(why),
            }
        }
        approvers.sort();
        let need = pipe.approvals as usize;
        if approvers.len() >= need {
            let detail = format!(
                "{} of {} required approvals from {} reviewer keys: {}",
                approvers.len(),
                need,
                reviewers.keys().len(),
                approvers.join(", ")
            );
            st.waiting_for = None;
            self.transition(
                st,
                Stage::Publish,
                "approve",
                "passed",
                detail,
                None,
                approvers,
            )?;
            return Ok(None);
        }
        let mut w = format!(
            "approvals: {} of {} ({})",
            approvers.len(),
            need,
            if approvers.is_empty() {
                "none yet".to_string()
            } else {
                approvers.join(", ")
            }
        );
        if need > reviewers.keys().len() {
            w.push_str(&format!(
                "; the reviewer trust directory has only {} keys",
                reviewers.keys().len()
            ));
        }
        for i in &ignored {
            w.push_str("; ");
            w.push_str(i);
        }
        self.wait(st, &w)?;
        Ok(Some(Outcome::Waiting(w)))
    }

    /// Saves a new `waiting_for` (not a transition: not audited).
    fn wait(&self, st: &mut State, w: &str) -> anyhow::Result<()> {
        if st.waiting_for.as_deref() != Some(w) || st.history.is_empty() {
            st.waiting_for = Some(w.to_string());
            state::save(self.store, st)?;
        }
        Ok(())
    }

    fn publish(&self, st: &mut State, pipe: &Pipeline, entry: &Entry) -> anyhow::Result<Outcome> {
        let work = self.work_dir()?;
        let pending: Vec<_> = pipe
            .publish
            .iter()
            .filter(|t| !st.published.contains(&t.id()))
            .collect();
        // Every pending target must be ready before any is touched.
        for t in &pending {
            if let Err(e) = publish::preflight(t, entry, &work) {
                return self.publish_failed(st, &t.id(), e);
            }
        }
        for t in pending {
            st.publish_attempts += 1;
            match publish::publish(t, entry, &work) {
                Ok(detail) => {
                    st.published.push(t.id());
                    st.reason = None;
                    self.transition(
                        st,
                        Stage::Publish,
                        "publish",
                        "target_done",
                        detail,
                        Some(t.id()),
                        vec![],
                    )?;
                    self.test_hook(st.published.len());
                }
                Err(e) => return self.publish_failed(st, &t.id(), e),
            }
        }
        let detail = format!("published to {}", st.published.join(", "));
        self.transition(
            st,
            Stage::Published,
            "publish",
            "published",
            detail,
            None,
            vec![],
        )?;
        Ok(Outcome::Published)
    }

    fn publish_failed(&self, st: &mut State, target: &str, e: PubError) -> anyhow::Result<Outcome> {
        match e {
            PubError::Fatal(why) => {
                let why = if st.published.is_empty() {
                    format!("{target}: {why}")
                } else {
                    format!(
                        "{target}: {why} (already published to: {})",
                        st.published.join(", ")
                    )
                };
                self.stop(st, "publish", "failed", why)
            }
            PubError::Retry(why) => {
                let why = format!("{target}: {why}");
                let w = format!("publish retry: {why}");
                // Audited once per distinct reason, not once per poll.
                if st.reason.as_deref() != Some(why.as_str()) {
                    st.reason = Some(why.clone());
                    st.waiting_for = Some(w.clone());
                    self.transition(
                        st,
                        Stage::Publish,
                        "publish",
                        "retry",
                        why.clone(),
                        Some(target.to_string()),
                        vec![],
                    )?;
                } else {
                    self.wait(st, &w)?;
                }
                tracing::warn!(bundle = %st.bundle_id, reason = %why, "publish deferred; will retry");
                Ok(Outcome::Retrying(why))
            }
        }
    }

    fn test_hook(&self, done: usize) {
        if let Some((abort, n)) = self.hook
            && n == done
        {
            eprintln!("sluice-promote test hook: after target {n}");
            if abort {
                std::process::abort();
            }
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }
}

/// Every readable `approvals/*.json` of an entry (unparseable files are skipped with a warning).
pub fn load_statements(store: &Path, id: &str) -> anyhow::Result<Vec<SignedStatement>> {
    let dir = state::entry_dir(store, id).join(state::APPROVALS_DIR);
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => anyhow::bail!("{}: {e}", dir.display()),
    };
    let mut paths: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        match std::fs::read(&p)
            .map_err(anyhow::Error::from)
            .and_then(|b| serde_json::from_slice::<SignedStatement>(&b).map_err(Into::into))
        {
            Ok(s) => out.push(s),
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "ignoring unreadable approval")
            }
        }
    }
    Ok(out)
}
