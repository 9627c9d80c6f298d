//! `--config FILE` drives the real `sluice-recv listen` and `sluice-send udp` on loopback; a flag
//! overrides the file; unknown keys are usage errors naming the key. And `udp` run as cron or
//! systemd runs it (stdout/stderr not a terminal) prints no progress bar, only its summary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sluice_tests::{TempStore, build_bin, free_udp_addr};

fn run(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        // Only the missing terminal may turn the progress bar off here.
        .env_remove("CI")
        .stdin(Stdio::null())
        .output()
        .expect("run binary")
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// No carriage returns or escape sequences: nothing a progress bar would draw.
fn assert_plain(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !text.contains('\r') && !text.contains('\u{1b}'),
        "terminal control characters in non-terminal output: {text:?}"
    );
}

#[test]
fn config_files_drive_listen_and_udp_and_flags_override_them() {
    let send = build_bin("sluice-send", "sluice-send");
    let recv = build_bin("sluice-recv", "sluice-recv");
    let t = TempStore::new();
    let dir = t.path();
    ok(&run(&send, dir, &["keygen", "--out", "alice"]));
    let trust = t.subdir("trust");
    std::fs::copy(dir.join("alice.pub"), trust.join("alice.pub")).unwrap();
    let mut bundles: Vec<PathBuf> = Vec::new();
    for i in 1..=2u64 {
        t.write(format!("src{i}/f.txt"), format!("{i}\n").as_bytes());
        let name = format!("b{i}.sluice");
        ok(&run(
            &send,
            dir,
            &[
                "bundle",
                "create",
                "--key",
                "alice.key",
                "--channel",
                "cfg",
                "--seq",
                &i.to_string(),
                "--out",
                &name,
                &format!("src{i}"),
            ],
        ));
        bundles.push(dir.join(name));
    }
    let addr = free_udp_addr().to_string();

    // The receiver takes everything from its file, including --max-bundles and --json.
    t.write(
        "recv.toml",
        format!(
            "[listen]\nbind = \"{addr}\"\nstore = \"store\"\ntrust = \"trust\"\nmax_bundles = 2\n\
             json = true\nidle_timeout = 30\n"
        )
        .as_bytes(),
    );
    let mut listener = Command::new(&recv)
        .args(["--config"])
        .arg(dir.join("recv.toml"))
        .arg("listen")
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while !dir.join("store/state/status.json").is_file() {
        assert!(Instant::now() < end, "listener from config did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The sender's file says 2 passes at 100 Mbit/s to the listener.
    t.write(
        "send.toml",
        format!(
            "[send]\nto = \"{addr}\"\ntrust = \"trust\"\nrate = \"100M\"\npasses = 2\n\
             heartbeat_interval = 0.5\n"
        )
        .as_bytes(),
    );
    let cfg = dir.join("send.toml");
    let cfg = cfg.to_str().unwrap();
    // File values alone.
    let o = run(&send, dir, &["--config", cfg, "udp", "--json", "b1.sluice"]);
    ok(&o);
    assert_plain(&o.stdout);
    assert_plain(&o.stderr);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON summary");
    assert_eq!(j["passes"], 2, "{j}");
    assert_eq!(j["destination"], addr.as_str());
    assert_eq!(j["rate_limit_bits_per_sec"], 100_000_000);
    // A flag wins over the file; the human summary is plain text too.
    let o = run(
        &send,
        dir,
        &["--config", cfg, "udp", "--passes", "1", "b2.sluice"],
    );
    ok(&o);
    assert_plain(&o.stdout);
    assert_plain(&o.stderr);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("1 pass(es)"), "{text}");
    let o = run(
        &send,
        dir,
        &[
            "--config",
            cfg,
            "udp",
            "--passes",
            "1",
            "--json",
            "b2.sluice",
        ],
    );
    ok(&o);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["passes"], 1, "{j}");

    // max_bundles = 2 from the file: the listener stops by itself after two decisions.
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = listener.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = listener.kill();
            panic!("listener did not stop after max_bundles from its config");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut listener.stdout.take().unwrap(), &mut out).unwrap();
    let outcomes: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json = true from the config"))
        .collect();
    let accepted = outcomes
        .iter()
        .filter(|o| o["outcome"] == "accepted")
        .count();
    assert_eq!(accepted, 2, "{out}");
    assert!(dir.join("store/quarantine").read_dir().unwrap().count() == 2);
}

#[test]
fn unknown_sender_config_keys_exit_2_naming_the_key() {
    let send = build_bin("sluice-send", "sluice-send");
    let t = TempStore::new();
    let dir = t.path();
    t.write(
        "send.toml",
        b"[send]\nto = \"127.0.0.1:9\"\nrates = \"1M\"\n",
    );
    let o = run(&send, dir, &["--config", "send.toml", "udp", "x.sluice"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rates") && err.contains("send.toml"), "{err}");
    t.write("send.toml", b"[watch]\npoll_secs = 1\n");
    let o = run(&send, dir, &["--config", "send.toml", "watch"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("poll_secs"));
    // A required option missing from both says where it may go.
    t.write("send.toml", b"[watch]\npoll = 1\n");
    let o = run(&send, dir, &["--config", "send.toml", "watch"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--to") && err.contains("[send]"), "{err}");
}
