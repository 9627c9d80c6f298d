//! `sluice-recv status` and `listen` against policy.toml `expect_every` (overdue channels) and
//! the sender's heartbeat ledger (bundles sent but never received), over crafted stores.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_common::bundle::keys::SecretKey;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn recv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-recv"))
        .args(args)
        .output()
        .expect("run sluice-recv")
}

fn trust_dir(dir: &Path, policy: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let public = SecretKey::from_seed(&[7; 32]).public();
    std::fs::write(dir.join("alice.pub"), public.to_sluice_text("alice")).unwrap();
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
}

/// A valid hash chain of audit records (each a JSON object without seq/prev).
fn write_audit(store: &Path, records: &[serde_json::Value]) {
    let mut prev = GENESIS.to_string();
    let mut text = String::new();
    for (i, r) in records.iter().enumerate() {
        let mut r = r.clone();
        r["seq"] = (i as u64 + 1).into();
        r["prev"] = prev.clone().into();
        r["schema"] = "sluice.audit/1".into();
        r["time"] = "2026-01-01T00:00:00.000Z".into();
        let line = r.to_string();
        prev = blake3::hash(line.as_bytes()).to_hex().to_string();
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(store.join("audit.jsonl"), text).unwrap();
}

fn hex(byte: &str, n: usize) -> String {
    byte.repeat(n)
}

/// A store where `nightly` last delivered 100 s ago (expected every 60 s), `fresh` 10 s ago
/// (every hour), `never` never (every hour); the last heartbeat's ledger names an accepted
/// object, a rejected one, one sent an hour ago that never arrived (part of it in staging), and
/// one sent a minute ago.
fn crafted(root: &Path) -> (String, String) {
    let store = root.join("store");
    std::fs::create_dir_all(store.join("state")).unwrap();
    std::fs::create_dir_all(store.join("staging/objects")).unwrap();
    let t = now();
    write_audit(
        &store,
        &[
            serde_json::json!({"time_unix_ms": (t - 100) * 1000, "outcome": "accepted", "bundle_id": hex("a", 64),
                "channel": "nightly", "sequence": 1}),
            serde_json::json!({"time_unix_ms": (t - 10) * 1000, "outcome": "accepted", "bundle_id": hex("b", 64),
                "channel": "fresh", "sequence": 1}),
            serde_json::json!({"time_unix_ms": (t - 5) * 1000, "outcome": "rejected", "object_id": hex("c", 32),
                "reason": "bad_signature", "detail": "x"}),
        ],
    );
    let missing = hex("d", 32);
    let recent = hex("e", 32);
    std::fs::write(
        store.join(format!("staging/objects/{missing}.part")),
        b"partial",
    )
    .unwrap();
    let ms = t * 1000;
    let entry = |id: &str, age_secs: u64| {
        serde_json::json!({"object_id": id, "object_bytes": 1000, "first_sent_unix_ms": ms - age_secs * 1000,
            "pass": 1, "passes": 1})
    };
    let status = serde_json::json!({
        "running": false,
        "last_heartbeat": {
            "sender_id": hex("0", 32), "sequence": 42, "sent_at_unix_ms": ms, "received_at_unix_ms": ms,
            "ledger": [entry(&hex("a", 32), 3600), entry(&hex("c", 32), 3600),
                       entry(&missing, 3600), entry(&recent, 60)],
        },
    });
    std::fs::write(store.join("state/status.json"), status.to_string()).unwrap();
    trust_dir(
        &root.join("trust"),
        "[channels.nightly]\nexpect_every = \"60s\"\n[channels.fresh]\nexpect_every = \"1h\"\n\
         [channels.never]\nexpect_every = \"1h\"\n[channels.unwatched]\n",
    );
    (missing, recent)
}

/// `status --json`, checking the exit contract: 7 (INCOMPLETE) exactly when a channel is overdue
/// or a bundle the sender reported is missing, else 0.
fn status_json(args: &[&str]) -> serde_json::Value {
    let o = recv(args);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json ({e}): {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let attention = !r["overdue_channels"].as_array().unwrap().is_empty()
        || !r["sent_not_received"].as_array().unwrap().is_empty();
    assert_eq!(
        o.status.code(),
        Some(if attention { 7 } else { 0 }),
        "{r:#}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    r
}

fn ids(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["object_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn status_flags_overdue_channels_and_bundles_sent_but_not_received() {
    let t = tempfile::tempdir().unwrap();
    let (missing, recent) = crafted(t.path());
    let store = t.path().join("store");
    let trust = t.path().join("trust");
    let s = store.to_str().unwrap();
    let r = status_json(&[
        "status",
        "--store",
        s,
        "--trust",
        trust.to_str().unwrap(),
        "--json",
    ]);

    let exp = r["expectations"].as_array().unwrap();
    assert_eq!(exp.len(), 3, "only channels with expect_every: {r:#}");
    let get = |c: &str| exp.iter().find(|e| e["channel"] == c).unwrap().clone();
    let nightly = get("nightly");
    assert_eq!(nightly["overdue"], true, "{nightly}");
    assert_eq!(nightly["expected_every_secs"], 60);
    let last = nightly["last_accepted_unix_ms"].as_u64().unwrap() / 1000;
    assert!(now() - last >= 100, "{nightly}");
    assert!(
        nightly["overdue_by_secs"].as_u64().unwrap() >= 40,
        "{nightly}"
    );
    let fresh = get("fresh");
    assert_eq!(fresh["overdue"], false, "{fresh}");
    assert_eq!(fresh["expected_every_secs"], 3600);
    let never = get("never");
    assert_eq!(
        never["overdue"], true,
        "never delivered counts as overdue: {never}"
    );
    assert!(never["last_accepted_unix_ms"].is_null());
    assert!(never["last_accepted"].is_null());
    assert_eq!(
        r["overdue_channels"],
        serde_json::json!(["never", "nightly"])
    );

    // Sent an hour ago, no audit record: listed (and part of it waits in staging). The accepted
    // and the rejected ones arrived; the recent one is within the 600 s grace.
    let snr = &r["sent_not_received"];
    assert_eq!(ids(snr), vec![missing.clone()], "{r:#}");
    assert_eq!(snr[0]["in_staging"], true);
    assert_eq!(snr[0]["object_bytes"], 1000);
    assert!(snr[0]["age_secs"].as_u64().unwrap() >= 3600);

    // A shorter grace lists the recent one too; without --trust there is no overdue check.
    let r = status_json(&["status", "--store", s, "--sent-grace", "30", "--json"]);
    assert_eq!(
        ids(&r["sent_not_received"]),
        vec![missing.clone(), recent.clone()]
    );
    assert_eq!(r["expectations"], serde_json::json!([]));

    // The text form says the same.
    let o = recv(&["status", "--store", s, "--trust", trust.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("OVERDUE by"), "{text}");
    assert!(text.contains("OVERDUE (never delivered)"), "{text}");
    assert!(text.contains("SENT BUT NOT RECEIVED"), "{text}");
    assert!(text.contains(&missing), "{text}");

    // From a config file: store/trust from [listen], grace from [status]; a flag overrides it.
    let cfg = t.path().join("recv.toml");
    std::fs::write(
        &cfg,
        "[listen]\nstore = \"store\"\ntrust = \"trust\"\n[status]\nsent_grace_secs = 30\n",
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let r = status_json(&["--config", c, "status", "--json"]);
    assert_eq!(ids(&r["sent_not_received"]), vec![missing.clone(), recent]);
    assert_eq!(
        r["overdue_channels"],
        serde_json::json!(["never", "nightly"])
    );
    let r = status_json(&["--config", c, "status", "--sent-grace", "600", "--json"]);
    assert_eq!(ids(&r["sent_not_received"]), vec![missing]);
}

#[test]
fn unknown_config_keys_are_usage_errors_naming_the_key() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("recv.toml");
    std::fs::write(&cfg, "[listen]\nstore = \"s\"\nrcvbuff = 1\n").unwrap();
    let o = recv(&["--config", cfg.to_str().unwrap(), "status"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rcvbuff") && err.contains("recv.toml"),
        "{err}"
    );
    std::fs::write(&cfg, "[lisen]\n").unwrap();
    let o = recv(&["--config", cfg.to_str().unwrap(), "listen"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lisen"));
    // Without --bind anywhere, listen says where to put it.
    std::fs::write(&cfg, "[listen]\nstore = \"s\"\ntrust = \"t\"\n").unwrap();
    let o = recv(&["--config", cfg.to_str().unwrap(), "listen"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--bind"));
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn listener_exports_overdue_gauge_and_warns_once_per_period() {
    let t = tempfile::tempdir().unwrap();
    let trust = t.path().join("trust");
    // `never` is overdue from the start (never delivered); `other` has no expectation.
    trust_dir(
        &trust,
        "[channels.never]\nexpect_every = \"1h\"\n[channels.other]\n",
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let bind = udp.local_addr().unwrap().to_string();
    drop(udp);
    let port = free_tcp_port();
    let log = t.path().join("listen.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-recv"))
        .args([
            "listen",
            "--bind",
            &bind,
            "--metrics",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--store")
        .arg(t.path().join("store"))
        .arg("--trust")
        .arg(&trust)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let mut page = String::new();
    while Instant::now() < end {
        page = scrape(port);
        if page.contains("sluice_channel_overdue{") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few more evaluation rounds (one a second) must not repeat the warning.
    std::thread::sleep(Duration::from_millis(2500));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        page.contains("sluice_channel_overdue{channel=\"never\"} 1"),
        "{page}"
    );
    assert!(!page.contains("channel=\"other\""), "{page}");
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text
        .lines()
        .filter(|l| l.contains("channel overdue") && l.contains("never"))
        .count();
    assert_eq!(warnings, 1, "{text}");
}
