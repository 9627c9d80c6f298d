//! `sluice-recv status` and `sluice-recv audit verify` through the real binary, on a store laid
//! out by hand exactly as docs/store.md specifies (the library-level commit tests live in
//! receiver/src/store/tests.rs).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn recv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-recv"))
        .args(args)
        .output()
        .expect("run sluice-recv")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Lays out a store with one accepted bundle and a chained audit log of two records.
fn build_store(dir: &Path) -> String {
    let id = "ab".repeat(32);
    let entry = dir.join("quarantine").join(&id);
    fs::create_dir_all(entry.join("files/sub")).expect("mkdir");
    for d in [entry.join("files"), entry.join("files/sub"), entry.clone()] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let a = b"alpha\n";
    let b = b"#!/bin/sh\ntrue\n";
    fs::write(entry.join("files/a.txt"), a).expect("w");
    fs::set_permissions(entry.join("files/a.txt"), fs::Permissions::from_mode(0o644))
        .expect("chmod");
    fs::write(entry.join("files/sub/run.sh"), b).expect("w");
    fs::set_permissions(
        entry.join("files/sub/run.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let receipt = serde_json::json!({
        "schema": "sluice.receipt/1", "bundle_id": id, "format_version": 1, "channel": "nightly",
        "sequence": 3, "signer": {"name": "officer", "key_id": "0011223344556677"},
        "created": "1970-01-01T00:00:00.000Z", "created_unix_ms": 0,
        "expires": null, "expires_unix_ms": null, "note": null,
        "received": "1970-01-01T00:00:00.000Z", "received_unix_ms": 0, "bundle_bytes": 999,
        "entries": [
            {"path": "a.txt", "kind": "file", "size_bytes": a.len(), "blake3": blake3::hash(a).to_hex().to_string(), "executable": false},
            {"path": "sub/run.sh", "kind": "file", "size_bytes": b.len(), "blake3": blake3::hash(b).to_hex().to_string(), "executable": true}
        ],
        "transport": {"frames": 10, "lost_frames": 0, "bad_frames": 0, "repaired_blocks": 0, "passes": 1, "source": "media"}
    });
    let receipt_bytes = serde_json::to_vec_pretty(&receipt).expect("json");
    fs::write(entry.join("receipt.json"), &receipt_bytes).expect("w");
    let l1 = serde_json::json!({
        "schema": "sluice.audit/1", "seq": 1, "prev": GENESIS,
        "time": "1970-01-01T00:00:00.000Z", "time_unix_ms": 0,
        "outcome": "rejected", "reason": "bad_signature", "detail": "x"
    })
    .to_string();
    let l2 = serde_json::json!({
        "schema": "sluice.audit/1", "seq": 2, "prev": blake3::hash(l1.as_bytes()).to_hex().to_string(),
        "time": "1970-01-01T00:00:01.000Z", "time_unix_ms": 1000, "outcome": "accepted", "bundle_id": id,
        "channel": "nightly", "sequence": 3,
        "receipt_blake3": blake3::hash(&receipt_bytes).to_hex().to_string()
    })
    .to_string();
    fs::write(dir.join("audit.jsonl"), format!("{l1}\n{l2}\n")).expect("w");
    fs::create_dir_all(dir.join("state/channels")).expect("mkdir");
    fs::write(
        dir.join("state/channels/c-6e696768746c79.json"),
        br#"{"schema":"sluice.channel-mark/1","channel":"nightly","sequence":3,"bundle_id":"x","updated":"1970-01-01T00:00:01.000Z","updated_unix_ms":1000}"#,
    )
    .expect("w");
    fs::create_dir_all(dir.join("rejected")).expect("mkdir");
    fs::write(dir.join("rejected/19700101T000000Z-unknown.json"), b"{}").expect("w");
    fs::create_dir_all(dir.join("staging/objects")).expect("mkdir");
    fs::write(
        dir.join("staging/objects/00112233445566778899aabbccddeeff.part"),
        vec![0u8; 4096],
    )
    .expect("w");
    id
}

/// [`build_store`] at `store/` in a fresh temporary directory, which lives as long as the
/// returned guard; with the store's path and its quarantined bundle's id.
fn built_store() -> (tempfile::TempDir, PathBuf, String) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("store");
    let id = build_store(&dir);
    (t, dir, id)
}

#[test]
fn store_audit_verify_accepts_an_intact_store() {
    let t = tempfile::tempdir().expect("tempdir");
    let empty = t.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let o = recv(&["audit", "verify", "--store", empty.to_str().expect("utf8")]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let dir = t.path().join("store");
    build_store(&dir);
    let o = recv(&["audit", "verify", "--store", dir.to_str().expect("utf8")]);
    assert_eq!(
        code(&o),
        0,
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout(&o).starts_with("ok: 2 audit records, 1 quarantine entry checked, 0 problems"),
        "{}",
        stdout(&o)
    );
    let o = recv(&[
        "audit",
        "verify",
        "--store",
        dir.to_str().expect("utf8"),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ok"], true);
}

#[test]
fn store_audit_verify_names_each_tampering() {
    let (_t, dir, id) = built_store();
    let d = dir.to_str().expect("utf8");
    let files = dir.join("quarantine").join(&id).join("files");
    // Edited file.
    fs::write(files.join("a.txt"), b"alphA\n").expect("w");
    let o = recv(&["audit", "verify", "--store", d]);
    assert_eq!(code(&o), 4);
    assert!(stdout(&o).contains("a.txt: blake3"), "{}", stdout(&o));
    fs::write(files.join("a.txt"), b"alpha\n").expect("restore");
    // Extra file and a symlink.
    symlink("/etc/shadow", files.join("sub/evil")).expect("symlink");
    let o = recv(&["audit", "verify", "--store", d, "--json"]);
    assert_eq!(code(&o), 4);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert!(
        v["problems"].to_string().contains("sub/evil: is a symlink"),
        "{v}"
    );
    fs::remove_file(files.join("sub/evil")).expect("rm");
    // Deleted audit line.
    let audit = fs::read_to_string(dir.join("audit.jsonl")).expect("r");
    let second = audit.lines().nth(1).expect("line");
    fs::write(dir.join("audit.jsonl"), format!("{second}\n")).expect("w");
    let o = recv(&["audit", "verify", "--store", d]);
    assert_eq!(code(&o), 4);
    assert!(
        stdout(&o).contains("seq 2 but expected 1"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("chain broken"), "{}", stdout(&o));
    fs::write(dir.join("audit.jsonl"), &audit).expect("restore");
    assert_eq!(code(&recv(&["audit", "verify", "--store", d])), 0);
    // Changed receipt.
    let rp = dir.join("quarantine").join(&id).join("receipt.json");
    let r = fs::read_to_string(&rp).expect("r");
    fs::write(&rp, r.replace("\"sequence\": 3", "\"sequence\": 4")).expect("w");
    let o = recv(&["audit", "verify", "--store", d]);
    assert_eq!(code(&o), 4);
    assert!(stdout(&o).contains("receipt changed"), "{}", stdout(&o));
}

#[test]
fn store_status_reports_counts_marks_and_listener_state() {
    let (t, dir, id) = built_store();
    let d = dir.to_str().expect("utf8");
    let o = recv(&["status", "--store", d, "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["quarantine_entries"], 1);
    assert_eq!(v["rejected_records"], 1);
    assert_eq!(v["staging_bytes"], 4096);
    assert_eq!(
        v["staging_objects"][0]["object_id"],
        "00112233445566778899aabbccddeeff"
    );
    assert_eq!(v["audit_records"], 2);
    assert_eq!(v["audit_chain_ok"], true);
    assert_eq!(v["last_audit_record"]["bundle_id"], id);
    assert_eq!(v["channels"][0]["channel"], "nightly");
    assert_eq!(v["channels"][0]["sequence"], 3);
    assert!(v["listener"].is_null());
    // The listener's extension point is merged verbatim; a corrupt mark is flagged.
    fs::write(
        dir.join("state/status.json"),
        br#"{"last_heartbeat_unix":42}"#,
    )
    .expect("w");
    fs::write(dir.join("state/channels/c-6e696768746c79.json"), b"garbage").expect("w");
    let o = recv(&["status", "--store", d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["listener"]["last_heartbeat_unix"], 42);
    assert!(
        v["channels"][0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("CORRUPT"),
        "{v}"
    );
    let o = recv(&["status", "--store", d]);
    assert_eq!(code(&o), 0);
    let text = stdout(&o);
    assert!(text.contains("quarantine:  1 bundle(s)"), "{text}");
    assert!(text.contains("CORRUPT"), "{text}");
    assert!(text.contains("last_heartbeat_unix"), "{text}");
    // A missing store is a clear storage error.
    let o = recv(&[
        "status",
        "--store",
        t.path().join("nope").to_str().expect("utf8"),
    ]);
    assert_eq!(code(&o), 8);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read store"));
}
