//! `audit.jsonl`: an append-only, hash-chained decision log.
//!
//! Each line is one JSON [`AuditRecord`]; its `prev` is the blake3 hex of the previous line's
//! exact bytes (without the newline) and `seq` counts from 1 without gaps, so deleting, editing or
//! reordering a line breaks the chain. Lines are appended with `O_APPEND` and fsynced one by one.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use rustix::fs::{Mode, OFlags};

use super::records::{AuditRecord, GENESIS};
use sluice_host::time;

pub const AUDIT_FILE: &str = "audit.jsonl";

/// What the log says was accepted, per bundle id (latest record wins).
#[derive(Clone, Debug)]
pub struct AcceptedInfo {
    pub channel: Option<String>,
    pub sequence: Option<u64>,
    pub receipt_blake3: Option<String>,
}

/// A parsed log with its chain problems (empty when intact).
#[derive(Debug, Default)]
pub struct ChainReport {
    pub records: usize,
    pub last_seq: u64,
    pub last_hash: String,
    pub last_line: Option<String>,
    pub problems: Vec<String>,
    pub accepted: HashMap<String, AcceptedInfo>,
    /// Highest accepted sequence per channel according to the log.
    pub channel_max: HashMap<String, u64>,
    /// Bytes of complete lines (a trailing partial line, if any, starts here).
    pub complete_len: usize,
    pub partial_tail: bool,
}

/// Recomputes the chain over the log's bytes. Never fails: every irregularity is a problem line.
pub fn check_chain(bytes: &[u8]) -> ChainReport {
    let mut r = ChainReport {
        last_hash: GENESIS.to_owned(),
        ..ChainReport::default()
    };
    let complete_len = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    r.complete_len = complete_len;
    if complete_len < bytes.len() {
        r.partial_tail = true;
        r.problems.push(format!(
            "audit.jsonl ends with a partial line of {} bytes (interrupted append)",
            bytes.len() - complete_len
        ));
    }
    let mut expected_seq = 1u64;
    let body = &bytes[..complete_len];
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let lines: Vec<&[u8]> = if body.is_empty() {
        Vec::new()
    } else {
        body.split(|&b| b == b'\n').collect()
    };
    for (i, line) in lines.into_iter().enumerate() {
        if line.is_empty() {
            r.problems.push(format!("line {}: empty line", i + 1));
            continue;
        }
        let lineno = i + 1;
        r.records += 1;
        match serde_json::from_slice::<AuditRecord>(line) {
            Ok(rec) => {
                if rec.seq != expected_seq {
                    r.problems.push(format!(
                        "line {lineno}: seq {} but expected {expected_seq} (a record is missing or out of order)",
                        rec.seq
                    ));
                }
                if rec.prev != r.last_hash {
                    r.problems.push(format!(
                        "line {lineno}: prev {} does not match the hash of the previous line {} (chain broken)",
                        rec.prev, r.last_hash
                    ));
                }
                expected_seq = rec.seq.saturating_add(1);
                r.last_seq = rec.seq;
                if rec.decision == "accepted" {
                    if let Some(id) = &rec.bundle_id {
                        r.accepted.insert(
                            id.clone(),
                            AcceptedInfo {
                                channel: rec.channel.clone(),
                                sequence: rec.sequence,
                                receipt_blake3: rec.receipt_blake3.clone(),
                            },
                        );
                    }
                    if let (Some(c), Some(s)) = (&rec.channel, rec.sequence) {
                        let e = r.channel_max.entry(c.clone()).or_insert(s);
                        *e = (*e).max(s);
                    }
                }
            }
            Err(e) => {
                r.problems
                    .push(format!("line {lineno}: not a valid audit record ({e})"));
                expected_seq = expected_seq.saturating_add(1);
                r.last_seq = r.last_seq.saturating_add(1);
            }
        }
        r.last_hash = blake3::hash(line).to_hex().to_string();
        r.last_line = Some(String::from_utf8_lossy(line).into_owned());
    }
    r
}

/// The open log, positioned to append the next record.
pub struct AuditLog {
    file: File,
    len: u64,
    next_seq: u64,
    prev: String,
    /// Set after an fsync failure: the log's durability is unknown, so nothing more is appended
    /// until a restart reconciles it (A42: never retry-then-trust).
    poisoned: Option<String>,
    /// Test hook: the next fsync reports EIO (after the write went through).
    #[cfg(test)]
    pub fail_next_sync: bool,
}

impl AuditLog {
    /// Opens (creating) the log below `dir`, drops an interrupted partial last line (it was never
    /// fsynced as a complete record; reconciliation re-derives any decision it carried), and
    /// returns the chain report of what is there.
    pub fn open(dir: impl AsFd) -> io::Result<(AuditLog, ChainReport)> {
        let fd = rustix::fs::openat(
            dir.as_fd(),
            AUDIT_FILE,
            OFlags::RDWR | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o640),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(io::Error::other("audit.jsonl is not a regular file"));
        }
        let mut file = File::from(fd);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let report = check_chain(&bytes);
        let mut len = bytes.len() as u64;
        if report.partial_tail {
            tracing::warn!(
                bytes = bytes.len() - report.complete_len,
                "audit.jsonl: dropping an interrupted partial last line"
            );
            file.set_len(report.complete_len as u64)?;
            file.sync_all()?;
            len = report.complete_len as u64;
        }
        for p in &report.problems {
            if !p.contains("partial line") {
                tracing::error!(problem = %p, "audit.jsonl chain problem (run `sluice-recv audit verify`)");
            }
        }
        dir_sync(dir)?;
        Ok((
            AuditLog {
                file,
                len,
                next_seq: report.last_seq + 1,
                prev: report.last_hash.clone(),
                poisoned: None,
                #[cfg(test)]
                fail_next_sync: false,
            },
            report,
        ))
    }

    /// True after an fsync failure: a record may or may not have reached the log.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Why the log is poisoned, if it is.
    pub fn poisoned_reason(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Fills in `seq`, `prev` and the time, appends the line and fsyncs it. On a write error the
    /// file is truncated back to the last good record; on an fsync error the log is poisoned.
    pub fn append(&mut self, mut rec: AuditRecord) -> io::Result<AuditRecord> {
        if let Some(why) = &self.poisoned {
            return Err(io::Error::other(format!(
                "audit log unusable after an earlier fsync failure ({why}); restart the receiver"
            )));
        }
        rec.seq = self.next_seq;
        rec.prev = self.prev.clone();
        if rec.time_unix == 0 {
            rec.time_unix = time::now_unix();
        }
        rec.time_rfc3339 = time::rfc3339(rec.time_unix);
        let line = serde_json::to_string(&rec).map_err(io::Error::other)?;
        let mut bytes = line.clone().into_bytes();
        bytes.push(b'\n');
        if let Err(e) = self.file.write_all(&bytes) {
            // Undo a short write so the chain stays parseable; if even that fails, poison.
            if let Err(t) = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_all())
            {
                self.poisoned = Some(format!("write failed ({e}) and truncate failed ({t})"));
            }
            return Err(e);
        }
        #[cfg(test)]
        let synced = if std::mem::take(&mut self.fail_next_sync) {
            Err(io::Error::from_raw_os_error(libc::EIO))
        } else {
            self.file.sync_all()
        };
        #[cfg(not(test))]
        let synced = self.file.sync_all();
        if let Err(e) = synced {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        self.len += bytes.len() as u64;
        self.prev = blake3::hash(line.as_bytes()).to_hex().to_string();
        self.next_seq += 1;
        Ok(rec)
    }
}

fn dir_sync(dir: impl AsFd) -> io::Result<()> {
    rustix::fs::fsync(dir).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, prev: &str) -> String {
        serde_json::to_string(&AuditRecord {
            seq,
            prev: prev.to_owned(),
            decision: "incomplete".into(),
            ..AuditRecord::default()
        })
        .unwrap_or_default()
    }

    #[test]
    fn chain_detects_deleted_and_edited_lines() {
        let l1 = line(1, GENESIS);
        let h1 = blake3::hash(l1.as_bytes()).to_hex().to_string();
        let l2 = line(2, &h1);
        let h2 = blake3::hash(l2.as_bytes()).to_hex().to_string();
        let l3 = line(3, &h2);
        let ok = format!("{l1}\n{l2}\n{l3}\n");
        assert!(check_chain(ok.as_bytes()).problems.is_empty());
        assert_eq!(check_chain(ok.as_bytes()).records, 3);
        let deleted = format!("{l1}\n{l3}\n");
        assert!(!check_chain(deleted.as_bytes()).problems.is_empty());
        let edited = format!("{l1}\n{}\n{l3}\n", l2.replace("incomplete", "accepted"));
        assert!(!check_chain(edited.as_bytes()).problems.is_empty());
        let partial = format!("{l1}\n{l2}\n{{\"seq\":3");
        let r = check_chain(partial.as_bytes());
        assert!(r.partial_tail);
        assert_eq!(r.records, 2);
    }
}
