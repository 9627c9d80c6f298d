//! `sluice-recv doctor` against a fake /proc and /sys tree: a tiny rmem_max and an MTU that does
//! not match the profile must both be named, with their fixes, and fail the run.

use std::path::Path;
use std::process::Command;

use sluice_host::fakehost::{JUMBO_PROFILE, assert_says, find, run_json, write, write_routes};

/// A fake host: 127.0.0.0/8 on `lo` (so the granted-buffer probe can really bind), MTU 1500.
fn fake_tree(root: &Path, rmem_max: u64) {
    let proc_ = root.join("proc");
    write(
        &proc_.join("sys/net/core/rmem_max"),
        &format!("{rmem_max}\n"),
    );
    write(&proc_.join("sys/net/core/rmem_default"), "212992\n");
    write(
        &proc_.join("sys/net/ipv4/udp_mem"),
        "190000\t253000\t380000\n",
    );
    write_routes(
        root,
        "lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n",
    );
    write(&root.join("sys/class/net/lo/mtu"), "1500\n");
    write(&root.join("profile.toml"), JUMBO_PROFILE);
    let officer = sluice_common::bundle::keys::SecretKey::from_seed(&[7; 32]);
    write(
        &root.join("trust/officer.pub"),
        &officer.public().to_sluice_text("officer"),
    );
    std::fs::create_dir_all(root.join("store")).unwrap();
}

fn doctor(root: &Path) -> (i32, serde_json::Value) {
    let mut doctor = Command::new(env!("CARGO_BIN_EXE_sluice-recv"));
    doctor
        .arg("doctor")
        .arg("--store")
        .arg(root.join("store"))
        .arg("--trust")
        .arg(root.join("trust"))
        .args(["--bind", "127.0.0.1:7000", "--json", "--profile"])
        .arg(root.join("profile.toml"));
    run_json(doctor, root)
}

#[test]
fn tiny_rmem_and_mtu_mismatch_are_named_with_fixes() {
    let dir = tempfile::tempdir().unwrap();
    fake_tree(dir.path(), 212_992);
    let (code, json) = doctor(dir.path());
    assert_eq!(code, 1, "{json}");

    let rmem = find(&json, "rmem_max");
    assert_eq!(rmem["status"], "fail", "{rmem}");
    assert_says(rmem, "detail", "212992");
    let fix = rmem["fix"].as_str().unwrap();
    assert!(fix.contains("sysctl -w net.core.rmem_max="), "{fix}");
    assert!(fix.contains("hardware/sysctl/90-sluice.conf"), "{fix}");

    let mtu = find(&json, "mtu");
    assert_eq!(mtu["status"], "fail", "{mtu}");
    let detail = mtu["detail"].as_str().unwrap();
    assert!(
        detail.contains("lo") && detail.contains("1500") && detail.contains("9000"),
        "{detail}"
    );
    assert_says(mtu, "fix", "ip link set dev lo mtu 9000");

    for ok in ["profile", "trust", "store-writable", "clock"] {
        assert_eq!(find(&json, ok)["status"], "ok", "{json}");
    }
    // Every finding has the four documented keys.
    for f in json["findings"].as_array().unwrap() {
        for k in ["check", "status", "detail", "fix"] {
            assert!(f.get(k).is_some(), "{f} lacks {k}");
        }
    }
}

#[test]
fn big_rmem_and_matching_mtu_pass_those_checks() {
    let dir = tempfile::tempdir().unwrap();
    fake_tree(dir.path(), 67_108_864);
    write(&dir.path().join("sys/class/net/lo/mtu"), "9000\n");
    let (_, json) = doctor(dir.path());
    assert_eq!(find(&json, "rmem_max")["status"], "ok", "{json}");
    assert_eq!(find(&json, "mtu")["status"], "ok", "{json}");
    assert!(find(&json, "mtu")["fix"].is_null());
}

#[test]
fn empty_trust_dir_fails() {
    let dir = tempfile::tempdir().unwrap();
    fake_tree(dir.path(), 67_108_864);
    std::fs::remove_file(dir.path().join("trust/officer.pub")).unwrap();
    let (code, json) = doctor(dir.path());
    assert_eq!(code, 1);
    let trust = find(&json, "trust");
    assert_eq!(trust["status"], "fail");
    assert_says(trust, "detail", "no .pub");
}

/// `doctor` fails on the public default link key wherever `listen` would refuse it (a
/// non-loopback --bind), warns on loopback where `listen` allows it, and passes a secret key
/// read by the same loader.
#[test]
fn the_public_link_key_fails_unless_the_bind_is_loopback() {
    let dir = tempfile::tempdir().unwrap();
    fake_tree(dir.path(), 67_108_864);
    let run = |bind: &str, key: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-recv"));
        cmd.arg("doctor")
            .arg("--store")
            .arg(dir.path().join("store"))
            .arg("--trust")
            .arg(dir.path().join("trust"))
            .args(["--json", "--bind", bind])
            .env("SLUICE_PROC_ROOT", dir.path().join("proc"))
            .env("SLUICE_SYS_ROOT", dir.path().join("sys"));
        if let Some(k) = key {
            cmd.arg("--link-key").arg(k);
        }
        let out = cmd.output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code().unwrap(), find(&json, "link-key").clone())
    };
    let (code, f) = run("10.0.0.2:7000", None);
    assert_eq!(code, 1);
    assert_eq!(f["status"], "fail", "{f}");
    assert_says(&f, "fix", "sluice-send link-keygen --out");
    let (_, f) = run("127.0.0.1:7000", None);
    assert_eq!(f["status"], "warn", "{f}");

    let public = dir.path().join("public.key");
    std::fs::write(
        &public,
        sluice_common::transport::wire::LinkKey::public_default().as_bytes(),
    )
    .unwrap();
    let (_, f) = run("10.0.0.2:7000", Some(&public));
    assert_eq!(f["status"], "fail", "{f}");

    // 64 hex digits and a newline, as link-keygen writes: accepted exactly as `listen` does.
    let secret = dir.path().join("link.key");
    std::fs::write(&secret, format!("{}\n", "3c".repeat(32))).unwrap();
    let (_, f) = run("10.0.0.2:7000", Some(&secret));
    assert_eq!(f["status"], "ok", "{f}");
    let (code, f) = run("10.0.0.2:7000", Some(&dir.path().join("missing.key")));
    assert_eq!(code, 1);
    assert_eq!(f["status"], "fail", "{f}");
}
