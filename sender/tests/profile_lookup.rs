//! `--profile` resolution: the shipped profiles are compiled in (a host with only the binary can
//! use `--profile gbe-fibre-1500`), a site file of the same name wins, unknown names and
//! oversized files are refused with the places searched. Driven through `doctor --json`, whose
//! profile finding uses the same lookup as `udp` and `watch`.

use std::path::Path;
use std::process::Command;

fn profile_finding(profiles_dir: &Path, spec: &str) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-send"))
        .args(["doctor", "--json", "--profile", spec])
        .env("SLUICE_PROFILES", profiles_dir)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let finding = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "profile")
        .unwrap_or_else(|| panic!("no profile finding in {json}"))
        .clone();
    (out.status.code().unwrap(), finding)
}

/// The profile finding for `spec`, which must fail (and `doctor` with it): its detail.
fn failure_detail(profiles_dir: &Path, spec: &str) -> String {
    let (code, finding) = profile_finding(profiles_dir, spec);
    assert_ne!(code, 0);
    assert_eq!(finding["status"], "fail");
    finding["detail"].as_str().unwrap().to_owned()
}

#[test]
fn every_shipped_profile_is_built_in_verbatim() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hardware/profiles");
    let mut shipped = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_stem().unwrap().to_str().unwrap();
            let built_in = sluice_common::profile::builtin(name)
                .unwrap_or_else(|| panic!("{name} is shipped but not in profile::BUILTIN"));
            assert_eq!(built_in, std::fs::read_to_string(&path).unwrap(), "{name}");
            shipped += 1;
        }
    }
    assert_eq!(shipped, sluice_common::profile::BUILTIN.len());
}

#[test]
fn a_built_in_name_resolves_without_any_profile_directory() {
    let empty = tempfile::tempdir().unwrap();
    let (_, finding) = profile_finding(empty.path(), "gbe-fibre-1500");
    assert_eq!(finding["status"], "ok", "{finding}");
    let detail = finding["detail"].as_str().unwrap();
    // A host may have the .deb's /usr/share copy; otherwise the built-in one is used.
    assert!(
        detail.starts_with("built-in gbe-fibre-1500 parses")
            || detail.contains("/sluice/profiles/gbe-fibre-1500.toml parses"),
        "{detail}"
    );
}

#[test]
fn a_site_file_overrides_the_built_in_profile() {
    let site = tempfile::tempdir().unwrap();
    let text = sluice_common::profile::builtin("gbe-fibre-1500")
        .unwrap()
        .replace("window_blocks = 16", "window_blocks = 3");
    std::fs::write(site.path().join("gbe-fibre-1500.toml"), text).unwrap();
    let (_, finding) = profile_finding(site.path(), "gbe-fibre-1500");
    assert_eq!(finding["status"], "ok", "{finding}");
    let detail = finding["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!(
            "{}/gbe-fibre-1500.toml parses",
            site.path().display()
        )),
        "{detail}"
    );
}

#[test]
fn an_unknown_name_fails_naming_where_it_looked() {
    let empty = tempfile::tempdir().unwrap();
    let detail = failure_detail(empty.path(), "gbe-fibre-15OO");
    assert!(
        detail.contains("no diode profile named \"gbe-fibre-15OO\""),
        "{detail}"
    );
    assert!(
        detail.contains(&empty.path().display().to_string()),
        "{detail}"
    );
    assert!(
        detail.contains("gbe-fibre-1500, 10gbe-jumbo-9000"),
        "{detail}"
    );
}

#[test]
fn an_endless_profile_file_is_refused_without_reading_it_all() {
    let empty = tempfile::tempdir().unwrap();
    let detail = failure_detail(empty.path(), "/dev/zero");
    assert!(detail.contains("the limit is 65536"), "{detail}");
}

#[test]
fn udp_refuses_an_unknown_profile_with_a_usage_error() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-send"))
        .args(["udp", "--to", "127.0.0.1:9", "--trust", "."])
        .args(["--profile", "no-such-diode", "missing.sluice"])
        .env("SLUICE_PROFILES", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no diode profile named \"no-such-diode\""),
        "{stderr}"
    );
}
