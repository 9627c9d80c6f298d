//! An operator's first day (issue #17 items 3, 4, 6 and 9), through the real binaries:
//!
//! - a clean stop of `listen` exits 0 after a rejected bundle, and each decision was logged at the
//!   default verbosity, one line each, with bundle id, channel, outcome and bytes (items 3, 4);
//! - datagrams under another link key and a silent sender each get one rate-limited WARN (4);
//! - duplicate audit records name the real signer, directory entries have a `null` blake3, and
//!   `status` exits 4 when the audit chain is broken (6);
//! - a `.pub` passed as `--key`, `--to` without a port, an interrupted `udp`, `audit verify`'s
//!   plurals, and `listen` that cannot bind leaving no store behind (9);
//! - the promote unit runs the `/usr/bin` binary and passes `systemd-analyze verify` (3).
//!
//! No assertion depends on timing: the tests wait for files, log lines and datagrams.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use sluice_common::transport::wire::LinkKey;
use sluice_tests::attack::{
    Blaster, Signer, bundle_id, public_frames, resend_until, sender_frames,
};
use sluice_tests::listener::wait_until;
use sluice_tests::store::{audit_records, decisions, receipt};
use sluice_tests::{TempStore, build_bin, free_udp_addr, systemd_verify_findings, tool_or_skip};

/// A `sluice-recv listen --json` at the DEFAULT verbosity (the shared fixture adds `-v`, which
/// would hide whether the decision lines show without it); stderr goes to `log`.
struct QuietListener {
    child: Child,
    outcomes: mpsc::Receiver<Value>,
    addr: SocketAddr,
    store: PathBuf,
    log: PathBuf,
}

impl QuietListener {
    fn start(dir: &Path, trust: &Path, extra: &[&str]) -> Self {
        let addr = free_udp_addr();
        let store = dir.join("store");
        let log = dir.join("listen.log");
        let mut child = Command::new(build_bin("sluice-recv", "sluice-recv"))
            .args(["listen", "--json", "--bind", &addr.to_string(), "--store"])
            .arg(&store)
            .arg("--trust")
            .arg(trust)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn listen");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, outcomes) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("listen --json line {line:?}: {e}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let me = QuietListener {
            child,
            outcomes,
            addr,
            store,
            log,
        };
        let pid = u64::from(me.child.id());
        let ready = wait_until(Duration::from_secs(60), || {
            std::fs::read(me.store.join("state/status.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v["pid"].as_u64() == Some(pid))
        });
        assert!(ready, "listener did not start:\n{}", me.log_text());
        me
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `bundle` (under the public default link key) until an outcome line names it.
    fn deliver(&self, bundle: &[u8]) -> Value {
        let id = bundle_id(bundle);
        let frames = public_frames(bundle);
        let mut b = Blaster::new(self.addr);
        let want = hex::encode(id.object_id());
        for _ in 0..20 {
            b.send_all(&frames);
            while let Ok(v) = self.outcomes.recv_timeout(Duration::from_secs(3)) {
                if v["object_id"] == want.as_str() && v["outcome"] != "incomplete" {
                    return v;
                }
            }
        }
        panic!("no outcome for {want}; log:\n{}", self.log_text());
    }

    /// Sends `bundle` until the listener's status counts it as refused unauthenticated with
    /// `code` (such a bundle never produces an outcome line).
    fn send_until_counted(&self, bundle: &[u8], code: &str) {
        let counted = resend_until(self.addr, &public_frames(bundle), 20, || {
            let n = std::fs::read(self.store.join("state/status.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["counters"]["unauthenticated_by_code"][code].as_u64())
                .unwrap_or(0);
            (n > 0).then_some(())
        });
        assert!(
            counted.is_some(),
            "{code} never counted; log:\n{}",
            self.log_text()
        );
    }

    /// SIGTERM and the exit code.
    fn terminate(mut self) -> (i32, String) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let status = self.child.wait().expect("wait");
        (status.code().unwrap_or(-1), self.log_text())
    }
}

/// The store of a [`QuietListener`] that was sent `bundles` (waiting for each one's outcome) and
/// then stopped cleanly (exit 0).
fn store_after(dir: &Path, trust: &Path, bundles: &[Vec<u8>]) -> PathBuf {
    let l = QuietListener::start(dir, trust, &[]);
    for b in bundles {
        l.deliver(b);
    }
    let store = l.store.clone();
    assert_eq!(l.terminate().0, 0);
    store
}

/// The decision lines of a text log (target `sluice::decision`).
fn decision_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("sluice::decision"))
        .collect()
}

/// Items 3, 4 and 6: accepted, duplicate and rejected bundles, then SIGTERM. The stop exits 0 (it
/// used to exit 5, the worst verdict of the run); each decision has exactly one line at the
/// default verbosity naming the bundle, channel, outcome and bytes; the duplicate's audit
/// record names the real signer; a directory entry has a null blake3; nothing on stderr is an
/// ANSI escape (it is a file here).
#[test]
fn clean_stop_after_a_rejection_exits_0_and_logs_each_decision() {
    let tmp = TempStore::new();
    let alice = Signer::new(&tmp.path().join("trust"));
    let l = QuietListener::start(tmp.path(), &alice.trust, &[]);

    let good = alice.bundle("nightly", 1, &[("sub/readme.txt", b"hello\n".to_vec())]);
    // A trusted signer's header over a body that does not match it: rejected once authenticated.
    let mut tampered = alice.bundle("nightly", 2, &[("x.txt", vec![b'x'; 4096])]);
    let n = tampered.len();
    tampered[n - 100] ^= 0x01;
    // Signed by a key the listener's trust directory does not hold: refused before anything is
    // staged, counted, and never logged as a decision (issue #12).
    let stranger = Signer {
        key: sluice_common::bundle::SecretKey::from_seed(&[0x4D; 32]),
        trust: tmp.path().join("unused"),
    }
    .bundle("nightly", 3, &[("y.txt", b"y\n".to_vec())]);
    let good_id = bundle_id(&good).to_hex();
    let tampered_id = bundle_id(&tampered).to_hex();
    let stranger_id = bundle_id(&stranger).to_hex();

    assert_eq!(l.deliver(&good)["outcome"], "accepted");
    let (code, first_log) = l.terminate();
    assert_eq!(code, 0, "a clean stop exits 0; log:\n{first_log}");
    // A resend is verified again, and recorded as a duplicate, by a new process (within one,
    // the transport drops a completed object's frames unverified).
    let l = QuietListener::start(tmp.path(), &alice.trust, &[]);
    assert_eq!(l.deliver(&good)["outcome"], "duplicate");
    let rejected = l.deliver(&tampered);
    assert_eq!(rejected["outcome"], "rejected", "{rejected}");
    l.send_until_counted(&stranger, "unknown_signer");

    let store = l.store.clone();
    let (code, second_log) = l.terminate();
    assert_eq!(
        code, 0,
        "a clean stop exits 0 whatever was decided; log:\n{second_log}"
    );
    assert!(
        !second_log.contains(&stranger_id),
        "an unauthenticated bundle is never a decision line:\n{second_log}"
    );
    let log = format!("{first_log}{second_log}");

    // Item 4: one line per decision at the default verbosity, with id, channel, outcome, bytes.
    let lines = decision_lines(&log);
    assert_eq!(lines.len(), 3, "one line per decided bundle:\n{log}");
    let bytes = good.len();
    for (line, id, outcome) in [
        (lines[0], &good_id, "accepted"),
        (lines[1], &good_id, "duplicate"),
        (lines[2], &tampered_id, "rejected"),
    ] {
        assert!(line.contains(id.as_str()), "{line}");
        assert!(line.contains(outcome), "{line}");
        assert!(line.contains("channel="), "{line}");
        assert!(line.contains("bytes="), "{line}");
    }
    assert!(lines[0].contains("channel=nightly"), "{}", lines[0]);
    assert!(lines[1].contains("channel=nightly"), "{}", lines[1]);
    assert!(lines[0].contains(&format!("bytes={bytes}")), "{}", lines[0]);
    assert!(lines[0].contains(" INFO "), "{}", lines[0]);
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{log:?}"
    );

    // Item 6: the duplicate names the signer that verified the accepted copy.
    let dup = decisions(&store, "duplicate");
    assert_eq!(dup.len(), 1, "{dup:?}");
    assert_eq!(dup[0].signer.as_deref(), Some("alice"), "{:?}", dup[0]);
    let r = receipt(&store, &good_id).expect("receipt");
    let sub = r
        .entries
        .iter()
        .find(|e| e.path == "sub")
        .expect("the directory entry");
    assert_eq!(sub.kind, "dir");
    assert_eq!(sub.blake3, None, "a directory has no blake3: {sub:?}");
    let file = r.entries.iter().find(|e| e.kind == "file").expect("file");
    assert_eq!(
        file.blake3.as_deref(),
        Some(blake3::hash(b"hello\n").to_hex().as_str())
    );
}

/// Item 6: `status` prints "chain BROKEN" and exits 4 (INVALID, as `audit verify` does) when a
/// line of the audit log was edited (the first of two: the second's `prev` no longer matches);
/// 0 before the edit.
#[test]
fn status_exits_4_when_the_audit_chain_is_broken() {
    let tmp = TempStore::new();
    let alice = Signer::new(&tmp.path().join("trust"));
    let bundles = [
        alice.bundle("nightly", 1, &[("a.txt", b"a\n".to_vec())]),
        alice.bundle("nightly", 2, &[("b.txt", b"b\n".to_vec())]),
    ];
    let store = store_after(tmp.path(), &alice.trust, &bundles);
    let recv = build_bin("sluice-recv", "sluice-recv");
    let status = |store: &Path| {
        let out = Command::new(&recv)
            .arg("status")
            .arg("--store")
            .arg(store)
            .output()
            .expect("run status");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = status(&store);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("chain ok"), "{text}");

    let audit = store.join("audit.jsonl");
    let edited =
        std::fs::read_to_string(&audit)
            .expect("audit")
            .replacen("\"nightly\"", "\"nightlx\"", 1);
    std::fs::write(&audit, edited).expect("edit audit");
    let (code, text) = status(&store);
    assert!(text.contains("chain BROKEN"), "{text}");
    assert_eq!(
        code,
        Some(4),
        "status must not exit 0 with a broken chain:\n{text}"
    );
}

/// Item 4: frames under another link key all fail their tag: one WARN that says "link key
/// mismatch?" (not one per datagram); with `--heartbeat-timeout 1` and no sender, one WARN that
/// no heartbeat was seen.
#[test]
fn wrong_link_key_and_silent_sender_each_warn_once() {
    let tmp = TempStore::new();
    let alice = Signer::new(&tmp.path().join("trust"));
    let l = QuietListener::start(tmp.path(), &alice.trust, &["--heartbeat-timeout", "1"]);
    let bundle = alice.bundle("nightly", 1, &[("a.txt", vec![7; 50_000])]);
    let frames = sender_frames(
        &LinkKey::from_bytes([0x99; 32]),
        &bundle,
        bundle_id(&bundle).object_id(),
        1024,
        64 * 1024,
        10,
        1,
    );
    let mut b = Blaster::new(l.addr);
    let warned = wait_until(Duration::from_secs(30), || {
        b.send_all(&frames);
        l.log_text().contains("link key mismatch?")
    });
    assert!(warned, "no link-key warning; log:\n{}", l.log_text());
    // More failing datagrams within the minute: still one warning.
    b.send_all(&frames);
    let heartbeat = wait_until(Duration::from_secs(30), || {
        l.log_text().contains("no heartbeat for")
    });
    assert!(heartbeat, "no heartbeat warning; log:\n{}", l.log_text());
    let (code, log) = l.terminate();
    assert_eq!(code, 0);
    assert_eq!(
        log.matches("link key mismatch?").count(),
        1,
        "rate-limited to one per minute:\n{log}"
    );
    assert!(
        log.lines()
            .filter(|l| l.contains("link key mismatch?"))
            .all(|l| l.contains(" WARN ")),
        "{log}"
    );
    assert!(
        decision_lines(&log).is_empty(),
        "nothing was decided:\n{log}"
    );
}

/// Item 9: `listen` that cannot bind fails with NETWORK (9) before it creates the store.
#[test]
fn listen_that_cannot_bind_creates_no_store() {
    let tmp = TempStore::new();
    let alice = Signer::new(&tmp.path().join("trust"));
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let store = tmp.path().join("typo-store");
    let out = Command::new(build_bin("sluice-recv", "sluice-recv"))
        .args(["listen", "--bind", &addr.to_string(), "--store"])
        .arg(&store)
        .arg("--trust")
        .arg(&alice.trust)
        .output()
        .expect("run listen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(9), "{stderr}");
    assert!(stderr.contains("cannot bind"), "{stderr}");
    assert!(
        !store.exists(),
        "the store was created before the bind failed"
    );
}

/// Item 9: a public key passed as `--key` is named as such, before any file-mode complaint and
/// without "unrecognised key format"; `--to` without a port hints HOST:PORT.
#[test]
fn sender_key_and_address_mistakes_say_what_to_pass() {
    let tmp = TempStore::new();
    let alice = Signer::new(&tmp.path().join("trust"));
    let send = build_bin("sluice-send", "sluice-send");
    let content = tmp.subdir("content");
    std::fs::write(content.join("f.txt"), b"f\n").expect("content");
    let public = alice.trust.join("alice.pub");
    let out = Command::new(&send)
        .args([
            "bundle",
            "create",
            "--channel",
            "nightly",
            "--seq",
            "1",
            "--key",
        ])
        .arg(&public)
        .arg("--out")
        .arg(tmp.path().join("b.sluice"))
        .arg(&content)
        .output()
        .expect("run bundle create");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("this is a public key"), "{stderr}");
    assert!(stderr.contains("private key"), "{stderr}");
    assert!(!stderr.contains("unrecognised key format"), "{stderr}");
    assert!(!stderr.contains("readable by group"), "{stderr}");

    let out = Command::new(&send)
        .args(["udp", "--to", "127.0.0.1", "--trust"])
        .arg(&alice.trust)
        .arg(tmp.path().join("b.sluice"))
        .output()
        .expect("run udp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("HOST:PORT"), "{stderr}");
}

/// Item 9: an interrupted `udp` exits 130 and does not claim the bundle was "sent".
#[test]
fn interrupted_udp_says_not_fully_sent() {
    let tmp = TempStore::new();
    let alice = Signer::new(&tmp.path().join("trust"));
    // Incompressible and paced slowly: the send lasts long enough to be interrupted.
    let mut body = vec![0u8; 4 << 20];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in body.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let path = tmp.path().join("big.sluice");
    std::fs::write(&path, alice.bundle("nightly", 1, &[("big.bin", body)])).expect("bundle");
    let sink = UdpSocket::bind("127.0.0.1:0").expect("sink");
    let child = Command::new(build_bin("sluice-send", "sluice-send"))
        .args([
            "udp",
            "--rate",
            "2M",
            "--to",
            &sink.local_addr().unwrap().to_string(),
        ])
        .arg("--trust")
        .arg(&alice.trust)
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn udp");
    // Interrupt once the first datagram arrived (the send is under way).
    let mut buf = [0u8; 65_536];
    sink.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    sink.recv(&mut buf).expect("a first datagram");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let out = child.wait_with_output().expect("wait udp");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(!stdout.contains("INTERRUPTED"), "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("sent ")), "{stdout}");
    assert!(stdout.contains("not fully sent (interrupted)"), "{stdout}");
    assert!(stdout.contains("send again"), "{stdout}");
}

/// Item 9: `audit verify` writes proper plurals ("1 quarantine entry", not "entr(y/ies)").
#[test]
fn audit_verify_text_uses_proper_plurals() {
    let tmp = TempStore::new();
    let alice = Signer::new(&tmp.path().join("trust"));
    let bundle = alice.bundle("nightly", 1, &[("a.txt", b"a\n".to_vec())]);
    let store = store_after(tmp.path(), &alice.trust, &[bundle]);
    assert_eq!(audit_records(&store).len(), 1);
    let out = Command::new(build_bin("sluice-recv", "sluice-recv"))
        .args(["audit", "verify", "--store"])
        .arg(&store)
        .output()
        .expect("audit verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("ok: 1 audit record, 1 quarantine entry checked, 0 problems"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("(y/ies)") && !stdout.contains("(s)"),
        "{stdout}"
    );
}

/// Item 3 (and item 1 for this unit): the promote unit runs the packaged path /usr/bin and
/// `systemd-analyze verify` accepts it (run against a copy pointing at the built binary, as
/// tests/tests/packaging.rs does for the packaged units).
#[test]
fn promote_unit_runs_usr_bin_and_verifies() {
    let root = sluice_tests::workspace_root();
    let unit = std::fs::read_to_string(root.join("hardware/systemd/sluice-promote.service"))
        .expect("promote unit");
    assert!(
        unit.contains("ExecStart=/usr/bin/sluice-promote "),
        "the unit must run /usr/bin/sluice-promote"
    );
    assert!(!unit.contains("/usr/local/bin"), "no /usr/local/bin path");
    let Some(analyze) = tool_or_skip("promote_unit_runs_usr_bin_and_verifies", "systemd-analyze")
    else {
        return;
    };
    let bin = build_bin("sluice-promote", "sluice-promote");
    let tmp = TempStore::new();
    let copy = tmp.path().join("sluice-promote.service");
    std::fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/bin/sluice-promote",
            &format!("ExecStart={}", bin.display()),
        ),
    )
    .expect("unit copy");
    let (ours, report) = systemd_verify_findings(&analyze, &[copy], "sluice-promote");
    assert!(ours.is_empty(), "systemd-analyze verify:\n{report}");
}
