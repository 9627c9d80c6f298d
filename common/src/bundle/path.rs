//! The path policy: which manifest paths a bundle may carry (docs/bundle.md §Paths).
//!
//! Applied when building **and** again when verifying, by component, and by rejection only:
//! nothing is ever "normalised into" an acceptable path. The policy is deliberately stricter than
//! any one filesystem because the quarantine may later be copied to Windows, macOS or a USB stick.
//!
//! A path is accepted when it is relative, `/`-separated UTF-8 in NFC, and every component is
//! non-empty, not `.` or `..`, at most [`MAX_COMPONENT_BYTES`], free of `\` and `:`, free of
//! control, bidi and invisible format characters, not a Windows device name (`CON`, `aux.txt`,
//! `COM1`, …) and does not end in a dot or a space. The whole path is at most [`MAX_PATH_BYTES`]
//! and [`MAX_DEPTH`] components deep.
//!
//! A manifest (all entries together) is accepted when its entries are strictly sorted by path
//! bytes, every parent directory is itself listed as a directory entry (so parents always arrive
//! before their children), no two paths are equal under [`fold_key`] (case and compatibility
//! folding) and the entry count and total size are within [`Limits`].

use std::collections::HashMap;
use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::{Entry, EntryKind, RejectReason};

/// Longest path component in bytes (ext4, XFS, NTFS and APFS all cap a name near 255).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Longest whole path in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;
/// Deepest nesting, in components. Keeps any recursive consumer far from its stack limit.
pub const MAX_DEPTH: usize = 64;
/// Hard cap on manifest entries (files plus directories). A trust-store policy may lower it.
/// Worst-case verifier memory for the manifest is bounded by [`super::MAX_HEADER_BYTES`] anyway.
pub const MAX_ENTRIES: usize = 100_000;
/// Default cap on the sum of file sizes (1 TiB) when the policy sets none.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 1 << 40;

/// Limits applied to a whole manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// At most this many entries (never above [`MAX_ENTRIES`]).
    pub max_entries: usize,
    /// At most this many file bytes in total.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: MAX_ENTRIES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

/// Which path rule a name broke. The `Display` text names the rule for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRule {
    Empty,
    Absolute,
    EmptyComponent,
    DotComponent,
    DotDotComponent,
    Backslash,
    DriveOrStream,
    ControlCharacter,
    InvisibleCharacter,
    ReservedName,
    TrailingDotOrSpace,
    NotNfc,
    ComponentTooLong,
    PathTooLong,
    TooDeep,
    Unsorted,
    MissingParent,
    Duplicate,
    CaseCollision,
    ParentIsFile,
    TooManyEntries,
    TooManyBytes,
    DirWithContent,
}

impl PathRule {
    /// The [`RejectReason`] a verifier reports for this rule.
    pub fn reason(self) -> RejectReason {
        match self {
            PathRule::Duplicate | PathRule::CaseCollision | PathRule::ParentIsFile => {
                RejectReason::DuplicatePath
            }
            PathRule::TooManyEntries | PathRule::TooManyBytes => RejectReason::TooLarge,
            PathRule::Unsorted | PathRule::DirWithContent => RejectReason::NonCanonical,
            _ => RejectReason::BadPath,
        }
    }

    fn text(self) -> &'static str {
        match self {
            PathRule::Empty => "path is empty",
            PathRule::Absolute => "path is absolute (starts with '/')",
            PathRule::EmptyComponent => "path has an empty component ('//' or a trailing '/')",
            PathRule::DotComponent => "path has a '.' component",
            PathRule::DotDotComponent => "path has a '..' component (traversal)",
            PathRule::Backslash => "path contains a backslash",
            PathRule::DriveOrStream => {
                "path contains ':' (Windows drive letter or alternate data stream)"
            }
            PathRule::ControlCharacter => "path contains a control character",
            PathRule::InvisibleCharacter => "path contains a bidi, zero-width or format character",
            PathRule::ReservedName => "path component is a Windows device name (CON, NUL, COM1, …)",
            PathRule::TrailingDotOrSpace => "path component ends in '.' or ' '",
            PathRule::NotNfc => "path is not in Unicode NFC",
            PathRule::ComponentTooLong => "path component is longer than 255 bytes",
            PathRule::PathTooLong => "path is longer than 4096 bytes",
            PathRule::TooDeep => "path is deeper than 64 components",
            PathRule::Unsorted => "manifest entries are not sorted by path bytes",
            PathRule::MissingParent => "parent directory is not listed as a directory entry",
            PathRule::Duplicate => "path appears twice",
            PathRule::CaseCollision => "path collides with another under case or Unicode folding",
            PathRule::ParentIsFile => "a parent of this path is a file",
            PathRule::TooManyEntries => "manifest has more entries than allowed",
            PathRule::TooManyBytes => "files total more bytes than allowed",
            PathRule::DirWithContent => {
                "directory entry has a size, hash or executable bit (must be 0/zero/false)"
            }
        }
    }
}

/// A path that broke the policy: the rule and the offending path (escaped for display).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathError {
    pub rule: PathRule,
    /// The offending path, `{:?}`-escaped so control and bidi characters cannot spoof a terminal.
    pub path: String,
    /// The other path, for collisions.
    pub other: Option<String>,
}

impl PathError {
    fn new(rule: PathRule, path: &str) -> Self {
        PathError {
            rule,
            path: escape(path),
            other: None,
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule.text(), self.path)?;
        if let Some(o) = &self.other {
            write!(f, " (and {o})")?;
        }
        Ok(())
    }
}

impl std::error::Error for PathError {}

/// Escape a path for a log line or terminal: Rust's `{:?}` escaping of a string.
pub fn escape(path: &str) -> String {
    format!("{path:?}")
}

fn is_control(c: char) -> bool {
    let u = c as u32;
    u < 0x20 || (0x7f..=0x9f).contains(&u)
}

/// Invisible, bidi and format characters that let two names look alike or reorder a line.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

const RESERVED: &[&str] = &[
    "con", "prn", "aux", "nul", "conin$", "conout$", "com0", "com1", "com2", "com3", "com4",
    "com5", "com6", "com7", "com8", "com9", "com¹", "com²", "com³", "lpt0", "lpt1", "lpt2", "lpt3",
    "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9", "lpt¹", "lpt²", "lpt³",
];

fn is_reserved(component: &str) -> bool {
    // Windows ignores everything from the first dot and trailing spaces: `aux.txt`, `CON .c`.
    let stem = component
        .split('.')
        .next()
        .unwrap_or(component)
        .trim_end_matches(' ');
    let lower = stem.to_lowercase();
    RESERVED.contains(&lower.as_str())
}

/// Check one manifest path against the per-path rules (not collisions; see [`check_manifest`]).
pub fn check_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::new(PathRule::Empty, path));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::new(PathRule::PathTooLong, path));
    }
    if path.starts_with('/') {
        return Err(PathError::new(PathRule::Absolute, path));
    }
    // Character rules first, so that `C:\x` reports the backslash/drive, not a component rule.
    for c in path.chars() {
        let rule = match c {
            '\\' => PathRule::Backslash,
            ':' => PathRule::DriveOrStream,
            c if is_control(c) => PathRule::ControlCharacter,
            c if is_invisible(c) => PathRule::InvisibleCharacter,
            _ => continue,
        };
        return Err(PathError::new(rule, path));
    }
    if !unicode_normalization::is_nfc(path) {
        return Err(PathError::new(PathRule::NotNfc, path));
    }
    let mut depth = 0usize;
    for component in path.split('/') {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(PathError::new(PathRule::TooDeep, path));
        }
        let rule = match component {
            "" => PathRule::EmptyComponent,
            "." => PathRule::DotComponent,
            ".." => PathRule::DotDotComponent,
            c if c.len() > MAX_COMPONENT_BYTES => PathRule::ComponentTooLong,
            c if c.ends_with('.') || c.ends_with(' ') => PathRule::TrailingDotOrSpace,
            c if is_reserved(c) => PathRule::ReservedName,
            _ => continue,
        };
        return Err(PathError::new(rule, path));
    }
    Ok(())
}

/// The key two paths must not share: NFKC, then upper- and lower-cased (full mappings), then
/// NFC again, repeated until nothing changes. Conservative on purpose: it folds `ß`/`SS`, `K`/`k`
/// (Kelvin sign), `ﬁ`/`fi`, which some filesystem somewhere treats as one name.
///
/// One round is not idempotent: `ẞ` (U+1E9E) upper-cases to itself and lower-cases to `ß`, which
/// only a second round turns into `ss`; so `STRAẞE` and `straße` would not collide. Iterating to
/// a fixed point makes `fold_key(fold_key(x)) == fold_key(x)`; [`MAX_FOLD_ROUNDS`] bounds the work
/// (every known chain settles in two rounds).
pub fn fold_key(path: &str) -> String {
    let mut key = fold_round(path);
    for _ in 1..MAX_FOLD_ROUNDS {
        let next = fold_round(&key);
        if next == key {
            break;
        }
        key = next;
    }
    key
}

/// Rounds of [`fold_key`]'s mapping at most; each round is linear in the path's length.
pub const MAX_FOLD_ROUNDS: usize = 4;

fn fold_round(path: &str) -> String {
    let nfkc: String = path.nfkc().collect();
    nfkc.to_uppercase().to_lowercase().nfc().collect()
}

fn parent(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| &path[..i])
}

/// Check a whole manifest: every path, strict byte order, listed parents, no duplicates or
/// collisions (also a file used as a directory), entry count and total size.
pub fn check_manifest(entries: &[Entry], limits: &Limits) -> Result<(), PathError> {
    let max_entries = limits.max_entries.min(MAX_ENTRIES);
    if entries.len() > max_entries {
        return Err(PathError {
            rule: PathRule::TooManyEntries,
            path: format!("{} entries > {max_entries}", entries.len()),
            other: None,
        });
    }
    let mut total: u64 = 0;
    let mut kinds: HashMap<&str, EntryKind> = HashMap::with_capacity(entries.len());
    let mut folded: HashMap<String, &str> = HashMap::with_capacity(entries.len());
    let mut prev: Option<&str> = None;
    for e in entries {
        check_path(&e.path)?;
        if e.kind == EntryKind::Dir && (e.size != 0 || e.blake3 != [0; 32] || e.executable) {
            return Err(PathError::new(PathRule::DirWithContent, &e.path));
        }
        if let Some(p) = prev {
            match p.as_bytes().cmp(e.path.as_bytes()) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(PathError::new(PathRule::Duplicate, &e.path));
                }
                std::cmp::Ordering::Greater => {
                    let mut err = PathError::new(PathRule::Unsorted, &e.path);
                    err.other = Some(escape(p));
                    return Err(err);
                }
            }
        }
        prev = Some(&e.path);
        if let Some(parent) = parent(&e.path) {
            match kinds.get(parent) {
                Some(EntryKind::Dir) => {}
                Some(EntryKind::File) => {
                    let mut err = PathError::new(PathRule::ParentIsFile, &e.path);
                    err.other = Some(escape(parent));
                    return Err(err);
                }
                None => {
                    // A file `a` and `a/b` sort apart only if something sorts between them
                    // (`a-b`), so look up the parent in what we have seen, case-folded too.
                    if let Some(other) = folded.get(&fold_key(parent)) {
                        if kinds.get(other) == Some(&EntryKind::File) {
                            let mut err = PathError::new(PathRule::ParentIsFile, &e.path);
                            err.other = Some(escape(other));
                            return Err(err);
                        }
                    }
                    return Err(PathError::new(PathRule::MissingParent, &e.path));
                }
            }
        }
        if let Some(other) = folded.insert(fold_key(&e.path), &e.path) {
            let mut err = PathError::new(PathRule::CaseCollision, &e.path);
            err.other = Some(escape(other));
            return Err(err);
        }
        kinds.insert(&e.path, e.kind);
        total = total.saturating_add(e.size);
        if total > limits.max_total_bytes {
            return Err(PathError {
                rule: PathRule::TooManyBytes,
                path: format!("more than {} bytes", limits.max_total_bytes),
                other: None,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fold_key_reaches_a_fixed_point_for_every_scalar_value() {
        // Every Unicode scalar value alone, and every combining diacritic after a letter it
        // composes with: one more round of folding never changes the key (a fixed point within
        // MAX_FOLD_ROUNDS), so two names collide exactly when their keys are equal.
        let singles = (0u32..=0x10FFFF)
            .filter_map(char::from_u32)
            .map(String::from);
        let combined = (0x300u32..0x370)
            .filter_map(char::from_u32)
            .flat_map(|m| ['A', 'i', 'I', 'ß'].map(|l| format!("{l}{m}")));
        let mut worst = 0;
        for s in singles.chain(combined) {
            let mut k = fold_round(&s);
            let mut rounds = 1;
            while fold_round(&k) != k {
                k = fold_round(&k);
                rounds += 1;
                assert!(rounds < MAX_FOLD_ROUNDS, "{s:?} needs {rounds}+ rounds");
            }
            assert_eq!(fold_key(&s), k, "{s:?}");
            worst = worst.max(rounds);
        }
        assert!(worst < MAX_FOLD_ROUNDS, "{worst} rounds needed");
    }

    #[test]
    fn fold_key_is_idempotent_and_folds_capital_sharp_s() {
        assert_eq!(fold_key("STRAẞE"), fold_key("straße"));
        assert_eq!(fold_key("STRAẞE"), "strasse");
        for p in [
            "STRAẞE",
            "straße",
            "ﬁle",
            "\u{212A}elvin",
            "Ǆ",
            "ΐ",
            "İstanbul",
        ] {
            let once = fold_key(p);
            assert_eq!(fold_key(&once), once, "{p:?}");
        }
    }

    use super::*;

    #[test]
    fn rules() {
        let bad: &[(&str, PathRule)] = &[
            ("", PathRule::Empty),
            ("../x", PathRule::DotDotComponent),
            ("a/../../x", PathRule::DotDotComponent),
            ("./x", PathRule::DotComponent),
            ("/etc/x", PathRule::Absolute),
            ("C:\\x", PathRule::DriveOrStream),
            ("C:x", PathRule::DriveOrStream),
            ("a\\..\\x", PathRule::Backslash),
            ("a//b", PathRule::EmptyComponent),
            ("a/", PathRule::EmptyComponent),
            ("a\nb", PathRule::ControlCharacter),
            ("a\0b", PathRule::ControlCharacter),
            ("a\u{7f}", PathRule::ControlCharacter),
            ("a\u{85}", PathRule::ControlCharacter),
            ("\u{202e}txt.exe", PathRule::InvisibleCharacter),
            (".g\u{200c}it", PathRule::InvisibleCharacter),
            ("\u{feff}a", PathRule::InvisibleCharacter),
            ("aux.txt", PathRule::ReservedName),
            ("d/CON", PathRule::ReservedName),
            ("lpt9.log", PathRule::ReservedName),
            ("a.", PathRule::TrailingDotOrSpace),
            ("a ", PathRule::TrailingDotOrSpace),
            ("e\u{301}", PathRule::NotNfc),
        ];
        for (p, rule) in bad {
            assert_eq!(check_path(p).map_err(|e| e.rule), Err(*rule), "{p:?}");
        }
        for ok in [
            "a",
            "a/b.txt",
            "é",
            ".hidden",
            "console",
            "com10",
            "a b/c-d_e.f",
            "日本",
        ] {
            assert_eq!(check_path(ok), Ok(()), "{ok:?}");
        }
        let long = "x".repeat(256);
        assert_eq!(
            check_path(&long).map_err(|e| e.rule),
            Err(PathRule::ComponentTooLong)
        );
        let deep = vec!["d"; 65].join("/");
        assert_eq!(
            check_path(&deep).map_err(|e| e.rule),
            Err(PathRule::TooDeep)
        );
        let wide = vec!["x".repeat(200); 21].join("/");
        assert_eq!(
            check_path(&wide).map_err(|e| e.rule),
            Err(PathRule::PathTooLong)
        );
    }

    fn f(p: &str) -> Entry {
        Entry {
            kind: EntryKind::File,
            path: p.into(),
            size: 1,
            blake3: [1; 32],
            executable: false,
        }
    }
    fn d(p: &str) -> Entry {
        Entry::dir(p)
    }

    #[test]
    fn manifests() {
        let l = Limits::default();
        let rule = |es: &[Entry]| check_manifest(es, &l).map_err(|e| e.rule);
        assert_eq!(rule(&[d("a"), f("a-b"), f("a/b")]), Ok(()));
        assert_eq!(
            rule(&[f("A.txt"), f("a.txt")]),
            Err(PathRule::CaseCollision)
        );
        assert_eq!(rule(&[f("a"), f("a")]), Err(PathRule::Duplicate));
        assert_eq!(rule(&[f("b"), f("a")]), Err(PathRule::Unsorted));
        assert_eq!(rule(&[f("a"), f("a/b")]), Err(PathRule::ParentIsFile));
        assert_eq!(
            rule(&[f("a"), f("a-b"), f("a/b")]),
            Err(PathRule::ParentIsFile)
        );
        assert_eq!(
            rule(&[f("A"), d("a"), f("a/b")]),
            Err(PathRule::CaseCollision)
        );
        assert_eq!(rule(&[f("a/b")]), Err(PathRule::MissingParent));
        assert_eq!(
            rule(&[f("strasse"), f("stra\u{df}e")]),
            Err(PathRule::CaseCollision)
        );
        let small = Limits {
            max_entries: 1,
            max_total_bytes: 10,
        };
        assert_eq!(
            check_manifest(&[f("a"), f("b")], &small).map_err(|e| e.rule),
            Err(PathRule::TooManyEntries)
        );
    }
}
