//! The results table `sluice-bench` prints: its columns (key, heading, width), number rounding
//! and one row per case from the case's JSON record.

use serde_json::Value;

pub fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub const COLUMNS: &[(&str, &str, usize)] = &[
    ("case", "case", 14),
    ("size", "size", 5),
    ("goodput_mb_s", "MB/s", 7),
    ("ceiling_sendmmsg_mb_s", "mmsg", 7),
    ("ceiling_gso_mb_s", "gso", 7),
    ("ratio_sendmmsg", "x_mmsg", 6),
    ("ratio_gso", "x_gso", 6),
    ("ceiling_page_cache_write_mb_s", "pcwrite", 7),
    ("send_cpu_s", "cpuS", 6),
    ("recv_cpu_s", "cpuR", 6),
    ("cpu_s_per_gib", "cpu/GiB", 7),
    ("send_peak_rss_mib", "rssS", 6),
    ("recv_peak_rss_mib", "rssR", 6),
    ("rate_ratio", "wire/set", 8),
    ("sent_frames", "sent", 8),
    ("nft_loss_drops", "nftdrop", 7),
    ("socket_drops", "sockdrp", 7),
    ("rcvbuf_errors", "rcvbufE", 7),
    ("repaired_blocks", "repair", 6),
    ("intact", "intact", 6),
];

pub fn cell(v: &Value, key: &str) -> String {
    match (key, &v[key]) {
        ("size", _) => human(v["bundle_bytes"].as_u64().unwrap_or(0)),
        ("intact", Value::Bool(b)) => if *b { "yes" } else { "NO" }.into(),
        (_, Value::Null) => "-".into(),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Number(n)) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        (_, other) => other.to_string(),
    }
}

pub fn print_header() {
    let line: Vec<String> = COLUMNS
        .iter()
        .map(|(_, h, w)| format!("{h:>w$}", w = *w))
        .collect();
    println!("{}", line.join(" "));
}

pub fn print_row(v: &Value) {
    let line: Vec<String> = COLUMNS
        .iter()
        .map(|(k, _, w)| format!("{:>w$}", cell(v, k), w = *w))
        .collect();
    println!("{}", line.join(" "));
}

pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{}G", bytes >> 30)
    } else if bytes >= 1 << 20 {
        format!("{:.0}M", bytes as f64 / f64::from(1u32 << 20))
    } else {
        format!("{bytes}")
    }
}
