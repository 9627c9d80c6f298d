//! Removable-media path end to end with the real binaries: `sluice-send media` writes volumes,
//! `sluice-recv import` rebuilds, verifies and commits (docs/media.md).
//!
//! Sizes: the every-volume-loss test uses a 256 MiB bundle (`SLUICE_MEDIA_BIG_MIB`), the
//! damage test 48 MiB (`SLUICE_MEDIA_TEST_MIB`). Run in release (`cargo test --release -p sluice-tests --test
//! media_e2e`) for sensible runtimes; every test prints its timings.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use sluice_tests::e2e::{self, Bins, bins};
use sluice_tests::{TempStore, blake3_tree, output_text, run_with_deadline};

/// Files of `total` pseudo-random bytes (seeded ChaCha8), a few of them, plus a small one.
fn random_input(dir: &Path, total: usize, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let chunk = 16 << 20;
    let files = total.div_ceil(64 << 20).max(1);
    let per_file = total / files;
    let mut buf = vec![0u8; chunk];
    for i in 0..files {
        let mut f = std::fs::File::create(dir.join(format!("sub/part{i}.bin"))).unwrap();
        let mut left = per_file;
        while left > 0 {
            let n = left.min(chunk);
            rng.fill_bytes(&mut buf[..n]);
            f.write_all(&buf[..n]).unwrap();
            left -= n;
        }
    }
    std::fs::write(dir.join("README.txt"), b"media test\n").unwrap();
}

struct Fixture {
    ts: TempStore,
    bins: &'static Bins,
    input: PathBuf,
    trust: PathBuf,
    bundle: PathBuf,
    /// The secret link key both `media` and `import` use (made by `sluice-send link-keygen`).
    link_key: PathBuf,
}

/// `sluice-send keygen` of the officer key in `ts`, its public half the one trusted signer in
/// `ts/trust`: (trust directory, key path without extension).
fn officer(bins: &Bins, ts: &TempStore) -> (PathBuf, PathBuf) {
    let trust = ts.subdir("trust");
    let key = ts.path().join("officer");
    let out = run_with_deadline(
        Command::new(&bins.send)
            .arg("keygen")
            .arg("--out")
            .arg(&key),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    std::fs::copy(key.with_extension("pub"), trust.join("officer.pub")).unwrap();
    (trust, key)
}

impl Fixture {
    fn new(mib: usize, seed: u64) -> Fixture {
        let ts = TempStore::new();
        let bins = bins();
        let input = ts.subdir("payload");
        random_input(&input, mib << 20, seed);
        let (trust, key) = officer(bins, &ts);
        let bundle = ts.path().join("u.sluice");
        let out = run_with_deadline(
            Command::new(&bins.send)
                .args(["bundle", "create", "--channel", "updates", "--key"])
                .arg(key.with_extension("key"))
                .arg("--out")
                .arg(&bundle)
                .arg(&input),
            Duration::from_secs(600),
        );
        assert!(out.status.success(), "{}", output_text(&out));
        let link_key = ts.path().join("link.key");
        e2e::link_keygen(&link_key);
        Fixture {
            ts,
            bins,
            input,
            trust,
            bundle,
            link_key,
        }
    }

    /// Writes the bundle as volumes into a fresh directory; returns the volume paths in order.
    fn write_media(&self, name: &str, extra: &[&str]) -> (Vec<PathBuf>, serde_json::Value, f64) {
        let out_dir = self.ts.subdir(name);
        let start = Instant::now();
        let out = run_with_deadline(
            e2e::media_command(&self.bins.send, &out_dir, &self.trust)
                .arg("--link-key")
                .arg(&self.link_key)
                .arg("--json")
                .args(extra)
                .arg(&self.bundle),
            Duration::from_secs(900),
        );
        let secs = start.elapsed().as_secs_f64();
        assert!(out.status.success(), "{}", output_text(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let dir = out_dir.join(summary["bundles"][0]["directory"].as_str().unwrap());
        let mut vols: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        vols.sort();
        assert!(out_dir.join("SLUICE-MANIFEST.txt").is_file());
        assert!(out_dir.join("sluice-manifest.json").is_file());
        (vols, summary, secs)
    }

    fn import(&self, store: &Path, paths: &[PathBuf]) -> (Output, f64) {
        let key = ["--link-key".into(), self.link_key.display().to_string()];
        self.import_with(store, &key, paths)
    }

    /// `import` with `key_args` instead of the fixture's `--link-key`.
    fn import_with(&self, store: &Path, key_args: &[String], paths: &[PathBuf]) -> (Output, f64) {
        let start = Instant::now();
        let out = run_with_deadline(
            e2e::import_command(&self.bins.recv, store, &self.trust)
                .args(key_args)
                .args(paths),
            Duration::from_secs(900),
        );
        (out, start.elapsed().as_secs_f64())
    }

    /// The quarantine holds exactly the input tree (byte-identical), or nothing if `expect` is
    /// false.
    fn assert_quarantine(&self, store: &Path, expect: bool) {
        let q = store.join("quarantine");
        let entries: Vec<PathBuf> = match std::fs::read_dir(&q) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        if !expect {
            assert!(entries.is_empty(), "quarantine not empty: {entries:?}");
            return;
        }
        assert_eq!(entries.len(), 1, "{entries:?}");
        let got = blake3_tree(&entries[0].join("files").join("payload")).unwrap();
        let want = blake3_tree(&self.input).unwrap();
        assert_eq!(got, want, "quarantine differs from the input");
        let receipt = std::fs::read_to_string(entries[0].join("receipt.json")).unwrap();
        assert!(receipt.contains("\"media\""), "{receipt}");
    }
}

fn test_mib() -> usize {
    std::env::var("SLUICE_MEDIA_TEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

/// The every-volume-loss test: 256 MiB unless `SLUICE_MEDIA_BIG_MIB` says otherwise.
fn big_mib() -> usize {
    std::env::var("SLUICE_MEDIA_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn copy_to(dir: &Path, vols: &[&PathBuf]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    vols.iter()
        .map(|v| {
            let to = dir.join(v.file_name().unwrap());
            std::fs::copy(v, &to).unwrap();
            to
        })
        .collect()
}

#[test]
fn losing_any_one_of_four_volumes_is_survivable() {
    let mib = big_mib();
    let t = Instant::now();
    let fx = Fixture::new(mib, 1);
    eprintln!(
        "{mib} MiB input + bundle: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let (vols, summary, wsecs) = fx.write_media("medium", &["--volumes", "4"]);
    assert_eq!(vols.len(), 4, "{vols:?}");
    let b = &summary["bundles"][0];
    assert_eq!(b["survivable_volume_losses"], 1, "{summary}");
    assert_eq!(b["survival"], "any 1 of 4 volumes may be lost");
    eprintln!(
        "media write {mib} MiB: {wsecs:.2} s ({:.0} MB/s), overhead {} %",
        (mib << 20) as f64 / wsecs / 1e6,
        b["overhead_percent"]
    );
    for lost in 0..4 {
        let store = fx.ts.path().join(format!("store-{lost}"));
        let rest: Vec<PathBuf> = (0..4)
            .filter(|&i| i != lost)
            .map(|i| vols[i].clone())
            .collect();
        let (out, secs) = fx.import(&store, &rest);
        eprintln!(
            "import {mib} MiB without volume {}: {secs:.2} s ({:.0} MB/s)",
            lost + 1,
            (mib << 20) as f64 / secs / 1e6
        );
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("complete: bundle"));
        fx.assert_quarantine(&store, true);
        // Decided: nothing left staged.
        let media = store.join("staging/media");
        assert_eq!(std::fs::read_dir(media).unwrap().count(), 0);
    }
}

#[test]
fn volumes_imported_one_at_a_time_complete_on_the_last() {
    let fx = Fixture::new(24, 3);
    // 10 % overhead: every one of the 4 volumes is needed.
    let (vols, summary, _) = fx.write_media("medium", &["--volumes", "4", "--overhead", "10"]);
    assert_eq!(summary["bundles"][0]["survivable_volume_losses"], 0);
    let store = fx.ts.path().join("store");
    for (i, v) in vols.iter().enumerate() {
        // Each "disc" is its own directory, inserted one after another.
        let disc = copy_to(&fx.ts.path().join(format!("disc{i}")), &[v]);
        let (out, secs) = fx.import(&store, &[disc[0].parent().unwrap().to_path_buf()]);
        eprintln!("import of volume {} alone: {secs:.2} s", i + 1);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if i < 3 {
            assert_eq!(out.status.code(), Some(7), "{}", output_text(&out));
            assert!(
                stdout.contains("waiting for more volumes") && stdout.contains("of 4"),
                "{stdout}"
            );
            fx.assert_quarantine(&store, false);
            // The staged copy survives the end of the process.
            let staged = std::fs::read_dir(store.join("staging/media"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            assert_eq!(std::fs::read_dir(staged).unwrap().count(), i + 1);
        } else {
            assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
            assert!(stdout.contains("complete: bundle"), "{stdout}");
            fx.assert_quarantine(&store, true);
        }
    }
    // A volume of an accepted bundle again: a duplicate record, nothing else.
    let (out, _) = fx.import(&store, &[vols[0].clone()]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("duplicate"));
    assert_eq!(
        std::fs::read_dir(store.join("staging/media"))
            .unwrap()
            .count(),
        0
    );
    let audit = sluice_tests::store::audit_records(&store);
    assert!(audit.iter().any(|r| r.outcome == "duplicate"), "{audit:?}");
}

fn flip(path: &Path, offsets: &[u64]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    for &o in offsets {
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, o).unwrap();
        b[0] ^= 0x5a;
        f.write_all_at(&b, o).unwrap();
    }
}

fn truncate_half(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len / 2 + 1234)
        .unwrap();
}

#[test]
fn damaged_and_truncated_volumes_complete_within_the_overhead_or_wait() {
    let fx = Fixture::new(test_mib(), 4);
    let (vols, summary, _) = fx.write_media("medium", &["--volumes", "4"]);
    let frame_len = summary["bundles"][0]["frame_bytes"].as_u64().unwrap();
    let records = std::fs::metadata(&vols[0]).unwrap().len() / frame_len;

    // Within: volume 2's header is damaged (the volume is lost), volume 1 has 20 flipped
    // records spread over the file, and trailing garbage is appended to volume 4.
    let a = fx.ts.path().join("case-a");
    let disc = copy_to(&a, &vols.iter().collect::<Vec<_>>());
    flip(&disc[1], &[20]);
    let spread: Vec<u64> = (0..20)
        .map(|i| 68 + (i * records / 20) * frame_len + 100)
        .collect();
    flip(&disc[0], &spread);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&disc[3])
        .unwrap()
        .write_all(&[0xAB; 5000])
        .unwrap();
    let store_a = fx.ts.path().join("store-a");
    let (out, secs) = fx.import(&store_a, std::slice::from_ref(&a));
    eprintln!("import with a damaged header and 20 flipped records: {secs:.2} s");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("integrity check") && err.contains(&disc[1].display().to_string()),
        "{}",
        output_text(&out)
    );
    assert!(err.contains("5000 bytes after the last record"), "{err}");
    // The damaged header is reported (exit 3 for that input) but the bundle completes.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("complete: bundle"),
        "{}",
        output_text(&out)
    );
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    fx.assert_quarantine(&store_a, true);

    // Within: one volume truncated to half, the others intact.
    let b = fx.ts.path().join("case-b");
    let disc = copy_to(&b, &vols.iter().collect::<Vec<_>>());
    truncate_half(&disc[2]);
    let store_b = fx.ts.path().join("store-b");
    let (out, _) = fx.import(&store_b, std::slice::from_ref(&b));
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated copy"));
    fx.assert_quarantine(&store_b, true);

    // Beyond: volume 2 lost (bad header) and volume 4 truncated to half → waiting, nothing in
    // quarantine; then the intact volume 4 arrives and replaces the truncated staged copy.
    let c = fx.ts.path().join("case-c");
    let disc = copy_to(&c, &vols.iter().collect::<Vec<_>>());
    flip(&disc[1], &[40]);
    truncate_half(&disc[3]);
    let store_c = fx.ts.path().join("store-c");
    let (out, _) = fx.import(&store_c, std::slice::from_ref(&c));
    assert_eq!(out.status.code(), Some(7), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains("waiting for more volumes") && stdout.contains("have volumes {1,3,4} of 4"),
        "{stdout}"
    );
    fx.assert_quarantine(&store_c, false);
    let (out, _) = fx.import(&store_c, &[vols[3].clone()]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    fx.assert_quarantine(&store_c, true);
}

#[test]
fn hostile_media_entries_are_named_and_skipped_without_hanging() {
    let ts = TempStore::new();
    let bins = bins();
    let (trust, _key) = officer(bins, &ts);
    let passwd_before = std::fs::read("/etc/passwd").unwrap();

    let m = ts.subdir("medium");
    std::fs::write(m.join("notes.txt"), b"hello").unwrap();
    std::fs::write(m.join("junk.sluicevol"), vec![0x42; 10_000]).unwrap();
    std::fs::write(m.join("short.sluicevol"), b"SLUICEVL").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", m.join("passwd.sluicevol")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", m.join("passwd")).unwrap();
    std::fs::create_dir(m.join("x.sluicevol")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", m.join("zero.sluicevol")).unwrap();
    let fifo = m.join("fifo.sluicevol");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let nested = ts.subdir("medium/a/b");
    std::os::unix::fs::symlink("/etc", nested.join("etc-link")).unwrap();

    let store = ts.path().join("store");
    let start = Instant::now();
    let out = run_with_deadline(
        e2e::import_command(&bins.recv, &store, &trust)
            // What is on the medium is the point here, not the key.
            .arg("--insecure-public-link-key")
            .arg(&m)
            .arg(&fifo)
            .arg("/dev/null")
            .arg(m.join("passwd.sluicevol"))
            .arg(ts.path().join("does-not-exist")),
        Duration::from_secs(60),
    );
    eprintln!("hostile import: {:.2} s", start.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    for (name, why) in [
        ("junk.sluicevol", "bad magic"),
        ("short.sluicevol", "shorter than a volume header"),
        ("passwd.sluicevol", "symbolic link"),
        ("x.sluicevol", "is a directory"),
        ("zero.sluicevol", "symbolic link"),
        ("fifo.sluicevol", "FIFO"),
        ("/dev/null", "character device"),
        ("does-not-exist", "cannot read"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(name) && l.contains(why)),
            "no line naming {name} with {why:?}:\n{err}"
        );
    }
    assert!(err.contains("no usable spool volume"), "{err}");
    assert!(
        !store.join("quarantine").exists()
            || std::fs::read_dir(store.join("quarantine")).unwrap().count() == 0
    );
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);
}

/// Media have no loopback address: `media` and `import` refuse the public key unless
/// --insecure-public-link-key is given (exit 2, a help line naming `link-keygen`, no store
/// created), and volumes written under one secret key are never accepted under another key or
/// the public one.
#[test]
fn media_without_a_secret_key_is_refused_and_a_mismatched_key_accepts_nothing() {
    let fx = Fixture::new(1, 41);
    let out = run_with_deadline(
        e2e::media_command(&fx.bins.send, &fx.ts.subdir("public"), &fx.trust).arg(&fx.bundle),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("public link key"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("help:") && l.contains("sluice-send link-keygen --out")),
        "{err}"
    );

    let (vols, _, _) = fx.write_media("medium", &[]);
    let store = fx.ts.path().join("store");
    let (out, _) = fx.import_with(&store, &[], &vols);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--insecure-public-link-key"), "{err}");
    assert!(
        !store.exists(),
        "the refusal comes before the store is created"
    );

    let other = fx.ts.path().join("other.key");
    e2e::link_keygen(&other);
    for key_args in [
        vec!["--link-key".to_string(), other.display().to_string()],
        vec!["--insecure-public-link-key".to_string()],
    ] {
        let (out, _) = fx.import_with(&store, &key_args, &vols);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{key_args:?}: {}",
            output_text(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no usable spool volume"), "{err}");
        fx.assert_quarantine(&store, false);
    }

    let (out, _) = fx.import(&store, &vols);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    fx.assert_quarantine(&store, true);
}
