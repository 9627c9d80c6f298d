//! `sluice-send keygen` and `bundle create|inspect` through the real binary; bundles are checked
//! with the library verifier (the receiver's CLI is tested in receiver/tests).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use sluice_common::bundle::{self, DiscardSink, TrustStore, VerifyOptions};

fn send(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-send"))
        .args(args)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1800000000")
        .env_remove("CI")
        .output()
        .expect("run sluice-send")
}

/// `bundle create` of `input` signed with `key` on `channel` into `out`.
fn create(dir: &Path, key: &str, channel: &str, out: &str, input: &str) -> Output {
    send(
        dir,
        &[
            "bundle",
            "create",
            "--key",
            key,
            "--channel",
            channel,
            "--out",
            out,
            input,
        ],
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn verify_file(
    bundle: &Path,
    pubs: &[(&str, &Path)],
) -> Result<bundle::Verified, bundle::VerifyError> {
    let pubs = pubs
        .iter()
        .map(|(n, p)| (n.to_string(), std::fs::read_to_string(p).expect("read pub")))
        .collect();
    let trust = TrustStore::from_parts(pubs, None).expect("trust");
    let f = std::fs::File::open(bundle).expect("open bundle");
    let opts = VerifyOptions {
        now: 1_800_000_100,
        last_sequence: None,
    };
    bundle::verify(std::io::BufReader::new(f), &trust, &opts, &mut DiscardSink)
}

fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("approved/sub/empty")).expect("mkdir");
    std::fs::write(dir.join("approved/a.txt"), b"alpha\n").expect("write");
    std::fs::write(dir.join("approved/sub/run.sh"), b"#!/bin/sh\n").expect("write");
    std::fs::set_permissions(
        dir.join("approved/sub/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
}

#[test]
fn keygen_writes_0600_and_never_overwrites() {
    let t = tempfile::tempdir().expect("tempdir");
    let o = send(t.path(), &["keygen", "--out", "alice", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(j["name"], "alice");
    assert_eq!(j["key_id"].as_str().map(str::len), Some(16));
    let mode = std::fs::metadata(t.path().join("alice.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(t.path().join("alice.key")).expect("read");
    let o = send(t.path(), &["keygen", "--out", "alice"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(t.path().join("alice.key")).expect("read"),
        before
    );
}

#[test]
fn create_verifies_and_is_deterministic() {
    let t = tempfile::tempdir().expect("tempdir");
    tree(t.path());
    assert!(
        send(t.path(), &["keygen", "--out", "alice"])
            .status
            .success()
    );
    let args = |out: &str| {
        vec![
            "bundle",
            "create",
            "--key",
            "alice.key",
            "--channel",
            "updates",
            "--expires",
            "7d",
            "--note",
            "nightly",
            "--out",
            out,
            "--json",
            "approved",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let a1: Vec<String> = args("one.sluice");
    let o = send(t.path(), &a1.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        j["sequence"], 1_800_000_000u64,
        "default sequence is the creation time"
    );
    let a2: Vec<String> = args("two.sluice");
    let o = send(t.path(), &a2.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let one = std::fs::read(t.path().join("one.sluice")).expect("read");
    assert_eq!(
        one,
        std::fs::read(t.path().join("two.sluice")).expect("read")
    );

    let v = verify_file(
        &t.path().join("one.sluice"),
        &[("alice", &t.path().join("alice.pub"))],
    )
    .expect("verifies");
    assert_eq!(v.id().to_hex(), j["bundle_id"].as_str().expect("id"));
    let paths: Vec<(&str, bool)> = v
        .header()
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.executable))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("approved", false),
            ("approved/a.txt", false),
            ("approved/sub", false),
            ("approved/sub/empty", false),
            ("approved/sub/run.sh", true)
        ]
    );
    assert_eq!(v.header().expires, Some(1_800_000_000 + 7 * 86_400));

    // Never overwrite the output; no temp files left behind.
    let o = send(t.path(), &a1.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("never overwrites"), "{}", stderr(&o));
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());

    let o = send(t.path(), &["bundle", "inspect", "one.sluice"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("signature NOT checked against any trust store"),
        "{out}"
    );
    assert!(out.contains("approved/sub/run.sh"), "{out}");
}

#[test]
fn symlinks_and_fifos_are_refused_by_name() {
    let t = tempfile::tempdir().expect("tempdir");
    tree(t.path());
    std::os::unix::fs::symlink("/etc/passwd", t.path().join("approved/sub/link")).expect("symlink");
    assert!(send(t.path(), &["keygen", "--out", "k"]).status.success());
    let o = create(t.path(), "k.key", "c", "b.sluice", "approved");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("approved/sub/link") && e.contains("symbolic link"),
        "{e}"
    );
    assert!(!t.path().join("b.sluice").exists());
    std::fs::remove_file(t.path().join("approved/sub/link")).expect("rm");
    let fifo = t.path().join("approved/fifo");
    let st = Command::new("mkfifo").arg(&fifo).status();
    if st.is_ok_and(|s| s.success()) {
        let o = create(t.path(), "k.key", "c", "b.sluice", "approved");
        assert_eq!(o.status.code(), Some(3));
        assert!(stderr(&o).contains("approved/fifo"), "{}", stderr(&o));
    }
}

#[test]
fn unsafe_names_are_refused_at_build() {
    let t = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(t.path().join("d")).expect("mkdir");
    std::fs::write(t.path().join("d/aux.txt"), b"x").expect("write");
    assert!(send(t.path(), &["keygen", "--out", "k"]).status.success());
    let o = create(t.path(), "k.key", "c", "b.sluice", "d");
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("Windows device name"), "{}", stderr(&o));
}

#[test]
fn openssh_key_signs_and_verifies() {
    if Command::new("ssh-keygen").arg("-?").output().is_err() {
        eprintln!("SKIPPED: ssh-keygen is not installed");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    tree(t.path());
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "officer@lowside",
            "-f",
        ])
        .arg(t.path().join("id_ed25519"))
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let o = create(t.path(), "id_ed25519", "updates", "s.sluice", "approved");
    assert!(o.status.success(), "{}", stderr(&o));
    verify_file(
        &t.path().join("s.sluice"),
        &[("officer", &t.path().join("id_ed25519.pub"))],
    )
    .expect("ssh-signed bundle verifies under the ssh-ed25519 public key");

    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret-pass", "-f"])
        .arg(t.path().join("enc"))
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let o = create(t.path(), "enc", "updates", "e.sluice", "approved");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("passphrase-protected"),
        "{}",
        stderr(&o)
    );
}

/// `bundle inspect X | head`: when the reader of stdout goes away, the tool dies by SIGPIPE like
/// coreutils (shell status 141), without a panic message or backtrace.
#[test]
fn a_closed_stdout_ends_quietly_by_sigpipe() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let t = tempfile::tempdir().expect("tempdir");
    // Enough entries that the listing is larger than a pipe buffer.
    for i in 0..3000 {
        std::fs::create_dir_all(t.path().join("approved/d")).expect("mkdir");
        std::fs::write(t.path().join(format!("approved/d/file-{i:05}.txt")), b"x").expect("write");
    }
    assert!(
        send(t.path(), &["keygen", "--out", "alice"])
            .status
            .success()
    );
    let o = create(t.path(), "alice.key", "updates", "many.sluice", "approved");
    assert!(o.status.success(), "{}", stderr(&o));
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-send"))
        .args(["bundle", "inspect", "many.sluice"])
        .current_dir(t.path())
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The reader goes away before reading anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.signal(), Some(13), "{:?} {err}", out.status);
}
