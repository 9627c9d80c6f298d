//! Durable per-channel high-water marks under `state/channels/`: the highest sequence ever
//! accepted on each channel, so a rollback survives restarts. A mark is derived state (rebuilt
//! upward from the audit log), and a corrupt one fails closed: nothing is accepted on its
//! channel until an operator repairs it.

use std::io;

use sluice_host::time;

use super::error::{StoreError, ioe};
use super::fsutil;
use super::handle::Store;
use super::records::{self, ChannelMark};

impl Store {
    pub(super) fn mark_file(channel: &str) -> String {
        records::channel_file_name(channel)
    }

    /// Reads a channel's mark. Missing → `None`; unreadable or garbled → `StateCorrupt`.
    pub(super) fn read_mark(&self, channel: &str) -> Result<Option<ChannelMark>, StoreError> {
        let file = Self::mark_file(channel);
        let shown = format!("state/channels/{file}");
        let corrupt = |detail: String| StoreError::StateCorrupt {
            channel: channel.to_owned(),
            file: shown.clone(),
            detail,
        };
        let bytes = match fsutil::read_file_at(&self.channels, &file, 1 << 16) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(corrupt(format!("is a symlink ({e})")));
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(corrupt(e.to_string())),
            Err(e) => return Err(ioe(format!("read {shown}"))(e)),
        };
        let mark: ChannelMark =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not valid JSON: {e}")))?;
        if mark.channel != channel {
            return Err(corrupt(format!(
                "names channel {:?}, expected {channel:?}",
                mark.channel
            )));
        }
        Ok(Some(mark))
    }

    pub(super) fn write_mark(
        &self,
        channel: &str,
        sequence: u64,
        bundle_id: &str,
    ) -> Result<(), StoreError> {
        let file = Self::mark_file(channel);
        let now = time::now_unix_ms();
        let mark = ChannelMark {
            schema: records::CHANNEL_MARK_SCHEMA.into(),
            channel: channel.to_owned(),
            sequence,
            bundle_id: bundle_id.to_owned(),
            updated: time::rfc3339_ms(now),
            updated_unix_ms: now,
        };
        let mut bytes = serde_json::to_vec_pretty(&mark)
            .map_err(|e| ioe("encode mark")(io::Error::other(e)))?;
        bytes.push(b'\n');
        fsutil::atomic_write_at(&self.channels, &file, &bytes, 0o644)
            .map_err(ioe(format!("write state/channels/{file}")))
    }

    /// The effective high-water mark of a channel: the larger of its mark file and the audit
    /// log's history. A missing file with audit history is rebuilt (upward only); a corrupt file
    /// fails closed.
    pub fn high_water_mark(&self, channel: &str) -> Result<Option<u64>, StoreError> {
        let file = self.read_mark(channel)?.map(|m| m.sequence);
        let audit = self.channel_max.get(channel).copied();
        if file.is_none() {
            if let Some(a) = audit {
                tracing::warn!(%channel, mark = a, "high-water mark file missing; rebuilding it from audit.jsonl");
                self.write_mark(channel, a, "(rebuilt from audit.jsonl)")?;
            }
        }
        Ok(match (file, audit) {
            (Some(f), Some(a)) => Some(f.max(a)),
            (f, a) => f.or(a),
        })
    }
}
