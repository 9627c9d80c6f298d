//! `sluice-send doctor` against a fake /proc and /sys tree and a fake `ip`: a small wmem_max,
//! an MTU that does not match the profile and a missing static neighbour must each be named
//! with its fix; the MTU mismatch fails the run.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sluice_host::fakehost::{JUMBO_PROFILE, assert_says, find, run_json, write, write_routes};

/// A fake low-side host; `neighbour`: the state `ip neigh` reports for the diode peer, if any.
fn fake_tree(root: &Path, neighbour: Option<&str>) {
    let neigh_json = neighbour.map_or("[]".to_string(), |state| {
        format!(
            r#"[{{"dst":"10.0.0.2","dev":"diode0","lladdr":"02:00:00:00:00:02","state":["{state}"]}}]"#
        )
    });
    write(&root.join("proc/sys/net/core/wmem_max"), "212992\n");
    write_routes(
        root,
        "diode0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
    );
    write(&root.join("sys/class/net/diode0/mtu"), "1500\n");
    write(&root.join("profile.toml"), JUMBO_PROFILE);
    let ip = root.join("fake-ip");
    write(
        &ip,
        &format!("#!/bin/sh\ncat <<'JSON'\n{neigh_json}\nJSON\n"),
    );
    std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn doctor(root: &Path, ip: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut doctor = Command::new(env!("CARGO_BIN_EXE_sluice-send"));
    doctor
        .args(["doctor", "--to", "10.0.0.2:7000", "--json", "--profile"])
        .arg(root.join("profile.toml"))
        .args(extra)
        .env("SLUICE_IP", ip);
    run_json(doctor, root)
}

/// [`doctor`] with `--link-key` naming a file `link.key` in `root` that holds `key`.
fn doctor_with_key(root: &Path, ip: &str, key: &[u8]) -> (i32, serde_json::Value) {
    let path = root.join("link.key");
    std::fs::write(&path, key).unwrap();
    doctor(
        root,
        &root.join(ip),
        &["--link-key", path.to_str().unwrap()],
    )
}

#[test]
fn small_wmem_mtu_mismatch_and_dynamic_neighbour_are_named_with_fixes() {
    let dir = tempfile::tempdir().unwrap();
    fake_tree(dir.path(), Some("REACHABLE"));
    let (code, json) = doctor(dir.path(), &dir.path().join("fake-ip"), &[]);
    assert_eq!(code, 1, "{json}");

    let wmem = find(&json, "wmem_max");
    assert_eq!(wmem["status"], "warn", "{wmem}");
    let fix = wmem["fix"].as_str().unwrap();
    assert!(
        fix.contains("sysctl -w net.core.wmem_max=") && fix.contains("90-sluice.conf"),
        "{fix}"
    );

    let mtu = find(&json, "mtu");
    assert_eq!(mtu["status"], "fail", "{mtu}");
    assert_says(mtu, "detail", "diode0");
    assert_says(mtu, "fix", "ip link set dev diode0 mtu 9000");

    assert_eq!(find(&json, "route")["status"], "ok", "{json}");
    let neigh = find(&json, "static-neighbour");
    assert_eq!(neigh["status"], "warn", "{neigh}");
    assert_says(neigh, "fix", "nud permanent");
}

#[test]
fn permanent_neighbour_matching_mtu_and_good_key_pass() {
    let dir = tempfile::tempdir().unwrap();
    fake_tree(dir.path(), Some("PERMANENT"));
    write(&dir.path().join("sys/class/net/diode0/mtu"), "9000\n");
    write(&dir.path().join("proc/sys/net/core/wmem_max"), "16777216\n");
    let (code, json) = doctor_with_key(dir.path(), "fake-ip", &[7u8; 32]);
    assert_eq!(code, 0, "{json}");
    for check in [
        "profile",
        "wmem_max",
        "route",
        "mtu",
        "static-neighbour",
        "link-key",
    ] {
        assert_eq!(find(&json, check)["status"], "ok", "{json}");
    }
}

#[test]
fn missing_ip_and_short_link_key_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    fake_tree(dir.path(), None);
    let (code, json) = doctor_with_key(dir.path(), "no-such-ip", &[7u8; 16]);
    assert_eq!(code, 1);
    let neigh = find(&json, "static-neighbour");
    assert_eq!(neigh["status"], "warn");
    assert!(
        neigh["detail"]
            .as_str()
            .unwrap()
            .starts_with("could not check"),
        "{neigh}"
    );
    let k = find(&json, "link-key");
    assert_eq!(k["status"], "fail");
    assert_says(k, "detail", "16 bytes");
}

/// Without --link-key `udp` would use the public default key, which it refuses toward a
/// non-loopback receiver: doctor fails on it with the command that makes a key.
#[test]
fn the_public_link_key_fails_toward_a_non_loopback_receiver() {
    let dir = tempfile::tempdir().unwrap();
    fake_tree(dir.path(), None);
    let (code, json) = doctor(dir.path(), &dir.path().join("fake-ip"), &[]);
    assert_eq!(code, 1);
    let k = find(&json, "link-key");
    assert_eq!(k["status"], "fail", "{k}");
    assert_says(k, "fix", "sluice-send link-keygen --out");
}
