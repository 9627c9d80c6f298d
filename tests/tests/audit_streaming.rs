//! Issue 12 (1, last sentence): every store open, `status` and `audit verify` read the audit
//! log as a stream, so their memory does not grow with the log. Measured on the real
//! `sluice-recv` with the kernel's own high-water mark (VmHWM from /proc/<pid>/status,
//! `ProcessWatch`) against a 200 000-line, ~111 MB log of `rejected` records (measured: 7.5–8.0 MiB): the bound is
//! [`RSS_BOUND_KIB`], well under the log's size (reading it whole needed more than the log).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use std::time::Duration;

use sluice_tests::{ProcessWatch, TempStore, build_bin};

const LINES: u64 = 200_000;
/// Peak RSS allowed for each command: the binary, its allocator and one 64 KiB read buffer,
/// with room to spare; the log alone is ~111 MB.
const RSS_BOUND_KIB: u64 = 40 * 1024;

/// Writes a valid hash chain of `LINES` rejected records (each carrying ~300 bytes of detail).
fn write_log(store: &Path) -> u64 {
    std::fs::create_dir_all(store).unwrap();
    let f = std::fs::File::create(store.join("audit.jsonl")).unwrap();
    let mut w = std::io::BufWriter::new(f);
    let mut prev = "0".repeat(64);
    let detail = "x".repeat(300);
    let mut total = 0u64;
    for seq in 1..=LINES {
        let line = format!(
            "{{\"schema\":\"sluice.audit/1\",\"seq\":{seq},\"prev\":\"{prev}\",\
             \"time\":\"2026-09-21T00:00:00.000Z\",\"time_unix_ms\":1790000000000,\
             \"outcome\":\"rejected\",\
             \"object_id\":\"{:032x}\",\"reason\":\"bad_signature\",\"detail\":\"{detail}\"}}",
            seq
        );
        prev = blake3::hash(line.as_bytes()).to_hex().to_string();
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        total += line.len() as u64 + 1;
    }
    w.flush().unwrap();
    total
}

fn peak_kib(dir: &Path, cmd: &mut Command) -> (u64, String) {
    // Output to files, so a large report cannot block the child on a full pipe.
    let out_path = dir.join("out.txt");
    let err_path = dir.join("err.txt");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn");
    let watch = ProcessWatch::start(child.id(), Duration::from_millis(5));
    let (status, stats) = watch.wait(&mut child).expect("wait");
    let text = format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        status.code(),
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path)
            .unwrap_or_default()
            .chars()
            .take(4000)
            .collect::<String>()
    );
    assert!(status.success(), "{cmd:?}: {text}");
    // VmHWM is the kernel's high-water mark, so any sample after the peak sees it; a process
    // that exited before the first sample reports nothing, which must not pass silently.
    assert!(
        stats.samples > 0 && stats.peak_rss_kib > 0,
        "no sample: {stats:?}"
    );
    (stats.peak_rss_kib, text)
}

#[test]
fn audit_verify_status_and_store_open_stream_a_200k_line_log() {
    let tmp = TempStore::new();
    let store = tmp.path().join("store");
    let log_bytes = write_log(&store);
    let bin = build_bin("sluice-recv", "sluice-recv");
    // `audit verify`: the whole chain checked.
    let (verify, out) = peak_kib(
        tmp.path(),
        Command::new(&bin)
            .args(["audit", "verify", "--json", "--store"])
            .arg(&store),
    );
    assert!(out.contains(&format!("\"audit_records\":{LINES}")), "{out}");
    // `staging list` opens the store (lock, audit chain, reconciliation).
    let (open, out) = peak_kib(
        tmp.path(),
        Command::new(&bin)
            .args(["staging", "list", "--json", "--store"])
            .arg(&store),
    );
    assert!(out.contains("\"objects\":[]"), "{out}");
    // `status`.
    let (status, out) = peak_kib(
        tmp.path(),
        Command::new(&bin)
            .args(["status", "--json", "--store"])
            .arg(&store),
    );
    assert!(out.contains(&format!("{LINES}")), "{out}");
    eprintln!(
        "audit log {:.1} MB, {LINES} lines: peak RSS audit verify {:.1} MiB, store open {:.1} MiB, \
         status {:.1} MiB",
        log_bytes as f64 / 1e6,
        verify as f64 / 1024.0,
        open as f64 / 1024.0,
        status as f64 / 1024.0
    );
    assert!(
        log_bytes > 2 * RSS_BOUND_KIB * 1024,
        "the log must dwarf the bound"
    );
    for (what, kib) in [
        ("audit verify", verify),
        ("store open", open),
        ("status", status),
    ] {
        assert!(
            kib <= RSS_BOUND_KIB,
            "{what}: peak RSS {kib} KiB over {RSS_BOUND_KIB} KiB"
        );
    }
}
