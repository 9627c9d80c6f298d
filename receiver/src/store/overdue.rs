//! Delivery expectations (`expect_every` in policy.toml): which channels are overdue, which
//! objects the sender's heartbeat ledger lists as sent but never arrived, and the listener's
//! [`OverdueWatch`] that warns once per overdue period. Pure computations over what `inspect`
//! and the listener read; this module reads no file itself.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sluice_common::bundle::TrustStore;
use sluice_host::time;

/// One channel's delivery expectation (`expect_every` in policy.toml).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expectation {
    pub channel: String,
    pub expected_every_secs: u64,
    /// `None`: nothing was ever accepted on this channel (counted as overdue).
    pub last_accepted: Option<String>,
    pub last_accepted_unix_ms: Option<u64>,
    /// Nothing accepted within `expected_every_secs` of now.
    pub overdue: bool,
    /// How long past the expected time, when overdue after a first delivery.
    pub overdue_by_secs: Option<u64>,
}

/// `(channel, expect_every)` for every channel in policy.toml that has one.
pub fn rules(trust: &TrustStore) -> Vec<(String, u64)> {
    trust
        .channels()
        .filter_map(|(c, r)| r.expect_every.map(|e| (c.to_owned(), e)))
        .collect()
}

/// Compares each expectation with the last accepted time: overdue when more than
/// `expect_every` has passed since, or when the channel never delivered.
pub fn expectations(
    rules: &[(String, u64)],
    last_accepted: &HashMap<String, u64>,
    now_unix: u64,
) -> Vec<Expectation> {
    rules
        .iter()
        .map(|(channel, every)| {
            let last = last_accepted.get(channel).copied();
            let late = last.map(|l| now_unix.saturating_sub(l).saturating_sub(*every));
            Expectation {
                channel: channel.clone(),
                expected_every_secs: *every,
                last_accepted: last.map(|l| time::rfc3339_ms(l.saturating_mul(1000))),
                last_accepted_unix_ms: last.map(|l| l.saturating_mul(1000)),
                overdue: late.is_none_or(|l| l > 0),
                overdue_by_secs: late.filter(|&l| l > 0),
            }
        })
        .collect()
}

/// A bundle the sender says it sent that has not arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SentNotReceived {
    pub object_id: String,
    pub object_bytes: Option<u64>,
    pub first_sent: String,
    pub first_sent_unix_ms: u64,
    pub age_secs: u64,
    pub pass: Option<u64>,
    pub passes: Option<u64>,
    pub sender_id: Option<String>,
    /// Some of it arrived: a partial object waits in staging for a resend.
    pub in_staging: bool,
}

/// Ledger entries of the listener's last heartbeat (`state/status.json`) first sent more than
/// `grace_secs` before `now_unix_ms` with no accepted/duplicate/rejected audit record.
pub fn sent_not_received(
    listener: &serde_json::Value,
    decided: &HashSet<String>,
    staged: &HashSet<&str>,
    now_unix_ms: u64,
    grace_secs: u64,
) -> Vec<SentNotReceived> {
    let hb = &listener["last_heartbeat"];
    let Some(ledger) = hb["ledger"].as_array() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in ledger {
        let (Some(id), Some(first)) = (
            entry["object_id"].as_str(),
            entry["first_sent_unix_ms"].as_u64(),
        ) else {
            continue;
        };
        let id = id.to_ascii_lowercase();
        let age_ms = now_unix_ms.saturating_sub(first);
        if decided.contains(&id) || age_ms < grace_secs.saturating_mul(1000) {
            continue;
        }
        out.push(SentNotReceived {
            in_staging: staged.contains(id.as_str()),
            object_id: id,
            object_bytes: entry["object_bytes"].as_u64(),
            first_sent: time::rfc3339_ms(first),
            first_sent_unix_ms: first,
            age_secs: age_ms / 1000,
            pass: entry["pass"].as_u64(),
            passes: entry["passes"].as_u64(),
            sender_id: hb["sender_id"].as_str().map(str::to_owned),
        });
    }
    out
}

/// The listener's view of `expect_every`: last accepted times kept up to date as bundles are
/// accepted, a warning logged once per overdue period, and the `sluice_channel_overdue` gauge.
pub struct OverdueWatch {
    rules: Vec<(String, u64)>,
    last: HashMap<String, u64>,
    /// Overdue period last warned about, per channel (1 = the first period past due).
    warned: HashMap<String, u64>,
    current: Vec<Expectation>,
}

impl OverdueWatch {
    pub fn new(trust: &TrustStore, last_accepted: HashMap<String, u64>) -> Self {
        OverdueWatch {
            rules: rules(trust),
            last: last_accepted,
            warned: HashMap::new(),
            current: Vec::new(),
        }
    }

    /// A bundle was accepted on `channel`.
    pub fn accepted(&mut self, channel: &str, now_unix: u64) {
        self.last.insert(channel.to_owned(), now_unix);
        self.warned.remove(channel);
    }

    /// Re-evaluates every expectation; logs a warning for each channel entering a new overdue
    /// period (at most once per `expect_every` while nothing arrives).
    pub fn check(&mut self, now_unix: u64) -> &[Expectation] {
        self.current = expectations(&self.rules, &self.last, now_unix);
        for e in &self.current {
            if !e.overdue {
                continue;
            }
            let period = e
                .overdue_by_secs
                .map(|late| late / e.expected_every_secs.max(1) + 1)
                .unwrap_or(1);
            if self.warned.get(&e.channel).is_some_and(|&w| w >= period) {
                continue;
            }
            self.warned.insert(e.channel.clone(), period);
            match &e.last_accepted {
                Some(last) => {
                    tracing::warn!(channel = %e.channel, expected_every_secs = e.expected_every_secs,
                    last_accepted = %last, overdue_by_secs = e.overdue_by_secs.unwrap_or(0),
                    "channel overdue: nothing accepted on it within its expected interval (policy.toml expect_every); check the low-side job and the link")
                }
                None => {
                    tracing::warn!(channel = %e.channel, expected_every_secs = e.expected_every_secs,
                    "channel overdue: nothing was ever accepted on it (policy.toml expect_every)")
                }
            }
        }
        &self.current
    }

    /// The overdue channels of the last [`check`](Self::check).
    pub fn overdue_channels(&self) -> Vec<String> {
        self.current
            .iter()
            .filter(|e| e.overdue)
            .map(|e| e.channel.clone())
            .collect()
    }

    /// `sluice_channel_overdue{channel="…"} 0|1`, Prometheus text (empty without expectations).
    pub fn metrics_text(&self) -> String {
        if self.current.is_empty() {
            return String::new();
        }
        let mut t = String::from(
            "# HELP sluice_channel_overdue 1 when nothing was accepted on the channel within its policy.toml expect_every.\n# TYPE sluice_channel_overdue gauge\n",
        );
        for e in &self.current {
            let label = e.channel.replace('\\', "\\\\").replace('"', "\\\"");
            t.push_str(&format!(
                "sluice_channel_overdue{{channel=\"{label}\"}} {}\n",
                u8::from(e.overdue)
            ));
        }
        t
    }
}
