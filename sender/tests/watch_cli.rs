//! `sluice-send watch` without a receiver: what it refuses to send and why, what it ignores,
//! its usage errors, and a clean exit 0 on SIGTERM. (The loopback run against a real listener is
//! tests/tests/watch_outbox.rs.)

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{alice_signs, ok, send};

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

#[test]
fn untrusted_bundles_go_to_failed_with_reasons_and_others_are_ignored() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(&send(d, &["keygen", "--out", "alice"]));
    ok(&send(d, &["keygen", "--out", "bob"]));
    std::fs::create_dir_all(d.join("trust")).unwrap();
    std::fs::copy(d.join("alice.pub"), d.join("trust/alice.pub")).unwrap();
    std::fs::create_dir_all(d.join("src")).unwrap();
    std::fs::write(d.join("src/a.txt"), b"a\n").unwrap();
    std::fs::create_dir_all(d.join("outbox")).unwrap();
    // Signed by a key the trust directory does not hold.
    ok(&send(
        d,
        &[
            "bundle",
            "create",
            "--key",
            "bob.key",
            "--channel",
            "c",
            "--out",
            "outbox/bob.sluice",
            "src",
        ],
    ));
    // Not a bundle name, or hidden: ignored, whatever they hold.
    std::fs::copy(d.join("outbox/bob.sluice"), d.join("outbox/bob.sluice.tmp")).unwrap();
    std::fs::copy(d.join("outbox/bob.sluice"), d.join("outbox/.bob.sluice")).unwrap();
    std::fs::write(d.join("outbox/notes.txt"), b"x").unwrap();

    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-send"))
        .args([
            "watch", "--outbox", "outbox", "--trust", "trust", "--to", &to,
        ])
        .args(["--poll", "0.2", "--stable-secs", "0", "--json"])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reason = d.join("outbox/failed/bob.sluice.reason.json");
    let found = wait_for(Duration::from_secs(30), || reason.is_file());
    // Heartbeats flow although nothing can be sent.
    sink.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 65536];
    let heartbeat = sink.recv(&mut buf).is_ok();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert!(found, "no reason record");
    assert!(heartbeat, "no heartbeat while idle");
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");

    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&reason).unwrap()).unwrap();
    assert_eq!(r["reason"], "unknown_signer", "{r}");
    assert!(
        r["remediation"].as_str().is_some_and(|s| !s.is_empty()),
        "{r}"
    );
    assert!(d.join("outbox/failed/bob.sluice").is_file());
    assert!(!d.join("outbox/bob.sluice").exists());
    for kept in ["bob.sluice.tmp", ".bob.sluice", "notes.txt"] {
        assert!(d.join("outbox").join(kept).is_file(), "{kept} was touched");
    }
    assert_eq!(
        std::fs::read_dir(d.join("outbox/sent")).unwrap().count(),
        0,
        "nothing may be sent"
    );
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["outcome"], "failed");
    assert_eq!(line["schema"], "sluice.send-record/1");
}

#[test]
fn usage_errors_name_what_is_missing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let o = send(d, &["watch", "--to", "127.0.0.1:9", "--trust", "trust"]);
    assert_eq!(o.status.code(), Some(2));
    // --trust is checked before --outbox; give a real one.
    ok(&send(d, &["keygen", "--out", "alice"]));
    std::fs::create_dir_all(d.join("trust")).unwrap();
    std::fs::copy(d.join("alice.pub"), d.join("trust/alice.pub")).unwrap();
    let o = send(d, &["watch", "--to", "127.0.0.1:9", "--trust", "trust"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--outbox"));
    let o = send(
        d,
        &[
            "watch",
            "--to",
            "127.0.0.1:9",
            "--trust",
            "trust",
            "--outbox",
            "missing",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a directory"));
    let help = send(d, &["watch", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains(".tmp") && help.contains("--stable-secs"),
        "{help}"
    );
    assert!(help.contains("[default: 2]"), "{help}");
}

#[test]
fn sigterm_mid_send_leaves_the_bundle_in_the_outbox_and_exits_0() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::create_dir_all(d.join("src")).unwrap();
    // Big enough that the send lasts ~10 s at 1 Mbit/s.
    let data: Vec<u8> = (0..1_200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(d.join("src/big.bin"), data).unwrap();
    std::fs::create_dir_all(d.join("outbox")).unwrap();
    alice_signs(d, "src", "outbox/big.sluice");
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-send"))
        .args([
            "watch", "--outbox", "outbox", "--trust", "trust", "--to", &to,
        ])
        .args(["--poll", "0.2", "--stable-secs", "0", "--rate", "1M"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until data frames flow (heartbeats are small; data frames are ~1.4 kB).
    sink.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 65536];
    let mut big = 0;
    while big < 20 {
        let n = sink.recv(&mut buf).expect("frames from the watcher");
        if n > 1000 {
            big += 1;
        }
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "SIGTERM did not stop the send");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        d.join("outbox/big.sluice").is_file(),
        "the bundle in flight must stay"
    );
    assert_eq!(std::fs::read_dir(d.join("outbox/sent")).unwrap().count(), 0);
}
