//! The JSON records the store writes: receipts, rejected records, audit records, channel marks.
//! Field names are part of the on-disk format documented in docs/store.md.
//!
//! Public (`sluice_recv::store::records`) and `Deserialize`, so tools and tests read the store
//! through these same types instead of untyped JSON.

use serde::{Deserialize, Serialize};

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
    pub size: u64,
    /// blake3 hex (64 zeros for a directory).
    pub blake3: String,
    pub executable: bool,
}

/// `quarantine/<bundle-id>/receipt.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub receipt_version: u32,
    pub bundle_id: String,
    pub format_version: u16,
    pub channel: String,
    pub sequence: u64,
    pub signer: SignerInfo,
    pub created_unix: u64,
    pub created_rfc3339: String,
    pub expires_unix: Option<u64>,
    pub expires_rfc3339: Option<String>,
    pub note: Option<String>,
    pub received_unix: u64,
    pub received_rfc3339: String,
    pub bundle_bytes: u64,
    pub entries: Vec<ReceiptEntry>,
    pub transport: TransportFigures,
}

/// `rejected/<timestamp>-<id>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRecord {
    pub time_unix: u64,
    pub time_rfc3339: String,
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
    pub seq: u64,
    pub prev: String,
    pub time_unix: u64,
    pub time_rfc3339: String,
    /// `accepted`, `duplicate`, `rejected` or `incomplete`.
    pub decision: String,
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
    /// True when this record was appended by restart reconciliation (T71), not live.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconciled: bool,
}

/// `state/channels/<name>.json`: the durable per-channel high-water mark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelMark {
    pub channel: String,
    /// Highest sequence ever accepted on this channel.
    pub sequence: u64,
    pub bundle_id: String,
    pub updated_unix: u64,
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
