//! `sluice-send link-keygen`: a 0600 file of 64 hex digits that the one loader
//! (`host/src/linkkey.rs`) reads, never overwritten without --force; and `udp`/`media` refusing
//! the public default key where the receiver would.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn send(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-send"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn writes_a_0600_hex_key_the_loader_reads_and_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = send(d, &["link-keygen", "--out", "link.key", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["link_key"], "link.key");
    assert_eq!(json["mode"], "0600");
    let path = d.join("link.key");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let first = std::fs::read_to_string(&path).unwrap();
    assert_eq!(first.len(), 65, "{first:?}");
    assert!(first.ends_with('\n'));
    assert!(first.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
    let key = sluice_host::linkkey::load_link_key(Some(&path)).unwrap();
    assert!(!key.is_public_default());
    assert_eq!(
        json["fingerprint"],
        sluice_common::linkkey::fingerprint(&key)
    );
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["link.key"], "{names:?}");

    // Again without --force: refused, the key untouched.
    let out = send(d, &["link-keygen", "--out", "link.key"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

    // With --force: a new key, still 0600.
    let out = send(d, &["link-keygen", "--out", "link.key", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("copy the same file to the high side"),
        "{stdout}"
    );
    let second = std::fs::read_to_string(&path).unwrap();
    assert_ne!(second, first);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The same file is what `doctor --link-key` accepts (one loader).
    let out = send(
        d,
        &[
            "doctor",
            "--json",
            "--to",
            "127.0.0.1:9",
            "--link-key",
            "link.key",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let finding = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "link-key")
        .unwrap();
    assert_eq!(finding["status"], "ok", "{finding}");
}

#[test]
fn a_missing_directory_is_a_storage_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = send(
        dir.path(),
        &["link-keygen", "--out", "no/such/dir/link.key"],
    );
    assert_eq!(out.status.code(), Some(8), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("help:"));
}

#[test]
fn udp_and_media_refuse_the_public_key_unless_loopback_or_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("b.sluice"), b"not read before the key check").unwrap();
    for args in [
        &["udp", "--to", "192.0.2.1:7000", "--trust", ".", "b.sluice"][..],
        &["media", "--out", ".", "--trust", ".", "b.sluice"][..],
    ] {
        let out = send(d, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refusing to run on the public link key"),
            "{err}"
        );
        assert!(
            err.lines()
                .any(|l| l.starts_with("help:") && l.contains("sluice-send link-keygen --out")),
            "{err}"
        );
    }
    // Loopback, or the flag: past the key check (the trust directory is what fails next).
    for args in [
        &["udp", "--to", "127.0.0.1:9", "--trust", "none", "b.sluice"][..],
        &[
            "udp",
            "--to",
            "192.0.2.1:7000",
            "--insecure-public-link-key",
            "--trust",
            "none",
            "b.sluice",
        ][..],
        &[
            "media",
            "--out",
            ".",
            "--insecure-public-link-key",
            "--trust",
            "none",
            "b.sluice",
        ][..],
    ] {
        let out = send(d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("public link key"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}
