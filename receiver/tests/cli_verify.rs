//! `sluice-recv verify` through the real binary: exit codes, reasons and remediation lines.
//! Bundles are made with the library builder (the sender CLI is tested in sender/tests).

use std::path::Path;
use std::process::{Command, Output};

use sluice_common::bundle::{self, BundleSpec, MemSource, SecretKey};

fn recv(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-recv"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run sluice-recv")
}

fn make(dir: &Path, name: &str, key: &SecretKey, expires: Option<u64>) {
    let mut src = MemSource::default();
    src.0.insert("docs/a.txt".into(), b"alpha\n".to_vec());
    src.0.insert("b.bin".into(), vec![7u8; 100_000]);
    let spec = BundleSpec {
        channel: "updates".into(),
        sequence: 9,
        created: 1_700_000_000,
        expires,
        note: None,
    };
    let out = src.bundle(&spec, key).expect("build");
    std::fs::write(dir.join(name), out).expect("write");
}

fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    let alice = SecretKey::from_seed(&[1; 32]);
    std::fs::create_dir(t.path().join("trust")).expect("mkdir");
    std::fs::write(
        t.path().join("trust/alice.pub"),
        alice.public().to_sluice_text("alice"),
    )
    .expect("pub");
    make(t.path(), "ok.sluice", &alice, None);
    make(
        t.path(),
        "mallory.sluice",
        &SecretKey::from_seed(&[2; 32]),
        None,
    );
    make(t.path(), "old.sluice", &alice, Some(1_700_000_001));
    t
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `sluice-recv verify --trust trust ARGS…` in `dir` (made by [`setup`]).
fn verify(dir: &Path, args: &[&str]) -> Output {
    recv(&[&["verify", "--trust", "trust"], args].concat(), dir)
}

/// `verify` with `args` in `dir` must exit `code` and name `needle` on stderr.
fn assert_refused(dir: &Path, args: &[&str], code: i32, needle: &str) {
    let o = verify(dir, args);
    assert_eq!(o.status.code(), Some(code));
    assert!(err(&o).contains(needle), "{}", err(&o));
}

#[test]
fn valid_bundle_exits_0() {
    let t = setup();
    let o = verify(t.path(), &["ok.sluice"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("signed by \"alice\""));
    let o = verify(t.path(), &["--json", "ok.sluice"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(j["valid"], true);
    assert_eq!(j["signer"], "alice");
}

#[test]
fn tampered_bundle_exits_4_with_reason() {
    let t = setup();
    let p = t.path().join("ok.sluice");
    let mut b = std::fs::read(&p).expect("read");
    let n = b.len();
    b[n - 10] ^= 0xff;
    std::fs::write(&p, &b).expect("write");
    let o = verify(t.path(), &["ok.sluice"]);
    assert_eq!(o.status.code(), Some(4));
    let e = err(&o);
    assert!(
        e.contains("hash_mismatch") && e.contains("b.bin") && e.contains("help:"),
        "{e}"
    );
    b[n - 10] ^= 0xff;
    b.truncate(n - 1);
    std::fs::write(&p, &b).expect("write");
    let o = verify(t.path(), &["--json", "ok.sluice"]);
    assert_eq!(o.status.code(), Some(4));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(j["reason"], "truncated");
}

#[test]
fn unknown_signer_exits_5() {
    let t = setup();
    assert_refused(t.path(), &["mallory.sluice"], 5, "unknown_signer");
}

#[test]
fn expired_and_rollback_exit_6() {
    let t = setup();
    assert_refused(t.path(), &["old.sluice"], 6, "expired");
    assert_refused(t.path(), &["--last-seq", "9", "ok.sluice"], 6, "rollback");
}

#[test]
fn broken_trust_store_exits_2_naming_the_problem() {
    let t = setup();
    std::fs::write(
        t.path().join("trust/policy.toml"),
        "[defaults]\nallow_any = true\n",
    )
    .expect("write");
    assert_refused(t.path(), &["ok.sluice"], 2, "allow_any");
    std::fs::remove_file(t.path().join("trust/policy.toml")).expect("rm");
    let mut id = [0u8; 32];
    id[0] = 1;
    std::fs::write(
        t.path().join("trust/weak.pub"),
        bundle::PublicKey(id).to_sluice_text("weak"),
    )
    .expect("write");
    assert_refused(t.path(), &["ok.sluice"], 2, "weak");
    let o = verify(t.path(), &["missing.sluice"]);
    assert_eq!(o.status.code(), Some(2), "trust store is checked first");
}

#[test]
fn missing_file_exits_3() {
    let t = setup();
    let o = verify(t.path(), &["missing.sluice"]);
    assert_eq!(o.status.code(), Some(3));
}
