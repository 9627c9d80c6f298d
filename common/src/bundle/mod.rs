//! The signed bundle format (the spec is docs/bundle.md; this module follows it).
//!
//! A bundle is one self-contained `.sluice` file: a signed header (format version, channel,
//! sequence, creation time, optional expiry and note, signer key id, and a manifest of entries
//! with their blake3 hashes) followed by the file contents in manifest order. The signature
//! covers a domain-separated hash of the header bytes, and the header binds every file's hash, so
//! every byte of the bundle is covered.
//!
//! This module owns the types shared by the builder, the verifier and the receiver's store. The
//! one type that matters most is [`Verified`]: only [`verify`](self) can construct it, and the
//! receiver's quarantine commit takes it, so "verified" is a value, not the absence of an error.
//!
//! CONTRACT (shared with the receiver store; extend, do not break):
//! - [`BundleId`], [`KeyId`], [`EntryKind`], [`Entry`], [`Header`], [`Verified`] and its accessors,
//!   [`FileSink`], [`RejectReason`] and [`RejectReason::code`].

use std::fmt;

pub mod auth;
pub mod build;
pub mod format;
pub mod keys;
pub mod path;
pub mod trust;
pub mod verify;

pub use build::{BuildError, Built, BundleSpec, FileSource, MemSource, Phase, SourceEntry, build};
pub use format::{FORMAT_VERSION, MAX_HEADER_BYTES};
pub use keys::{KeyError, PublicKey, SecretKey, parse_public_key, parse_secret_key};
pub use path::{Limits, PathError, PathRule, check_manifest, check_path};
pub use trust::{ChannelRule, TrustError, TrustStore, TrustedKey, check_sequence, parse_duration};
pub use verify::{DiscardSink, MemSink, VerifyError, VerifyOptions, inspect, verify};

/// Both ids are shown as their lowercase hex: `to_hex` and `Display` the bare hex (store paths,
/// receipts, logs), `Debug` the hex inside the type's name.
macro_rules! hex_id {
    ($id:ident) => {
        impl $id {
            /// Lowercase hex, two characters per byte.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Debug for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($id), "({})"), self.to_hex())
            }
        }

        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

/// A bundle's identity: blake3 of the domain-separated signed header bytes. Because the header
/// binds every file hash, two bundles with the same id have the same content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId(pub [u8; 32]);

impl BundleId {
    /// The 16-byte transport object id a sender uses for this bundle, so that every pass and
    /// every later resend of the same bundle accumulates into the same partial object.
    pub fn object_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.0[..16]);
        id
    }
}

hex_id!(BundleId);

/// A signer's key id: the first 8 bytes of blake3 over the 32-byte ed25519 public key. A label
/// that selects which trusted key to try; it never decides trust by itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

hex_id!(KeyId);

/// What an entry is. Only regular files and directories exist in a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file whose `size` bytes follow in the body, in manifest order.
    File,
    /// A directory (kept so that empty directories travel); `size` is 0 and it has no body bytes.
    Dir,
}

/// One manifest entry. `path` has passed the path policy (relative, `/`-separated UTF-8,
/// checked per component), both when building and again when verifying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub path: String,
    pub size: u64,
    pub blake3: [u8; 32],
    /// The only mode information that travels. Owner, group and other bits never do.
    pub executable: bool,
}

impl Entry {
    /// A directory entry: no body bytes, so size 0 and an all-zero blake3, never executable.
    pub fn dir(path: impl Into<String>) -> Entry {
        Entry {
            kind: EntryKind::Dir,
            path: path.into(),
            size: 0,
            blake3: [0; 32],
            executable: false,
        }
    }
}

/// The signed header, as decoded after its signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub format_version: u16,
    pub channel: String,
    pub sequence: u64,
    /// Unix seconds (from `SOURCE_DATE_EPOCH` when set, for reproducible bundles).
    pub created: u64,
    /// Unix seconds after which the bundle must be refused.
    pub expires: Option<u64>,
    pub note: Option<String>,
    pub signer: KeyId,
    pub entries: Vec<Entry>,
}

impl Header {
    /// Sum of all file sizes.
    pub fn total_file_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// Proof that a bundle's signature verified under a trusted key allowed on its channel, that its
/// header obeyed the path policy and the trust store's limits, and that every file's bytes hashed
/// to the manifest while they streamed through the caller's [`FileSink`].
///
/// Only the verifier in this module can construct one; the receiver's quarantine commit takes it.
#[derive(Clone, Debug)]
pub struct Verified {
    header: Header,
    id: BundleId,
    /// Name of the trusted key that verified (the `.pub` file's stem in the trust store).
    signer_name: String,
    bundle_bytes: u64,
}

impl Verified {
    /// Crate-private: the verifier is the only caller.
    #[allow(dead_code)]
    pub(crate) fn new(
        header: Header,
        id: BundleId,
        signer_name: String,
        bundle_bytes: u64,
    ) -> Self {
        Verified {
            header,
            id,
            signer_name,
            bundle_bytes,
        }
    }
    pub fn header(&self) -> &Header {
        &self.header
    }
    pub fn id(&self) -> BundleId {
        self.id
    }
    pub fn signer_name(&self) -> &str {
        &self.signer_name
    }
    /// Size of the whole `.sluice` file that verified.
    pub fn bundle_bytes(&self) -> u64 {
        self.bundle_bytes
    }
}

/// Where the verifier puts file contents while it checks them. The receiver implements this over
/// a private staging directory (no-follow, create-new); tests implement it in memory.
///
/// Calls come in manifest order: `create_dir` for a directory entry; `begin_file`, zero or more
/// `write`s totalling exactly `entry.size` bytes, then `end_file` for a file entry. If
/// verification fails part-way, the verifier stops calling and returns the error: the caller must
/// discard whatever the sink holds (nothing it received is trustworthy).
pub trait FileSink {
    fn create_dir(&mut self, entry: &Entry) -> std::io::Result<()>;
    fn begin_file(&mut self, entry: &Entry) -> std::io::Result<()>;
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    fn end_file(&mut self, entry: &Entry) -> std::io::Result<()>;
}

/// Why a bundle was refused. Each variant names one rule; [`RejectReason::code`] is the stable
/// machine-readable string recorded in rejected/ records, the audit log, metrics and `--json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not a bundle: bad magic, unsupported format version, lengths that do not fit.
    Malformed,
    /// The file ends before the header, signature or a file's bytes are complete.
    Truncated,
    /// Bytes after the last file's contents.
    TrailingBytes,
    /// Header encoding is not the one canonical encoding of its meaning.
    NonCanonical,
    /// The signature does not verify (with `verify_strict`) under the signer's trusted key.
    BadSignature,
    /// The signer key id matches no key in the trust store.
    UnknownSigner,
    /// The trusted public key is weak (small order) or otherwise unusable.
    WeakKey,
    /// The signer is trusted but not allowed to publish on this channel.
    SignerNotAllowed,
    /// The bundle's expiry time has passed, or the channel requires an expiry and there is none.
    Expired,
    /// A manifest path breaks the path policy (traversal, absolute, bad characters, reserved name,
    /// too long, too deep).
    BadPath,
    /// Two entries collide: the same path, or the same path under case folding or Unicode
    /// normalisation.
    DuplicatePath,
    /// Too many entries, too many bytes, or a bundle larger than policy allows.
    TooLarge,
    /// A file's bytes do not hash to its manifest entry.
    HashMismatch,
    /// The channel requires strictly increasing sequence numbers and this one is not above the
    /// last accepted (replay of an older bundle).
    Rollback,
    /// Decided by transport, not content: the object could not be recovered from the frames.
    InsufficientSymbols,
    /// The store could not stage or commit it (disk full, read-only, I/O error).
    StorageError,
}

impl RejectReason {
    /// Stable snake_case code for records and automation.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::Truncated => "truncated",
            RejectReason::TrailingBytes => "trailing_bytes",
            RejectReason::NonCanonical => "non_canonical",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::UnknownSigner => "unknown_signer",
            RejectReason::WeakKey => "weak_key",
            RejectReason::SignerNotAllowed => "signer_not_allowed",
            RejectReason::Expired => "expired",
            RejectReason::BadPath => "bad_path",
            RejectReason::DuplicatePath => "duplicate_path",
            RejectReason::TooLarge => "too_large",
            RejectReason::HashMismatch => "hash_mismatch",
            RejectReason::Rollback => "rollback",
            RejectReason::InsufficientSymbols => "insufficient_symbols",
            RejectReason::StorageError => "storage_error",
        }
    }

    /// The exit code (see [`crate::exit`]) a command reports for this reason.
    pub fn exit_code(self) -> i32 {
        use crate::exit;
        match self {
            RejectReason::UnknownSigner
            | RejectReason::WeakKey
            | RejectReason::SignerNotAllowed => exit::UNTRUSTED,
            RejectReason::Expired | RejectReason::TooLarge | RejectReason::Rollback => exit::POLICY,
            RejectReason::InsufficientSymbols => exit::INCOMPLETE,
            RejectReason::StorageError => exit::STORAGE,
            _ => exit::INVALID,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
