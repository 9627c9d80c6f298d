//! The HTML status page: rendered on the server from a [`StatusView`], every string
//! HTML-escaped, no script at all (it refreshes with `<meta http-equiv="refresh">`), inline CSS
//! only, no external resource, so it works offline and under a `default-src 'none'` policy.

use std::fmt::Write;

use crate::status_view::{BlockState, StatusView, TransferView};

/// Seconds between page refreshes.
pub const REFRESH_SECS: u32 = 2;
/// Most cells drawn per block map; beyond that each cell stands for a run of blocks and shows
/// the worst state in it (missing over decoding over complete).
pub const MAX_CELLS: usize = 512;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(escape).unwrap_or_else(|| "–".into())
}

/// Binary units for people (the JSON keeps exact bytes).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The block map cells: one per block, or one per run of blocks for large objects.
pub fn cells(blocks: &[BlockState], max: usize) -> Vec<BlockState> {
    if blocks.len() <= max {
        return blocks.to_vec();
    }
    let per = blocks.len().div_ceil(max);
    blocks
        .chunks(per)
        .map(|run| {
            if run.contains(&BlockState::Missing) {
                BlockState::Missing
            } else if run.contains(&BlockState::Decoding) {
                BlockState::Decoding
            } else {
                BlockState::Complete
            }
        })
        .collect()
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1b1b;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f0f0f0}.num{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#176f2c;font-weight:600}.bad{color:#b00020;font-weight:600}.warn{color:#8a5a00;font-weight:600}\
.muted{color:#666}.mono{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}\
.bar{width:22em;height:1em;background:#e4e4e4;border:1px solid #bbb}.bar>div{height:100%;background:#2e7d32}\
.map{display:flex;flex-wrap:wrap;gap:1px;max-width:60em;margin:.3em 0}.map>span{width:8px;height:12px}\
.complete{background:#2e7d32}.decoding{background:#f9a825}.missing{background:#c62828}\
.legend span{display:inline-block;width:10px;height:10px;margin:0 .3em 0 .8em}";

/// Renders the whole page.
pub fn render(v: &StatusView) -> String {
    let mut h = String::with_capacity(16 << 10);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>Sluice receiver status</title><style>{STYLE}</style></head><body>"
    );
    let (state, class) = if v.listener_up {
        ("listening", "ok")
    } else {
        ("listener not running (no fresh state/status.json)", "bad")
    };
    let _ = write!(
        h,
        "<h1>Sluice receiver</h1><p id=\"listener\">State: <span class=\"{class}\">{state}</span> · bind {} · store <span class=\"mono\">{}</span> · page refreshes every {REFRESH_SECS} s (<a href=\"/status.json\">JSON</a>, <a href=\"/metrics\">metrics</a>)</p>",
        opt(&v.bind),
        escape(&v.store.path),
    );
    transfers(&mut h, &v.transfers);
    recent(&mut h, v);
    attention(&mut h, v);
    store_and_audit(&mut h, v);
    counters(&mut h, v);
    if !v.errors.is_empty() {
        h.push_str("<h2>Could not read</h2><ul id=\"errors\">");
        for e in &v.errors {
            let _ = write!(h, "<li>{}</li>", escape(e));
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>\n");
    h
}

fn transfers(h: &mut String, ts: &[TransferView]) {
    let _ = write!(h, "<h2>Transfers in flight ({})</h2>", ts.len());
    if ts.is_empty() {
        h.push_str("<p id=\"transfers\" class=\"muted\">none</p>");
        return;
    }
    h.push_str(
        "<p class=\"legend muted\">Block map: <span class=\"complete\"></span>complete\
         <span class=\"decoding\"></span>decoding<span class=\"missing\"></span>missing \
         (as of the last checkpoint; the counts are live)</p>\
         <table id=\"transfers\"><tr><th>Object</th><th>Channel</th><th>Progress</th>\
         <th class=\"num\">Blocks have / need</th><th class=\"num\">Bytes have / need</th>\
         <th class=\"num\">Loss</th><th class=\"num\">Repair margin</th><th class=\"num\">ETA</th></tr>",
    );
    for t in ts {
        let pct = t.percent();
        let need = t.bytes_need.map(human_bytes).unwrap_or_else(|| "?".into());
        let _ = write!(
            h,
            "<tr class=\"transfer\"><td class=\"mono\">{}</td><td>{}</td>\
             <td><div class=\"bar\" title=\"{pct:.1}%\"><div style=\"width:{pct:.1}%\"></div></div>\
             <span class=\"pct\">{pct:.1}%</span></td>\
             <td class=\"num\">{} / {}</td><td class=\"num\">{} / {need}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&t.object),
            t.channel
                .as_deref()
                .map(escape)
                .unwrap_or_else(|| "<span class=\"muted\">(after verification)</span>".into()),
            t.blocks_total - t.blocks_missing.min(t.blocks_total),
            t.blocks_total,
            human_bytes(t.bytes_have),
            t.loss
                .map(|l| format!("{:.1}%", l * 100.0))
                .unwrap_or_else(|| "–".into()),
            t.repair_margin
                .map(|m| format!("{:.1}%", m * 100.0))
                .unwrap_or_else(|| "–".into()),
            t.eta_secs
                .map(|s| format!("{s} s"))
                .unwrap_or_else(|| "–".into()),
        );
        if !t.blocks.is_empty() {
            let _ = write!(
                h,
                "<tr><td colspan=\"8\"><div class=\"map\" data-object=\"{}\">",
                escape(&t.object)
            );
            for c in cells(&t.blocks, MAX_CELLS) {
                let _ = write!(h, "<span class=\"{}\"></span>", c.word());
            }
            h.push_str("</div></td></tr>");
        }
    }
    h.push_str("</table>");
}

fn recent(h: &mut String, v: &StatusView) {
    h.push_str("<h2>Recent outcomes</h2>");
    if v.recent.is_empty() {
        h.push_str("<p id=\"recent\" class=\"muted\">none yet</p>");
        return;
    }
    h.push_str(
        "<table id=\"recent\"><tr><th>Time</th><th>Outcome</th><th>Channel</th>\
         <th class=\"num\">Sequence</th><th>Reason</th><th>Detail</th></tr>",
    );
    for r in &v.recent {
        let class = match r.outcome.as_str() {
            "accepted" => "ok",
            "duplicate" => "muted",
            "incomplete" => "warn",
            _ => "bad",
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"{class}\">{}</td><td class=\"channel\">{}</td>\
             <td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.time),
            escape(&r.outcome),
            opt(&r.channel),
            r.sequence.map(|s| s.to_string()).unwrap_or_default(),
            opt(&r.reason),
            opt(&r.detail),
        );
    }
    h.push_str("</table>");
}

fn attention(h: &mut String, v: &StatusView) {
    h.push_str("<h2>Overdue channels</h2>");
    if v.overdue_channels.is_empty() {
        h.push_str("<p id=\"overdue\" class=\"muted\">none</p>");
    } else {
        h.push_str("<ul id=\"overdue\">");
        for c in &v.overdue_channels {
            let _ = write!(h, "<li class=\"bad\">{}</li>", escape(c));
        }
        h.push_str("</ul>");
    }
    h.push_str("<h2>Heartbeat ledger</h2>");
    match &v.last_heartbeat {
        Some(hb) => {
            let _ = write!(
                h,
                "<p id=\"heartbeat\"{}>Last heartbeat {} s ago from sender <span class=\"mono\">{}</span> \
                 (sequence {}, {} bundles in its ledger){}.</p>",
                if hb.authenticated {
                    ""
                } else {
                    " class=\"warn\""
                },
                hb.age_secs,
                escape(&hb.sender_id),
                hb.sequence,
                hb.ledger_entries,
                if hb.authenticated {
                    ""
                } else {
                    "; unauthenticated: the public link key lets anyone forge heartbeats, so \
                     this is advisory only — use a secret link key"
                }
            );
        }
        None => h.push_str("<p id=\"heartbeat\" class=\"warn\">No heartbeat received yet.</p>"),
    }
    if v.sent_not_received.is_empty() {
        h.push_str(
            "<p id=\"sent-not-received\" class=\"muted\">Nothing sent but not received.</p>",
        );
    } else {
        h.push_str(
            "<table id=\"sent-not-received\"><tr><th>Sent but never received</th>\
             <th>First sent</th><th class=\"num\">Age</th><th class=\"num\">Size</th><th>Partly staged</th></tr>",
        );
        for s in &v.sent_not_received {
            let _ = write!(
                h,
                "<tr><td class=\"mono bad\">{}</td><td>{}</td><td class=\"num\">{} s</td>\
                 <td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&s.object_id),
                escape(&s.first_sent),
                s.age_secs,
                s.object_bytes.map(human_bytes).unwrap_or_default(),
                if s.in_staging { "yes" } else { "no" }
            );
        }
        h.push_str("</table>");
    }
}

fn store_and_audit(h: &mut String, v: &StatusView) {
    let (chain, class) = if v.audit.chain_ok {
        ("intact", "ok")
    } else {
        ("BROKEN (run sluice-recv audit)", "bad")
    };
    let free = match (v.store.free_bytes, v.store.size_bytes) {
        (Some(f), Some(s)) if s > 0 => format!(
            "{} free of {} ({:.0}%)",
            human_bytes(f),
            human_bytes(s),
            100.0 * f as f64 / s as f64
        ),
        _ => "unknown".into(),
    };
    let _ = write!(
        h,
        "<h2>Store and audit chain</h2><table id=\"store\">\
         <tr><th>Audit chain</th><td class=\"{class}\">{chain}, {} records{}</td></tr>\
         <tr><th>Free space</th><td>{}</td></tr>\
         <tr><th>Quarantine</th><td>{} bundles</td></tr>\
         <tr><th>Rejected</th><td>{} records</td></tr>\
         <tr><th>Staging</th><td>{}</td></tr>\
         <tr><th>Kernel drops</th><td>{}</td></tr></table>",
        v.audit.records,
        v.audit
            .last_record
            .as_deref()
            .map(|t| format!(", last at {}", escape(t)))
            .unwrap_or_default(),
        escape(&free),
        v.store.quarantine_entries,
        v.store.rejected_records,
        human_bytes(v.store.staging_bytes),
        v.kernel_drops
            .map(|d| d.to_string())
            .unwrap_or_else(|| "unknown".into()),
    );
}

fn counters(h: &mut String, v: &StatusView) {
    h.push_str("<h2>Counters</h2>");
    if v.counters.is_empty() {
        h.push_str("<p id=\"counters\" class=\"muted\">none yet</p>");
        return;
    }
    h.push_str("<table id=\"counters\">");
    for (name, value) in &v.counters {
        let _ = write!(
            h,
            "<tr><th>{}</th><td class=\"num\">{value}</td></tr>",
            escape(name)
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_view::RecentOutcome;

    const EVIL: &str = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>&amp;";

    fn sample() -> StatusView {
        StatusView {
            listener_up: true,
            bind: Some("127.0.0.1:7000".into()),
            counters: vec![("accepted".into(), 3), (format!("rejected.{EVIL}"), 1)],
            transfers: vec![TransferView {
                channel: Some(EVIL.into()),
                object: "00112233445566778899aabbccddeeff".into(),
                blocks: vec![
                    BlockState::Complete,
                    BlockState::Complete,
                    BlockState::Decoding,
                    BlockState::Missing,
                ],
                block_map_from_checkpoint: true,
                blocks_total: 4,
                blocks_missing: 2,
                bytes_have: 2 << 20,
                bytes_need: Some(4 << 20),
                loss: Some(0.05),
                repair_margin: Some(0.5),
                eta_secs: Some(7),
                first_seen: None,
            }],
            recent: vec![RecentOutcome {
                time: "2026-01-01T00:00:00.000Z".into(),
                time_unix_ms: Some(1_767_225_600_000),
                outcome: "rejected".into(),
                channel: Some(EVIL.into()),
                sequence: Some(9),
                reason: Some("bad_signature".into()),
                detail: Some(EVIL.into()),
                bundle_id: None,
            }],
            overdue_channels: vec![EVIL.into()],
            errors: vec![EVIL.into()],
            ..StatusView::default()
        }
    }

    #[test]
    fn escapes_every_attacker_influenced_string() {
        let html = render(&sample());
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&gt;&lt;img"));
        // `&amp;` in the input is shown as typed, not as `&`.
        assert!(html.contains("&amp;amp;"));
        // The page itself has no script of its own either.
        assert!(!html.to_ascii_lowercase().contains("<script"));
    }

    #[test]
    fn shows_progress_and_the_block_map() {
        let html = render(&sample());
        assert!(html.contains("50.0%"), "{html}");
        assert!(html.contains("2 / 4"));
        assert!(html.contains("2.0 MiB / 4.0 MiB"));
        assert!(html.contains(
            "<span class=\"complete\"></span><span class=\"complete\"></span>\
             <span class=\"decoding\"></span><span class=\"missing\"></span>"
        ));
        assert!(html.contains("7 s"));
        assert!(html.contains("http-equiv=\"refresh\""));
    }

    #[test]
    fn large_maps_fold_runs_into_their_worst_state() {
        let mut blocks = vec![BlockState::Complete; 1000];
        blocks[3] = BlockState::Decoding;
        blocks[999] = BlockState::Missing;
        let c = cells(&blocks, 100);
        assert_eq!(c.len(), 100);
        assert_eq!(c[0], BlockState::Decoding);
        assert_eq!(c[1], BlockState::Complete);
        assert_eq!(c[99], BlockState::Missing);
        assert_eq!(cells(&blocks[..10], 100).len(), 10);
    }

    #[test]
    fn json_twin_carries_the_same_data_with_a_compact_block_map() {
        let json = sample().to_json();
        assert_eq!(json["transfers"][0]["block_map"], "ccdm");
        assert_eq!(json["transfers"][0]["channel"], EVIL);
        assert_eq!(json["recent"][0]["reason"], "bad_signature");
    }

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn a_heartbeat_under_the_public_key_is_shown_as_unauthenticated() {
        let mut v = sample();
        v.last_heartbeat = Some(crate::status_view::HeartbeatView {
            sender_id: "ab".repeat(16),
            sequence: 7,
            age_secs: 2,
            ledger_entries: 1,
            authenticated: false,
        });
        let html = render(&v);
        assert!(html.contains("unauthenticated"), "{html}");
        assert!(
            html.contains("<p id=\"heartbeat\" class=\"warn\">"),
            "{html}"
        );
        v.last_heartbeat.as_mut().unwrap().authenticated = true;
        let html = render(&v);
        assert!(!html.contains("unauthenticated"), "{html}");
    }
}
