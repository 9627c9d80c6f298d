//! README.md's "How it is used" block, run literally with the real binaries, from `keygen` to
//! `audit verify`, including the trust directory and the link key. The only substitutions are
//! the ones README.md lists below the block:
//!
//! - `10.0.0.2:7000` → a free loopback port;
//! - `/var/lib/sluice`, `/etc/sluice`, `/media/usb` → the same paths under a temporary root.
//!
//! Every line runs with `sh -c` in a scratch directory holding `./approved/`, with `sluice-send`
//! and `sluice-recv` first on `PATH`, and must exit 0. `sluice-recv listen` runs in the
//! background; before the next `sluice-recv` command (and at the end) the test waits for the
//! bundle in quarantine and stops the listener with SIGTERM, which must exit 0. If a README
//! command stops working, or the block loses a step, this test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sluice_tests::e2e::bins;
use sluice_tests::listener::wait_until;
use sluice_tests::{TempStore, free_udp_addr, workspace_root};

/// The lines of the first ```sh block after `## How it is used`, without blanks and comments.
fn walkthrough_commands(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## How it is used")
        .nth(1)
        .expect("README.md has a \"## How it is used\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the section opens with a ```sh block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

struct Background {
    child: Child,
    line: String,
    store: PathBuf,
    log: PathBuf,
}

impl Background {
    /// Waits for the bundle in quarantine, then SIGTERM; the listener must exit 0.
    fn finish(mut self) {
        let q = self.store.join("quarantine");
        let landed = wait_until(Duration::from_secs(120), || {
            std::fs::read_dir(&q).is_ok_and(|mut d| d.next().is_some())
        });
        let log = || std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(
            landed,
            "nothing reached quarantine: {}\n{}",
            self.line,
            log()
        );
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        let status = self.child.wait().expect("wait for listen");
        assert_eq!(status.code(), Some(0), "{}\n{}", self.line, log());
    }
}

#[test]
fn readme_walkthrough_runs_literally_from_keygen_to_audit_verify() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let commands = walkthrough_commands(&readme);
    // The steps the walk-through must show (issue #17): both keys, the trust directory, both
    // transports, and the high side's checks.
    for step in [
        "sluice-send keygen ",
        "mkdir -p trust",
        "sluice-send link-keygen ",
        "sluice-recv listen ",
        "sluice-send udp ",
        "sluice-send media ",
        "sluice-recv import ",
        "sluice-recv verify ",
        "sluice-recv status ",
        "sluice-recv audit verify ",
    ] {
        assert!(
            commands.iter().any(|c| c.starts_with(step)),
            "README's walk-through lost `{step}`: {commands:#?}"
        );
    }

    let ts = TempStore::new();
    let root = ts.subdir("root");
    let work = ts.subdir("work");
    let bin = ts.subdir("bin");
    std::os::unix::fs::symlink(&bins().send, bin.join("sluice-send")).unwrap();
    std::os::unix::fs::symlink(&bins().recv, bin.join("sluice-recv")).unwrap();
    // What the officer approved, and the places a real host already has.
    ts.write("work/approved/README.txt", b"approved for release\n");
    ts.write("work/approved/tools/run.sh", b"#!/bin/sh\necho run\n");
    ts.random_tree("work/approved/data", 1, 3, &[64 << 10, 1, 0]);
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    std::fs::create_dir_all(root.join("media/usb")).unwrap();

    let addr = free_udp_addr().to_string();
    let r = root.display().to_string();
    let substitute = |line: &str| {
        line.replace("10.0.0.2:7000", &addr)
            .replace("/var/lib/sluice", &format!("{r}/var/lib/sluice"))
            .replace("/etc/sluice", &format!("{r}/etc/sluice"))
            .replace("/media/usb", &format!("{r}/media/usb"))
    };
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let store = root.join("var/lib/sluice");
    let mut listener: Option<Background> = None;
    for (i, original) in commands.iter().enumerate() {
        let line = substitute(original);
        if line.starts_with("sluice-recv ")
            && let Some(l) = listener.take()
        {
            l.finish();
        }
        let mut cmd = Command::new("sh");
        cmd.current_dir(&work)
            .env("PATH", &path)
            .stdin(Stdio::null());
        if line.starts_with("sluice-recv listen ") {
            let log = ts.path().join("listen.log");
            let child = cmd
                .arg("-c")
                .arg(format!("exec {line}"))
                .stdout(std::fs::File::create(ts.path().join("listen.out")).unwrap())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            // Bound once it writes its status with its pid (tests/src/listener.rs does the same).
            let pid = u64::from(child.id());
            let status = store.join("state/status.json");
            let ready = wait_until(Duration::from_secs(30), || {
                std::fs::read(&status)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .is_some_and(|v| v["pid"].as_u64() == Some(pid))
            });
            assert!(
                ready,
                "`{line}` did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            listener = Some(Background {
                child,
                line,
                store: store.clone(),
                log,
            });
            continue;
        }
        let out = cmd.arg("-c").arg(&line).output().unwrap();
        assert!(
            out.status.success(),
            "README line {} failed ({}):\n  {original}\n  ran as: {line}\nstdout: {}\nstderr: {}",
            i + 1,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Some(l) = listener.take() {
        l.finish();
    }

    // The bundle crossed byte-identical, under the link key and the trust directory it made.
    let entries: Vec<PathBuf> = std::fs::read_dir(store.join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let files = entries[0].join("files/approved");
    assert_eq!(
        sluice_tests::blake3_tree(&files).unwrap(),
        sluice_tests::blake3_tree(&work.join("approved")).unwrap()
    );
    let key =
        sluice_common::linkkey::parse_link_key(&std::fs::read(work.join("link.key")).unwrap())
            .expect("link-keygen writes a key the loader reads");
    assert!(!key.is_public_default());
    assert_eq!(
        std::fs::read(work.join("link.key")).unwrap(),
        std::fs::read(root.join("etc/sluice/link.key")).unwrap(),
        "both sides hold the same key"
    );
}
