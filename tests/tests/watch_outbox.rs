//! `sluice-send watch` end to end on loopback: the real watcher sends what writers rename into
//! its outbox to a real `sluice-recv listen`, never takes a half-written file, never resends
//! what it moved to sent/ (across a restart), and moves a tampered bundle to failed/.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sluice_tests::e2e::{Bins, bins};
use sluice_tests::listener::wait_until;
use sluice_tests::{TempStore, free_udp_addr};

/// Key, trust directory and `n` bundles on channel `nightly` with sequences 1..=n.
fn bundles(bins: &Bins, t: &TempStore, n: u64) -> (PathBuf, Vec<PathBuf>) {
    let run = |args: &[&str]| {
        let o = Command::new(&bins.send)
            .args(args)
            .current_dir(t.path())
            .output()
            .expect("run sluice-send");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["keygen", "--out", "alice"]);
    let trust = t.subdir("trust");
    std::fs::copy(t.path().join("alice.pub"), trust.join("alice.pub")).unwrap();
    let mut out = Vec::new();
    for i in 1..=n {
        let dir = format!("src{i}");
        t.write(format!("{dir}/file.txt"), format!("night {i}\n").as_bytes());
        let name = format!("b{i}.sluice");
        run(&[
            "bundle",
            "create",
            "--key",
            "alice.key",
            "--channel",
            "nightly",
            "--seq",
            &i.to_string(),
            "--out",
            &name,
            &dir,
        ]);
        out.push(t.path().join(name));
    }
    (trust, out)
}

fn listen(bins: &Bins, t: &TempStore, trust: &Path, addr: &str) -> Child {
    let child = Command::new(&bins.recv)
        .args(["listen", "--bind", addr, "--store"])
        .arg(t.path().join("store"))
        .arg("--trust")
        .arg(trust)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(t.path().join("listen.log")).unwrap())
        .spawn()
        .expect("spawn listen");
    // The listener writes its status file once a second after binding: then it is up.
    assert!(
        wait_until(Duration::from_secs(30), || {
            t.path().join("store/state/status.json").is_file()
        }),
        "listener did not start"
    );
    child
}

fn watch(bins: &Bins, t: &TempStore, trust: &Path, addr: &str, log: &str) -> Child {
    Command::new(&bins.send)
        .args(["watch", "--outbox"])
        .arg(t.path().join("outbox"))
        .args(["--to", addr, "--trust"])
        .arg(trust)
        .args([
            "--rate",
            "100M",
            "--poll",
            "0.2",
            "--heartbeat-interval",
            "0.2",
        ])
        .args(["--json", "-v"])
        .stdout(std::fs::File::create(t.path().join(format!("{log}.out"))).unwrap())
        .stderr(std::fs::File::create(t.path().join(format!("{log}.log"))).unwrap())
        .spawn()
        .expect("spawn watch")
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < end, "process ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Outcomes in the audit log per bundle id: {bundle_id: [outcome, …]}.
fn audit(t: &TempStore) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(t.path().join("store/audit.jsonl")).unwrap_or_default();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        out.entry(v["bundle_id"].as_str().unwrap_or("-").to_string())
            .or_default()
            .push(v["outcome"].as_str().unwrap().to_string());
    }
    out
}

fn bundle_id(bins: &Bins, bundle: &Path) -> String {
    let o = Command::new(&bins.send)
        .args(["bundle", "inspect", "--json"])
        .arg(bundle)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("inspect --json");
    v["bundle_id"].as_str().expect("bundle_id").to_string()
}

/// Writer convention: copy under a dot-name, then rename to `*.sluice`.
fn drop_into(outbox: &Path, bundle: &Path) {
    let name = bundle.file_name().unwrap().to_str().unwrap();
    let tmp = outbox.join(format!(".{name}.partial"));
    std::fs::copy(bundle, &tmp).unwrap();
    std::fs::rename(&tmp, outbox.join(name)).unwrap();
}

/// Waits until the watcher has moved `name` to sent/ beside its send record, and then until the
/// receiver's audit log holds a decision on bundle `id`.
fn assert_sent_and_decided(t: &TempStore, outbox: &Path, name: &str, id: &str) {
    let record = outbox.join(format!("sent/{name}.sent.json"));
    assert!(
        wait_until(Duration::from_secs(60), || record.is_file()),
        "{name} not sent"
    );
    assert!(
        wait_until(Duration::from_secs(30), || audit(t)
            .get(id)
            .is_some_and(|d| !d.is_empty())),
        "{name} not decided"
    );
}

fn heartbeat_seq(t: &TempStore) -> Option<u64> {
    let b = std::fs::read(t.path().join("store/state/status.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
    v["last_heartbeat"]["sequence"].as_u64()
}

#[test]
fn watch_sends_renamed_bundles_once_and_moves_tampered_ones_to_failed() {
    let bins = bins();
    let t = TempStore::new();
    let (trust, b) = bundles(bins, &t, 4);
    let ids: Vec<String> = b.iter().map(|p| bundle_id(bins, p)).collect();
    let outbox = t.subdir("outbox");
    let addr = free_udp_addr().to_string();
    let mut listener = listen(bins, &t, &trust, &addr);
    let mut watcher = watch(bins, &t, &trust, &addr, "watch1");

    // A `.tmp` name holding a complete bundle is never taken.
    std::fs::copy(&b[3], outbox.join("b4.sluice.tmp")).unwrap();
    // A renamed bundle arrives in quarantine and moves to sent/ with its send record.
    drop_into(&outbox, &b[0]);
    let record = outbox.join("sent/b1.sluice.sent.json");
    assert!(
        wait_until(Duration::from_secs(60), || record.is_file()),
        "b1 not sent"
    );
    assert!(outbox.join("sent/b1.sluice").is_file());
    assert!(!outbox.join("b1.sluice").exists());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(r["bundle_id"], ids[0].as_str());
    assert_eq!(r["channel"], "nightly");
    assert_eq!(r["sequence"], 1);
    assert_eq!(r["passes"], 1);
    assert!(r["frames"].as_u64().unwrap() > 0, "{r}");
    assert!(r["bundle_bytes"].as_u64().unwrap() > 0, "{r}");
    assert!(
        r["end_unix_ms"].as_u64() >= r["start_unix_ms"].as_u64(),
        "{r}"
    );
    assert!(
        wait_until(Duration::from_secs(30), || t
            .path()
            .join("store/quarantine")
            .join(&ids[0])
            .is_dir()),
        "b1 not in quarantine"
    );

    // A tampered bundle (one content byte flipped) is not sent: failed/ with its reason.
    let mut bad = std::fs::read(&b[2]).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    std::fs::write(outbox.join(".bad.partial"), &bad).unwrap();
    std::fs::rename(outbox.join(".bad.partial"), outbox.join("bad.sluice")).unwrap();
    let reason = outbox.join("failed/bad.sluice.reason.json");
    assert!(
        wait_until(Duration::from_secs(60), || reason.is_file()),
        "bad not failed"
    );
    assert!(outbox.join("failed/bad.sluice").is_file());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&reason).unwrap()).unwrap();
    assert!(!r["reason"].as_str().unwrap().is_empty(), "{r}");
    assert!(!r["detail"].as_str().unwrap().is_empty(), "{r}");
    assert!(!r["remediation"].as_str().unwrap().is_empty(), "{r}");

    // Idle: heartbeats keep flowing, and their ledger names what was sent.
    let s1 = heartbeat_seq(&t).unwrap_or(0);
    assert!(
        wait_until(Duration::from_secs(30), || heartbeat_seq(&t).unwrap_or(0)
            > s1 + 2),
        "heartbeats stopped while idle"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.path().join("store/state/status.json")).unwrap())
            .unwrap();
    let ledger = status["last_heartbeat"]["ledger"].as_array().unwrap();
    assert!(
        ledger.iter().any(|e| e["object_id"] == ids[0][..32]),
        "{status}"
    );

    // SIGTERM: clean exit 0. A restarted watcher sends new bundles but never what is in sent/.
    assert_eq!(terminate(&mut watcher).code(), Some(0));
    let mut watcher = watch(bins, &t, &trust, &addr, "watch2");
    drop_into(&outbox, &b[1]);
    assert_sent_and_decided(&t, &outbox, "b2.sluice", &ids[1]);
    // Let a few more scans pass: nothing else may go out.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(terminate(&mut watcher).code(), Some(0));
    terminate(&mut listener);

    let decisions = audit(&t);
    assert_eq!(
        decisions.get(&ids[0]),
        Some(&vec!["accepted".to_string()]),
        "{decisions:?}"
    );
    assert_eq!(
        decisions.get(&ids[1]),
        Some(&vec!["accepted".to_string()]),
        "{decisions:?}"
    );
    assert!(
        !decisions.contains_key(&ids[2]),
        "the tampered bundle was sent: {decisions:?}"
    );
    assert!(
        !decisions.contains_key(&ids[3]),
        "the .tmp file was sent: {decisions:?}"
    );
    assert!(outbox.join("b4.sluice.tmp").is_file());
    let sent: Vec<_> = std::fs::read_dir(outbox.join("sent"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(sent.len(), 4, "{sent:?}");
}

#[test]
fn watch_does_not_take_a_file_still_being_written() {
    let bins = bins();
    let t = TempStore::new();
    let (trust, b) = bundles(bins, &t, 1);
    let id = bundle_id(bins, &b[0]);
    let outbox = t.subdir("outbox");
    let addr = free_udp_addr().to_string();
    let mut listener = listen(bins, &t, &trust, &addr);
    let mut watcher = watch(bins, &t, &trust, &addr, "watch");

    // A writer that does not rename: the final name from the first byte, written slowly. Each
    // chunk lands well within the default --stable-secs (2 s), so the watcher must wait.
    let bytes = std::fs::read(&b[0]).unwrap();
    let target = outbox.join("slow.sluice");
    let mut f = std::fs::File::create(&target).unwrap();
    let chunks: Vec<&[u8]> = bytes.chunks(bytes.len().div_ceil(8)).collect();
    for chunk in chunks {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            target.is_file()
                && !outbox.join("sent/slow.sluice").exists()
                && !outbox.join("failed/slow.sluice").exists(),
            "the watcher took a file that was still being written"
        );
    }
    drop(f);
    // Complete and left alone: now it goes.
    assert_sent_and_decided(&t, &outbox, "slow.sluice", &id);
    assert_eq!(terminate(&mut watcher).code(), Some(0));
    terminate(&mut listener);
    assert_eq!(audit(&t).get(&id), Some(&vec!["accepted".to_string()]));
    assert!(!outbox.join("failed/slow.sluice").exists());
}
