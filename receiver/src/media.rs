//! Finding and opening spool volumes on (possibly hostile) removable media.
//!
//! Nothing on a medium is trusted: a path is scanned without following symlinks, a volume is
//! opened with `O_NOFOLLOW | O_NONBLOCK` (a FIFO cannot hang the import) and must be a regular
//! file by `fstat`, its header must authenticate under the link key and fit the receiver's
//! limits, its declared record count must be plausible for its declared object
//! (`VolumeHeader::is_plausible`), and its size is compared with the header's before any record
//! is read. While a volume is copied into staging every record is checked by [`RecordFilter`]:
//! only authenticated data frames of the declared object, at most `K + repair_surplus` per
//! block, land in staging.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use sluice_common::spool::{HEADER_LEN, VolumeHeader};
use sluice_common::transport::params::{Limits, ObjectParams};
use sluice_common::transport::wire::{self, LinkKey};

/// Directory levels searched below each PATH (DIR/<bundle>/vol-… is level 2).
pub const MAX_SCAN_DEPTH: usize = 4;
/// Volume files considered per import: each stays open until it is staged, so this stays well
/// below the usual 1024-descriptor limit (and bounds the work a medium full of junk causes).
pub const MAX_CANDIDATES: usize = 768;
/// Directory entries read from one directory of a medium; the rest are reported, not listed
/// (a directory with millions of entries costs at most this many `DirEntry`s of memory).
pub const MAX_DIR_ENTRIES: usize = 4096;
/// Directory entries looked at in one whole scan, all PATHs together (worst case: this many
/// `getdents` entries read and sorted in batches of [`MAX_DIR_ENTRIES`]).
pub const MAX_SCAN_ENTRIES: usize = 65_536;
/// Read buffer per volume while rebuilding an object.
pub const READ_BUFFER: usize = 256 << 10;

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Paths to open as volumes.
    pub candidates: Vec<PathBuf>,
    /// Named things that cannot be volumes (symlinks, FIFOs, devices, directories named
    /// `*.sluicevol`), with the reason.
    pub problems: Vec<(PathBuf, String)>,
    /// PATH arguments that could not be read at all.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Other files, ignored.
    pub unknown: u64,
    /// Entries looked at so far (bounded by [`MAX_SCAN_ENTRIES`]).
    pub entries_seen: usize,
}

fn type_word(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn is_volume_name(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "sluicevol")
}

/// Scans each PATH: a file is a candidate whatever its name; a directory is searched to
/// [`MAX_SCAN_DEPTH`] for `*.sluicevol`, never through symlinks.
pub fn scan(paths: &[PathBuf]) -> Scan {
    let mut scan = Scan::default();
    for path in paths {
        match std::fs::symlink_metadata(path) {
            Err(e) => scan.unreadable.push((path.clone(), e.to_string())),
            Ok(m) if m.is_file() => scan.candidates.push(path.clone()),
            Ok(m) if m.is_dir() => walk(path, 0, &mut scan),
            Ok(m) => scan.problems.push((
                path.clone(),
                format!(
                    "is {}; volumes are read only from regular files",
                    type_word(&m.file_type())
                ),
            )),
        }
    }
    scan
}

fn walk(dir: &Path, depth: usize, scan: &mut Scan) {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            scan.problems
                .push((dir.to_path_buf(), format!("cannot list directory: {e}")));
            return;
        }
    };
    let budget = MAX_DIR_ENTRIES.min(MAX_SCAN_ENTRIES.saturating_sub(scan.entries_seen));
    // One more than the budget, so "there were more" is known without reading them all.
    let mut entries: Vec<_> = entries.filter_map(Result::ok).take(budget + 1).collect();
    if entries.len() > budget {
        entries.truncate(budget);
        scan.problems.push((
            dir.to_path_buf(),
            format!(
                "has more entries than this import looks at ({MAX_DIR_ENTRIES} per directory, \
                 {MAX_SCAN_ENTRIES} in all); only the first {budget} were scanned — \
                 give the volume directories as separate paths"
            ),
        ));
    }
    scan.entries_seen += entries.len();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // The dirent type, never following a symlink.
        let Ok(ft) = entry.file_type() else {
            scan.unknown += 1;
            continue;
        };
        if is_volume_name(&path) {
            if ft.is_file() {
                if scan.candidates.len() < MAX_CANDIDATES {
                    scan.candidates.push(path);
                } else {
                    scan.problems.push((
                        path,
                        format!("skipped: more than {MAX_CANDIDATES} volumes in one import"),
                    ));
                }
            } else {
                scan.problems.push((
                    path,
                    format!(
                        "is {}; volumes are read only from regular files",
                        type_word(&ft)
                    ),
                ));
            }
        } else if ft.is_dir() && depth + 1 < MAX_SCAN_DEPTH {
            walk(&path, depth + 1, scan);
        } else {
            scan.unknown += 1;
        }
    }
}

/// An opened volume whose header authenticated and fits the limits.
#[derive(Debug)]
pub struct OpenVolume {
    pub path: PathBuf,
    pub file: File,
    pub header: VolumeHeader,
    pub header_bytes: [u8; HEADER_LEN],
    /// Whole records present (fewer than `header.frame_count` for a truncated copy).
    pub records: u64,
    /// Bytes after the declared records, ignored.
    pub trailing: u64,
}

impl OpenVolume {
    pub fn truncated(&self) -> bool {
        self.records < self.header.frame_count
    }
}

/// Opens and authenticates one volume. The error is a sentence about the path.
pub fn open_volume(path: &Path, key: &LinkKey, limits: &Limits) -> Result<OpenVolume, String> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => {
            "is a symbolic link; volumes are read only from regular files".to_string()
        }
        e => format!("cannot open: {}", io::Error::from(e)),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("cannot stat: {}", io::Error::from(e)))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        let word = match kind {
            FileType::Directory => "a directory",
            FileType::Fifo => "a FIFO (named pipe)",
            FileType::CharacterDevice => "a character device",
            FileType::BlockDevice => "a block device",
            FileType::Socket => "a socket",
            _ => "not a regular file",
        };
        return Err(format!(
            "is {word}; volumes are read only from regular files"
        ));
    }
    let file = File::from(fd);
    let file_len = st.st_size as u64;
    let mut header_bytes = [0u8; HEADER_LEN];
    if file_len < HEADER_LEN as u64 {
        return Err(format!(
            "is not a spool volume: {file_len} bytes, shorter than a volume header"
        ));
    }
    file.read_exact_at(&mut header_bytes, 0)
        .map_err(|e| format!("cannot read the volume header: {e}"))?;
    let header =
        VolumeHeader::decode(&header_bytes, key.as_bytes()).map_err(|e| format!("refused: {e}"))?;
    if header.object_len > limits.max_object_bytes {
        return Err(format!(
            "refused: declares an object of {} bytes, over this receiver's limit of {}",
            header.object_len, limits.max_object_bytes
        ));
    }
    let symbol = (header.frame_len as usize).checked_sub(wire::DATA_OVERHEAD);
    if !symbol.is_some_and(|t| {
        t >= usize::from(limits.min_symbol_size) && t <= usize::from(limits.max_symbol_size)
    }) {
        return Err(format!(
            "refused: frame length {} is not a data frame within this receiver's symbol limits",
            header.frame_len
        ));
    }
    if !header.is_plausible() {
        return Err(format!(
            "refused: declares {} records, more than any volume of a {}-byte object can hold \
             (at most {}); nothing was staged",
            header.frame_count,
            header.object_len,
            header.max_plausible_records().unwrap_or(0)
        ));
    }
    let expected = header
        .expected_file_len()
        .ok_or_else(|| "refused: frame count overflows".to_string())?;
    Ok(OpenVolume {
        path: path.to_path_buf(),
        records: header.whole_records_in(file_len),
        trailing: file_len.saturating_sub(expected),
        file,
        header,
        header_bytes,
    })
}

/// What [`RecordFilter`] made of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordVerdict {
    /// An authenticated data frame of the volume's object: staged.
    Keep,
    /// Not an authenticated data frame of this object (bad tag, other object, other geometry,
    /// outside the receiver's limits): dropped.
    Junk,
    /// Authentic, but its block already has `K + repair_surplus` records in this volume (the
    /// receiver would drop it anyway): dropped.
    Surplus,
}

/// Checks records while a volume is copied into staging, so junk never lands there and a
/// volume's staged size is bounded by its object: at most `K + repair_surplus` records per block.
///
/// Memory: one `u16` per block of the object, allocated when the first authentic record fixes
/// the geometry; at most `Limits::max_blocks` (2^20 by default, 2 MiB).
pub struct RecordFilter<'a> {
    key: &'a LinkKey,
    limits: &'a Limits,
    header: VolumeHeader,
    params: Option<ObjectParams>,
    per_block: Vec<u16>,
    pub kept: u64,
    pub junk: u64,
    pub surplus: u64,
}

impl<'a> RecordFilter<'a> {
    pub fn new(key: &'a LinkKey, limits: &'a Limits, header: VolumeHeader) -> Self {
        RecordFilter {
            key,
            limits,
            header,
            params: None,
            per_block: Vec::new(),
            kept: 0,
            junk: 0,
            surplus: 0,
        }
    }

    /// Judges one record (exactly `frame_len` bytes) and counts it.
    pub fn check(&mut self, record: &[u8]) -> RecordVerdict {
        let verdict = self.judge(record);
        match verdict {
            RecordVerdict::Keep => self.kept += 1,
            RecordVerdict::Junk => self.junk += 1,
            RecordVerdict::Surplus => self.surplus += 1,
        }
        verdict
    }

    fn judge(&mut self, record: &[u8]) -> RecordVerdict {
        if record.len() != self.header.frame_len as usize {
            return RecordVerdict::Junk;
        }
        let Ok(wire::Frame::Data(frame)) = wire::decode(self.key, record) else {
            return RecordVerdict::Junk;
        };
        let params = frame.header.params;
        match self.params {
            Some(p) if p != params => return RecordVerdict::Junk,
            Some(_) => {}
            None => {
                if params.object_id != self.header.object_id
                    || params.object_len != self.header.object_len
                    || self.limits.check(&params).is_err()
                    || params.block_count() > self.limits.max_blocks
                {
                    return RecordVerdict::Junk;
                }
                self.params = Some(params);
                self.per_block = vec![0; params.block_count() as usize];
            }
        }
        let block = u64::from(frame.header.block);
        let k = params.source_symbols(block);
        let Some(count) = self.per_block.get_mut(block as usize) else {
            return RecordVerdict::Junk;
        };
        if u32::from(*count) >= self.limits.max_stored_symbols(k) {
            return RecordVerdict::Surplus;
        }
        *count = count.saturating_add(1);
        RecordVerdict::Keep
    }
}

/// Reads one staged volume's records in order with a bounded buffer.
pub struct RecordReader {
    reader: BufReader<File>,
    /// This volume's own record length (volumes of one object are never assumed to share it).
    pub frame_len: usize,
    /// The volume's intended record count (its share of the send order).
    pub frame_count: u64,
    /// Records actually present.
    pub records: u64,
    pub next: u64,
}

impl RecordReader {
    pub fn new(mut file: File, header: &VolumeHeader, file_len: u64) -> io::Result<Self> {
        file.seek(SeekFrom::Start(HEADER_LEN as u64))?;
        Ok(RecordReader {
            reader: BufReader::with_capacity(READ_BUFFER, file),
            frame_len: header.frame_len as usize,
            frame_count: header.frame_count.max(1),
            records: header.whole_records_in(file_len),
            next: 0,
        })
    }

    pub fn exhausted(&self) -> bool {
        self.next >= self.records
    }

    /// Reads the next record into the front of `buf` (at least `frame_len` long) and returns it.
    pub fn read_next<'b>(&mut self, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
        let record = buf
            .get_mut(..self.frame_len)
            .ok_or_else(|| io::Error::other("record buffer shorter than the frame length"))?;
        self.reader.read_exact(record)?;
        self.next += 1;
        Ok(record)
    }
}

/// Which reader goes next so the records come out in (nearly) the sender's order: the one
/// least far through its own share, `next / frame_count` (compared exactly).
pub fn pick_next(readers: &[RecordReader]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, r) in readers.iter().enumerate() {
        if r.exhausted() {
            continue;
        }
        best = match best {
            None => Some(i),
            Some(b) => {
                let o = &readers[b];
                let lhs = u128::from(r.next) * u128::from(o.frame_count);
                let rhs = u128::from(o.next) * u128::from(r.frame_count);
                if lhs < rhs { Some(i) } else { Some(b) }
            }
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(frame_count: u64, records: u64) -> RecordReader {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v");
        std::fs::write(&p, vec![0u8; HEADER_LEN]).unwrap();
        RecordReader {
            reader: BufReader::new(File::open(&p).unwrap()),
            frame_len: 1,
            frame_count,
            records,
            next: 0,
        }
    }

    #[test]
    fn interleaving_follows_each_volumes_share() {
        // Three equal volumes (one of four missing) and a truncated one: round-robin while all
        // have records, the truncated one simply drops out.
        let mut rs = vec![reader(10, 10), reader(10, 4), reader(9, 9)];
        let mut order = Vec::new();
        while let Some(i) = pick_next(&rs) {
            rs[i].next += 1;
            order.push(i);
        }
        assert_eq!(order.len(), 23);
        assert_eq!(&order[..12], &[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
        assert!(!order[12..].contains(&1));
        // Never more than one record ahead of a peer with the same share.
        let mut rs = vec![reader(100, 100), reader(100, 100)];
        for _ in 0..150 {
            let i = pick_next(&rs).unwrap();
            rs[i].next += 1;
            assert!(rs[0].next.abs_diff(rs[1].next) <= 1);
        }
    }

    #[test]
    fn scan_reports_hostile_entries_by_name() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("junk.txt"), b"x").unwrap();
        std::fs::write(root.join("a.sluicevol"), b"not a volume").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("p.sluicevol")).unwrap();
        std::fs::create_dir(root.join("x.sluicevol")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("f.sluicevol"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let s = scan(&[root.to_path_buf()]);
        assert_eq!(s.candidates, vec![root.join("a.sluicevol")]);
        assert_eq!(s.unknown, 1);
        let named: Vec<String> = s
            .problems
            .iter()
            .map(|(p, why)| format!("{} {why}", p.file_name().unwrap().to_string_lossy()))
            .collect();
        assert!(
            named
                .iter()
                .any(|n| n.starts_with("p.sluicevol is a symbolic link"))
        );
        assert!(
            named
                .iter()
                .any(|n| n.starts_with("x.sluicevol is a directory"))
        );
        assert!(named.iter().any(|n| n.starts_with("f.sluicevol is a FIFO")));
        // Opening a FIFO directly does not block, and is refused; so is a symlink.
        for (name, why) in [("f.sluicevol", "FIFO"), ("p.sluicevol", "symbolic link")] {
            let err = open_volume(
                &root.join(name),
                &LinkKey::public_default(),
                &Limits::default(),
            )
            .unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn record_filter_keeps_authentic_frames_of_the_object_up_to_k_plus_surplus() {
        use sluice_common::transport::wire::DataHeader;
        let key = LinkKey::public_default();
        // T = 512: the smallest symbol the receiver's limits admit (docs/protocol.md §5).
        let limits = Limits::default();
        let params = ObjectParams {
            object_id: [7; 16],
            object_len: 10 * 512,
            block_size: 4 * 512,
            symbol_size: 512,
        };
        let frame = |p: ObjectParams, block: u32, esi: u32| {
            let mut out = vec![0u8; wire::data_frame_len(p.symbol_size)];
            let n = wire::encode_data(
                &key,
                &DataHeader {
                    params: p,
                    block,
                    esi,
                },
                &vec![1u8; usize::from(p.symbol_size)],
                &mut out,
            )
            .unwrap();
            out.truncate(n);
            out
        };
        let header = VolumeHeader {
            volume_index: 0,
            volume_count: 1,
            object_id: [7; 16],
            object_len: params.object_len,
            frame_len: wire::data_frame_len(512) as u32,
            frame_count: 100,
        };
        let mut f = RecordFilter::new(&key, &limits, header);
        // Block 0 has K = 4: 4 + 16 records kept, the rest is surplus.
        for esi in 0..30 {
            let want = if esi < 20 {
                RecordVerdict::Keep
            } else {
                RecordVerdict::Surplus
            };
            assert_eq!(f.check(&frame(params, 0, esi)), want, "esi {esi}");
        }
        // The last block (K = 2) has its own cap.
        for esi in 0..18 {
            assert_eq!(f.check(&frame(params, 2, esi)), RecordVerdict::Keep);
        }
        assert_eq!(f.check(&frame(params, 2, 18)), RecordVerdict::Surplus);
        // Junk: zeros, a bad tag, another object, another geometry.
        let mut bad = frame(params, 1, 0);
        *bad.last_mut().unwrap() ^= 1;
        let other = ObjectParams {
            object_id: [8; 16],
            ..params
        };
        let regeometry = ObjectParams {
            block_size: 8 * 512,
            ..params
        };
        for junk in [
            vec![0u8; header.frame_len as usize],
            bad,
            frame(other, 1, 0),
            frame(regeometry, 1, 0),
        ] {
            assert_eq!(f.check(&junk), RecordVerdict::Junk);
        }
        assert_eq!((f.kept, f.surplus, f.junk), (38, 11, 4));
        // A first record of another object never fixes the geometry.
        let mut g = RecordFilter::new(&key, &limits, header);
        assert_eq!(g.check(&frame(other, 0, 0)), RecordVerdict::Junk);
        assert_eq!(g.check(&frame(params, 0, 0)), RecordVerdict::Keep);
    }

    #[test]
    fn a_directory_with_too_many_entries_is_scanned_to_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for i in 0..MAX_DIR_ENTRIES + 10 {
            std::fs::write(root.join(format!("f{i:05}")), b"").unwrap();
        }
        let s = scan(&[root.to_path_buf()]);
        assert_eq!(s.entries_seen, MAX_DIR_ENTRIES);
        assert_eq!(s.unknown, MAX_DIR_ENTRIES as u64);
        assert!(
            s.problems
                .iter()
                .any(|(p, why)| p == root && why.contains("more entries")),
            "{:?}",
            s.problems
        );
    }

    #[test]
    fn an_implausible_record_count_is_refused_before_reading() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.sluicevol");
        let key = LinkKey::public_default();
        let header = VolumeHeader {
            volume_index: 0,
            volume_count: 1,
            object_id: [1; 16],
            object_len: 4096,
            frame_len: wire::data_frame_len(1024) as u32,
            frame_count: 1 << 20,
        };
        std::fs::write(&p, header.encode(key.as_bytes())).unwrap();
        let err = open_volume(&p, &key, &Limits::default()).unwrap_err();
        assert!(err.contains("more than any volume"), "{err}");
    }
}
