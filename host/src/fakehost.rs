//! A fake host for the tests of both `doctor`s (`receiver/tests/doctor.rs`,
//! `sender/tests/doctor.rs`): files of a fake /proc and /sys tree, a jumbo-frame profile, and a
//! doctor run under `SLUICE_PROC_ROOT`/`SLUICE_SYS_ROOT` with its `--json` findings. Only built
//! with the `fake-host` feature, which only those tests turn on.

use std::path::Path;
use std::process::Command;

/// A profile whose MTU (9000) no fake interface has unless a test writes it.
pub const JUMBO_PROFILE: &str = r#"
name = "jumbo-test"
description = "test profile"
mtu = 9000
line_rate_bps = 1_000_000_000
datagram_bytes = 8972
recommended_overhead_percent = 10
recommended_rate_bps = 900_000_000
window_blocks = 16
passes = 1
"#;

/// Writes `root/proc/net/route`: its header, a default route via eth0, then `route` (one line of
/// the kernel's format, for the interface under test).
pub fn write_routes(root: &Path, route: &str) {
    write(
        &root.join("proc/net/route"),
        &format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n{route}"
        ),
    );
}

/// Writes `text` at `path`, creating its parent directories.
pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Runs `doctor` (already given its flags, `--json` among them) against the fake tree under
/// `root`: its exit code and its JSON output.
pub fn run_json(mut doctor: Command, root: &Path) -> (i32, serde_json::Value) {
    let out = doctor
        .env("SLUICE_PROC_ROOT", root.join("proc"))
        .env("SLUICE_SYS_ROOT", root.join("sys"))
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), json)
}

/// The finding named `check` in a `--json` report.
pub fn find<'a>(json: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding in {json}"))
}

/// Asserts that a finding's `field` (`detail` or `fix`) says `needle`, showing the finding if not.
pub fn assert_says(finding: &serde_json::Value, field: &str, needle: &str) {
    let text = finding[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {finding}"));
    assert!(text.contains(needle), "{finding}");
}
