//! `audit.jsonl`: an append-only, hash-chained decision log.
//!
//! Each line is one JSON [`AuditRecord`]; its `prev` is the blake3 hex of the previous line's
//! exact bytes (without the newline) and `seq` counts from 1 without gaps, so deleting, editing or
//! reordering a line breaks the chain. Lines are appended with `O_APPEND` and fsynced one by one.
//!
//! **More than one writer.** The receiver (holding `DIR/.lock`) and `sluice-promote` (which never
//! takes `DIR/.lock`, so it can never block `listen`) both append. Every append takes
//! `flock(LOCK_EX)` on `audit.jsonl` itself, re-reads the log's tail if another process appended
//! since (so `seq`/`prev` continue the chain), writes, fsyncs and unlocks: the lock is held for
//! one append only. [`append_shared`] is the entry point for processes other than the receiver.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{FlockOperation, Mode, OFlags};

pub use super::records::{AuditRecord, GENESIS, Receipt};
use sluice_host::time;

pub const AUDIT_FILE: &str = "audit.jsonl";

/// What the log says was accepted, per bundle id (latest record wins).
#[derive(Clone, Debug)]
pub struct AcceptedInfo {
    pub channel: Option<String>,
    pub sequence: Option<u64>,
    pub receipt_blake3: Option<String>,
    /// Trust-store name of the signer that verified it: a duplicate record names it too.
    pub signer: Option<String>,
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

/// Longest audit line parsed. Records are a few hundred bytes; a longer line is still hashed
/// into the chain (so the chain stays checkable) but reported instead of parsed, so reading the
/// log never holds more than this much of one line.
pub const MAX_AUDIT_LINE_BYTES: usize = 1 << 20;
/// Chain problems kept as text; further ones are counted into one last line, so a log of
/// millions of broken lines costs no more memory than a log of a thousand.
pub const MAX_CHAIN_PROBLEMS: usize = 1000;

/// The appender's part of a record: its schema and its time (now unless the caller set one).
fn stamp(rec: &mut AuditRecord) {
    rec.schema = super::records::AUDIT_SCHEMA.into();
    if rec.time_unix_ms == 0 {
        rec.time_unix_ms = time::now_unix_ms();
    }
    rec.time = time::rfc3339_ms(rec.time_unix_ms);
}

/// Recomputes the chain over the log's bytes. Never fails: every irregularity is a problem line.
pub fn check_chain(bytes: &[u8]) -> ChainReport {
    check_chain_reader(bytes, &mut |_| {}).unwrap_or_default()
}

/// Recomputes the chain over a log read as a stream: memory is one line (at most
/// [`MAX_AUDIT_LINE_BYTES`]) plus what the report keeps (accepted bundles, channel maxima, at
/// most [`MAX_CHAIN_PROBLEMS`] problems), whatever the log's length. `visit` sees every record
/// that parses, in order (`status` derives its delivery figures in the same pass).
pub fn check_chain_reader(
    mut input: impl io::BufRead,
    visit: &mut dyn FnMut(&AuditRecord),
) -> io::Result<ChainReport> {
    let mut c = Chain {
        r: ChainReport {
            last_hash: GENESIS.to_owned(),
            ..ChainReport::default()
        },
        expected_seq: 1,
        lineno: 0,
        dropped: 0,
    };
    let mut line: Vec<u8> = Vec::new();
    let mut hasher = blake3::Hasher::new();
    let mut line_len = 0usize;
    let mut consumed = 0usize;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let (chunk, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        hasher.update(chunk);
        let room = (MAX_AUDIT_LINE_BYTES + 1).saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        line_len += chunk.len();
        let used = chunk.len() + usize::from(ends);
        input.consume(used);
        consumed += used;
        if ends {
            c.line(&line, line_len, &hasher, visit);
            c.r.complete_len = consumed;
            line.clear();
            line_len = 0;
            hasher = blake3::Hasher::new();
        }
    }
    if line_len > 0 {
        c.r.partial_tail = true;
        c.problem(format!(
            "audit.jsonl ends with a partial line of {line_len} bytes (interrupted append)"
        ));
    }
    if c.dropped > 0 {
        c.r.problems
            .push(format!("… and {} more problem(s) not listed", c.dropped));
    }
    Ok(c.r)
}

struct Chain {
    r: ChainReport,
    expected_seq: u64,
    lineno: usize,
    dropped: u64,
}

impl Chain {
    fn problem(&mut self, p: String) {
        if self.r.problems.len() < MAX_CHAIN_PROBLEMS {
            self.r.problems.push(p);
        } else {
            self.dropped += 1;
        }
    }

    /// One complete line: `line` holds its first bytes (all of it unless over the limit),
    /// `hasher` has seen all `len` bytes.
    fn line(
        &mut self,
        line: &[u8],
        len: usize,
        hasher: &blake3::Hasher,
        visit: &mut dyn FnMut(&AuditRecord),
    ) {
        self.lineno += 1;
        let lineno = self.lineno;
        if len == 0 {
            self.problem(format!("line {lineno}: empty line"));
            return;
        }
        self.r.records += 1;
        let parsed = if len > MAX_AUDIT_LINE_BYTES {
            Err(format!(
                "{len} bytes, longer than any record ({MAX_AUDIT_LINE_BYTES})"
            ))
        } else {
            serde_json::from_slice::<AuditRecord>(line).map_err(|e| e.to_string())
        };
        match parsed {
            Ok(rec) => {
                if rec.seq != self.expected_seq {
                    self.problem(format!(
                        "line {lineno}: seq {} but expected {} (a record is missing or out of order)",
                        rec.seq, self.expected_seq
                    ));
                }
                if rec.prev != self.r.last_hash {
                    self.problem(format!(
                        "line {lineno}: prev {} does not match the hash of the previous line {} (chain broken)",
                        rec.prev, self.r.last_hash
                    ));
                }
                self.expected_seq = rec.seq.saturating_add(1);
                self.r.last_seq = rec.seq;
                if rec.outcome == "accepted" {
                    if let Some(id) = &rec.bundle_id {
                        self.r.accepted.insert(
                            id.clone(),
                            AcceptedInfo {
                                channel: rec.channel.clone(),
                                sequence: rec.sequence,
                                receipt_blake3: rec.receipt_blake3.clone(),
                                signer: rec.signer.clone(),
                            },
                        );
                    }
                    if let (Some(c), Some(s)) = (&rec.channel, rec.sequence) {
                        let e = self.r.channel_max.entry(c.clone()).or_insert(s);
                        *e = (*e).max(s);
                    }
                }
                visit(&rec);
            }
            Err(e) => {
                self.problem(format!("line {lineno}: not a valid audit record ({e})"));
                self.expected_seq = self.expected_seq.saturating_add(1);
                self.r.last_seq = self.r.last_seq.saturating_add(1);
            }
        }
        self.r.last_hash = hasher.finalize().to_hex().to_string();
        self.r.last_line =
            (len <= MAX_AUDIT_LINE_BYTES).then(|| String::from_utf8_lossy(line).into_owned());
    }
}

/// The open log, positioned to append the next record.
pub struct AuditLog {
    file: File,
    len: u64,
    next_seq: u64,
    prev: String,
    /// Set after an fsync failure: the log's durability is unknown, so nothing more is appended
    /// until a restart reconciles it (never retry-then-trust).
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
        let file = File::from(fd);
        let _guard = AuditFlock::lock(file.as_fd())?;
        // Streamed: opening a store costs one line of memory, not the whole log.
        let report = check_chain_reader(io::BufReader::with_capacity(1 << 16, &file), &mut |_| {})?;
        let mut len = file.metadata()?.len();
        if report.partial_tail {
            tracing::warn!(
                bytes = len - report.complete_len as u64,
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
        // Another process (sluice-promote) may append too: hold the file lock for this append and
        // continue the chain from whatever the file now ends with.
        let _guard = AuditFlock::lock(self.file.as_fd())?;
        let size = self.file.metadata()?.len();
        if size != self.len {
            let tail = read_tail(&mut self.file)?;
            self.len = tail.len;
            self.next_seq = tail.next_seq;
            self.prev = tail.prev;
        }
        rec.seq = self.next_seq;
        rec.prev = self.prev.clone();
        stamp(&mut rec);
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

/// `flock(LOCK_EX)` on the audit file, released on drop. Blocking, but every holder keeps it for
/// one append (read the tail, write one line, fsync) and a dead holder's lock goes with it.
/// Holds a duplicate of the descriptor (same open file description, so the same lock) so the
/// file itself stays free to be written while the guard lives.
struct AuditFlock(OwnedFd);

impl AuditFlock {
    fn lock(fd: BorrowedFd<'_>) -> io::Result<AuditFlock> {
        let fd = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
        loop {
            match rustix::fs::flock(&fd, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(AuditFlock(fd)),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for AuditFlock {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(&self.0, FlockOperation::Unlock);
    }
}

/// Where the chain continues: the file's length (complete lines only), next seq, last hash.
#[derive(Debug, PartialEq, Eq)]
struct Tail {
    len: u64,
    next_seq: u64,
    prev: String,
}

/// Reads only the end of the log (backwards, in chunks) to find its last complete line. A
/// trailing partial line (a writer died mid-append; it never became a fsynced record) is
/// truncated away, as [`AuditLog::open`] does. Call with the file lock held.
fn read_tail(file: &mut File) -> io::Result<Tail> {
    let size = file.metadata()?.len();
    const CHUNK: u64 = 64 * 1024;
    let mut buf: Vec<u8> = Vec::new();
    let mut start = size;
    // Grow the window from the end until it holds the last newline and the one before it (or
    // reaches the start of the file).
    loop {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        if start == 0 || newlines >= 2 {
            break;
        }
    }
    let complete = match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    let complete_len = start + complete as u64;
    if complete_len < size {
        tracing::warn!(
            bytes = size - complete_len,
            "audit.jsonl: dropping an interrupted partial last line"
        );
        file.set_len(complete_len)?;
        file.sync_all()?;
    }
    let body = &buf[..complete];
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    if body.is_empty() && start == 0 {
        return Ok(Tail {
            len: complete_len,
            next_seq: 1,
            prev: GENESIS.to_owned(),
        });
    }
    let last = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => &body[i + 1..],
        None => body,
    };
    let rec: AuditRecord = serde_json::from_slice(last).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "audit.jsonl: last line is not a valid audit record ({e}); refusing to extend a broken chain (run `sluice-recv audit verify`)"
            ),
        )
    })?;
    Ok(Tail {
        len: complete_len,
        next_seq: rec.seq.saturating_add(1),
        prev: blake3::hash(last).to_hex().to_string(),
    })
}

/// Appends one record to `DIR/audit.jsonl` from a process other than the receiver (for example
/// `sluice-promote`), without taking `DIR/.lock`: flock on the log, read its tail, fill in `seq`,
/// `prev` and the time, append, fsync, unlock. The receiver's own appends take the same lock, so
/// the chain stays one chain that `sluice-recv audit verify` accepts. The log must exist (a store
/// the receiver opened at least once); `DIR` may itself be a symlink, nothing below it is followed.
pub fn append_shared(store_dir: &Path, mut rec: AuditRecord) -> io::Result<AuditRecord> {
    let dir = rustix::fs::open(
        store_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let fd = rustix::fs::openat(
        &dir,
        AUDIT_FILE,
        OFlags::RDWR | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "cannot open {}/{AUDIT_FILE} for appending: {e}",
                store_dir.display()
            ),
        )
    })?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(io::Error::other("audit.jsonl is not a regular file"));
    }
    let mut file = File::from(fd);
    let guard = AuditFlock::lock(file.as_fd())?;
    let tail = read_tail(&mut file)?;
    rec.seq = tail.next_seq;
    rec.prev = tail.prev;
    stamp(&mut rec);
    let line = serde_json::to_string(&rec).map_err(io::Error::other)?;
    let mut bytes = line.into_bytes();
    bytes.push(b'\n');
    if let Err(e) = file.write_all(&bytes) {
        // Undo a short write so the chain stays parseable.
        let _ = file.set_len(tail.len).and_then(|()| file.sync_all());
        return Err(e);
    }
    file.sync_all()?;
    drop(guard);
    Ok(rec)
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
            outcome: "incomplete".into(),
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

    /// The receiver's open log and another process's `append_shared` interleave (and one
    /// interrupted shared append leaves a partial line): one intact chain, no gaps.
    #[test]
    fn shared_appends_interleave_into_one_chain() {
        let d = tempfile::tempdir().unwrap();
        let dir = File::open(d.path()).unwrap();
        let (mut log, _) = AuditLog::open(&dir).unwrap();
        let rec = |what: &str| AuditRecord {
            outcome: what.into(),
            ..AuditRecord::default()
        };
        assert_eq!(log.append(rec("accepted")).unwrap().seq, 1);
        assert_eq!(append_shared(d.path(), rec("promote_scan")).unwrap().seq, 2);
        assert_eq!(
            append_shared(d.path(), rec("promote_approve")).unwrap().seq,
            3
        );
        assert_eq!(log.append(rec("accepted")).unwrap().seq, 4);
        // A shared writer died mid-line: the next append (either kind) drops the fragment.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.path().join(AUDIT_FILE))
            .unwrap();
        f.write_all(b"{\"seq\":5,\"pr").unwrap();
        assert_eq!(log.append(rec("duplicate")).unwrap().seq, 5);
        assert_eq!(
            append_shared(d.path(), rec("promote_publish")).unwrap().seq,
            6
        );
        let bytes = std::fs::read(d.path().join(AUDIT_FILE)).unwrap();
        let r = check_chain(&bytes);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.records, 6);
        // Many appends from both sides at once (threads standing in for processes).
        let p = d.path().to_path_buf();
        let t = std::thread::spawn(move || {
            for _ in 0..50 {
                append_shared(&p, rec("promote_scan")).unwrap();
            }
        });
        for _ in 0..50 {
            log.append(rec("accepted")).unwrap();
        }
        t.join().unwrap();
        let r = check_chain(&std::fs::read(d.path().join(AUDIT_FILE)).unwrap());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.records, 106);
    }

    #[test]
    fn the_streamed_check_equals_the_whole_buffer_check_and_stays_bounded() {
        // A chain, one edited line, a partial tail: read in 7-byte pieces, same report.
        let mut log = String::new();
        let mut prev = GENESIS.to_string();
        for seq in 1..=5 {
            let l = line(seq, &prev);
            prev = blake3::hash(l.as_bytes()).to_hex().to_string();
            log.push_str(&l);
            log.push('\n');
        }
        let edited = log.replacen("\"seq\":3", "\"seq\":33", 1) + "{\"partial";
        for bytes in [log.as_bytes(), edited.as_bytes()] {
            let whole = check_chain(bytes);
            let mut seen = 0;
            let streamed =
                check_chain_reader(io::BufReader::with_capacity(7, bytes), &mut |_| seen += 1)
                    .unwrap();
            assert_eq!(streamed.problems, whole.problems);
            assert_eq!(
                (streamed.records, streamed.last_seq, &streamed.last_hash),
                (whole.records, whole.last_seq, &whole.last_hash)
            );
            assert_eq!(
                (streamed.complete_len, streamed.partial_tail),
                (whole.complete_len, whole.partial_tail)
            );
            assert!(seen >= 4);
        }
        // An overlong line is hashed into the chain but not parsed or kept.
        let long = format!("{}\n", "x".repeat(MAX_AUDIT_LINE_BYTES + 10));
        let r = check_chain(long.as_bytes());
        assert_eq!(r.records, 1);
        assert!(
            r.problems[0].contains("longer than any record"),
            "{:?}",
            r.problems
        );
        assert_eq!(
            r.last_hash,
            blake3::hash(&long.as_bytes()[..long.len() - 1])
                .to_hex()
                .to_string()
        );
        assert!(r.last_line.is_none());
        // Thousands of broken lines: the problem list stays capped.
        let junk = "not json\n".repeat(MAX_CHAIN_PROBLEMS * 3);
        let r = check_chain(junk.as_bytes());
        assert_eq!(r.problems.len(), MAX_CHAIN_PROBLEMS + 1);
        assert!(r.problems.last().unwrap().contains("more problem"));
    }
}
