//! The results table `sluice-bench` prints: its columns (key, heading, width), number rounding
//! and one row per case from the case's JSON record, then each case's CPU per thread.

use serde_json::{Value, json};

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
    ("send_top_thread_pct", "topS%", 5),
    ("recv_top_thread_pct", "topR%", 5),
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

/// `[{"thread": name, "cpu_s": secs}, …]` from `(name, secs)` pairs.
pub fn threads_json(threads: &[(String, f64)]) -> Value {
    threads
        .iter()
        .map(|(name, secs)| json!({"thread": name, "cpu_s": r2(*secs)}))
        .collect()
}

/// The busiest thread's share of all its threads' CPU, in percent (null without samples).
pub fn top_share_pct(threads: &[(String, f64)]) -> Value {
    let total: f64 = threads.iter().map(|(_, s)| s).sum();
    match threads.first() {
        Some((_, top)) if total > 0.0 => json!((100.0 * top / total).round() as u64),
        _ => Value::Null,
    }
}

/// One line per case and side: `# cpu per thread <case> recv: sluice-recv 0.31, decode-0 0.12`.
pub fn print_threads(v: &Value) {
    for side in ["send", "recv"] {
        let Some(threads) = v[format!("{side}_threads")].as_array() else {
            continue;
        };
        let list: Vec<String> = threads
            .iter()
            .map(|t| format!("{} {}", t["thread"].as_str().unwrap_or("?"), t["cpu_s"]))
            .collect();
        println!(
            "# cpu s per thread {} run {} {side}: {}",
            v["case"].as_str().unwrap_or("?"),
            v["run"],
            list.join(", ")
        );
    }
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
