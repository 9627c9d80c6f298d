//! The JSON records the store writes: receipts, rejected records, audit records, channel marks.
//! Field names are part of the on-disk format documented in docs/store.md, and follow the one
//! JSON convention of docs/json.md: a `schema` key (`sluice.<kind>/1`), every time as `<name>`
//! (RFC 3339 with milliseconds) beside `<name>_unix_ms`, sizes as `*_bytes`, the audit record's
//! verdict under `outcome`. docs/schema/{receipt,rejected,audit,channel-mark}.schema.json
//! describe them; tests/tests/json_schemas.rs validates records a real listener wrote.
//!
//! Public (`sluice_recv::store::records`) and `Deserialize`, so tools and tests read the store
//! through these same types instead of untyped JSON.

use serde::{Deserialize, Serialize};

/// `schema` of `receipt.json`.
pub const RECEIPT_SCHEMA: &str = "sluice.receipt/1";
/// `schema` of a `rejected/*.json` record.
pub const REJECTED_SCHEMA: &str = "sluice.rejected/1";
/// `schema` of an `audit.jsonl` line.
pub const AUDIT_SCHEMA: &str = "sluice.audit/1";
/// `schema` of a `state/channels/*.json` mark.
pub const CHANNEL_MARK_SCHEMA: &str = "sluice.channel-mark/1";

/// How the bundle crossed, as counted by the transport layer (passed in by the caller).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportFigures {
    /// Frames accepted into the decoder for this object.
    pub frames: u64,
    /// Frames inferred lost (gaps in symbol ids).
    pub lost_frames: u64,
    /// Frames dropped for a bad integrity tag or out-of-limit header.
    pub bad_frames: u64,
    /// Blocks that needed repair symbols to decode.
    pub repaired_blocks: u64,
    /// Sender passes seen (1 for a clean single pass).
    pub passes: u64,
    /// `udp` or `media`.
    pub source: Source,
    /// Size of the transferred object (the signed bundle), as its frames declared it; 0 when
    /// unknown (a duplicate found before any frame, records written before this field).
    #[serde(default)]
    pub object_bytes: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    #[default]
    Udp,
    Media,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerInfo {
    /// Trust-store name of the key that verified.
    pub name: String,
    /// Key id (16 hex).
    pub key_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEntry {
    pub path: String,
    /// `file` or `dir`.
    pub kind: String,
    pub size_bytes: u64,
    /// blake3 hex of a file's bytes; `null` for a directory (which has no bytes to hash).
    pub blake3: Option<String>,
    pub executable: bool,
}

/// `quarantine/<bundle-id>/receipt.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// [`RECEIPT_SCHEMA`].
    pub schema: String,
    pub bundle_id: String,
    pub format_version: u16,
    pub channel: String,
    pub sequence: u64,
    pub signer: SignerInfo,
    /// When the bundle was signed (its header's time, whole seconds).
    pub created: String,
    pub created_unix_ms: u64,
    pub expires: Option<String>,
    pub expires_unix_ms: Option<u64>,
    pub note: Option<String>,
    /// When the receiver committed it.
    pub received: String,
    pub received_unix_ms: u64,
    pub bundle_bytes: u64,
    pub entries: Vec<ReceiptEntry>,
    pub transport: TransportFigures,
}

/// `rejected/<timestamp>-<id>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRecord {
    /// [`REJECTED_SCHEMA`].
    pub schema: String,
    pub time: String,
    pub time_unix_ms: u64,
    /// `RejectReason::code()`.
    pub reason: String,
    pub detail: String,
    pub bundle_id: Option<String>,
    pub object_id: Option<String>,
    pub channel: Option<String>,
    pub sequence: Option<u64>,
    pub transport: Option<TransportFigures>,
}

/// One line of `audit.jsonl`. `prev` is the blake3 hex of the previous line's bytes (without its
/// newline); the first record's `prev` is 64 zeros. `seq` starts at 1 and has no gaps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// [`AUDIT_SCHEMA`] (set by the appender).
    pub schema: String,
    pub seq: u64,
    pub prev: String,
    /// Set by the appender from `time_unix_ms` (now when that is 0).
    pub time: String,
    pub time_unix_ms: u64,
    /// `accepted`, `duplicate`, `rejected` or `incomplete`; `promote_*` for sluice-promote's
    /// transitions (docs/promotion.md).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Reject reason code (rejected) or `insufficient_symbols` (incomplete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Store-relative path of the quarantine entry (accepted, duplicate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// blake3 hex of receipt.json's exact bytes (accepted), binding the receipt into the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_blake3: Option<String>,
    /// Store-relative path of the rejected record (rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<TransportFigures>,
    /// True when this record was appended by restart reconciliation, not live.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconciled: bool,
}

/// `state/channels/<name>.json`: the durable per-channel high-water mark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelMark {
    /// [`CHANNEL_MARK_SCHEMA`].
    pub schema: String,
    pub channel: String,
    /// Highest sequence ever accepted on this channel.
    pub sequence: u64,
    pub bundle_id: String,
    pub updated: String,
    pub updated_unix_ms: u64,
}

/// File name of a channel's mark: `c-<hex(channel)>.json`, or `h-<blake3(channel)>.json` when
/// the hex form would be too long for a file name. Channel names never become paths directly.
pub fn channel_file_name(channel: &str) -> String {
    let h = hex::encode(channel.as_bytes());
    if h.len() <= 200 {
        format!("c-{h}.json")
    } else {
        format!("h-{}.json", blake3::hash(channel.as_bytes()).to_hex())
    }
}

/// 64 zeros: the `prev` of the first audit record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
