//! Issue 15, safe default: `sluice-send udp` with no `--rate` and no `--profile` paces at the
//! gbe-fibre-1500 profile's rate and says so (INFO line, `rate_source` in the JSON summary);
//! unpaced needs an explicit `--rate 0`, which warns. Sent to a local UDP socket nobody reads.

use std::net::UdpSocket;
use std::path::Path;

mod common;

use common::{alice_signs, ok, send};

/// A signed bundle (`b.sluice`, 200 kB of content) and a trust directory for it in `d`.
fn fixture(d: &Path) {
    std::fs::create_dir_all(d.join("payload")).unwrap();
    std::fs::write(d.join("payload/a.txt"), vec![7u8; 200_000]).unwrap();
    alice_signs(d, "payload", "b.sluice");
}

#[test]
fn no_rate_paces_at_the_gbe_profile_rate_and_rate_zero_warns() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fixture(d);
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = sink.local_addr().unwrap().to_string();
    let base = ["udp", "--to", &to, "--trust", "trust", "--json"];

    let mut args = vec!["-v"];
    args.extend(base);
    args.push("b.sluice");
    let o = send(d, &args);
    ok(&o);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json summary");
    assert_eq!(j["rate_limit_bits_per_sec"], 909_000_000u64, "{j}");
    assert_eq!(j["rate_source"], "default", "{j}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pacing at 909 Mbit/s") && err.contains("gbe-fibre-1500"),
        "{err}"
    );
    assert!(!err.contains("unpaced"), "{err}");

    let mut args = base.to_vec();
    args.extend(["--rate", "0", "b.sluice"]);
    let o = send(d, &args);
    ok(&o);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json summary");
    assert!(j["rate_limit_bits_per_sec"].is_null(), "{j}");
    assert_eq!(j["rate_source"], "rate", "{j}");
    // Warned without -v.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sending unpaced"), "{err}");

    let mut args = base.to_vec();
    args.extend(["--profile", "10gbe-jumbo-9000", "--mtu", "1500", "b.sluice"]);
    let o = send(d, &args);
    ok(&o);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json summary");
    assert_eq!(j["rate_source"], "profile", "{j}");
}
