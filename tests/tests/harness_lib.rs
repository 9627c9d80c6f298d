//! The harness helpers themselves: binary lookup, tree hashing, process watching, and the relay
//! binary's signal handling and stats output.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_tests::{ProcessWatch, TempStore, bin_path, blake3_tree, free_udp_port};

#[test]
fn bin_path_finds_the_relay() {
    let p = bin_path("sluice-relay");
    assert!(p.is_file(), "{p:?}");
    assert_eq!(
        p,
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_sluice-relay"))
    );
    assert!(sluice_tests::try_bin_path("no-such-binary-here").is_none());
    assert_ne!(free_udp_port(), 0);
    // Building from inside a running test works (cargo released its lock) and is a no-op here.
    assert_eq!(sluice_tests::build_bin("sluice-tests", "sluice-relay"), p);
}

#[test]
fn blake3_tree_compares_trees() {
    let s = TempStore::new();
    let a = s.random_tree("a", 1, 7, &[0, 10, 100_000]);
    let b = s.random_tree("b", 1, 7, &[0, 10, 100_000]);
    let ta = blake3_tree(&a).unwrap();
    assert_eq!(ta.len(), 7);
    assert!(ta.contains_key("d0/f0000.bin"));
    assert_eq!(ta, blake3_tree(&b).unwrap());
    s.write("b/d1/f0001.bin", b"changed");
    assert_ne!(ta, blake3_tree(&b).unwrap());
}

#[test]
fn process_watch_sees_cpu_rss_and_fds() {
    // A shell that burns some CPU and holds a few fds.
    let mut child = Command::new("bash")
        .args([
            "-c",
            "exec 3</dev/null 4</dev/null; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
        ])
        .spawn()
        .unwrap();
    let w = ProcessWatch::start(child.id(), Duration::from_millis(10));
    let (status, st) = w.wait(&mut child).unwrap();
    assert!(status.success());
    assert!(st.cpu_secs > 0.0, "{st:?}");
    assert!(st.peak_rss_kib > 0, "{st:?}");
    assert!(st.peak_fds >= 5, "{st:?}");
}

#[test]
fn relay_binary_prints_stats_on_sigint() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let store = TempStore::new();
    let stats_file = store.path().join("stats.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-relay"))
        .args(["--listen", "127.0.0.1:0", "--target"])
        .arg(sink.local_addr().unwrap().to_string())
        .args(["--loss", "50", "--seed", "3", "--stats"])
        .arg(&stats_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_string();
    let src = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..100 {
        src.send_to(b"hello", &addr).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_file).unwrap()).unwrap();
    assert_eq!(v["received"], 100);
    assert_eq!(
        v["dropped"].as_u64().unwrap() + v["forwarded"].as_u64().unwrap(),
        100
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"received\":100"));
}
