//! The Debian packages as `scripts/build-debs.sh` builds them, without installing anything (CI
//! installs them for real in `.ci/run`): three packages with no file in two of them, the
//! binaries, units, man pages and completions where they belong, maintainer scripts that parse,
//! units that `systemd-analyze verify` accepts against the packaged binary, and `--version`
//! naming the commit.
//!
//! Built around this test run's debug binaries with `--compress none` (quick); the packaged
//! layout does not depend on the binaries. Tools missing (dpkg-deb, systemd-analyze): skipped
//! with the reason, except under `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_tests::e2e::bins;
use sluice_tests::{build_bin, systemd_verify_findings, tool_or_skip, workspace_root};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the three packages into `out`; their paths by package name.
fn build_debs(dir: &Path) -> BTreeMap<String, PathBuf> {
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).expect("bin dir");
    std::fs::copy(&bins().recv, bin_dir.join("sluice-recv")).expect("copy sluice-recv");
    std::fs::copy(&bins().send, bin_dir.join("sluice-send")).expect("copy sluice-send");
    let generated = dir.join("generated");
    run(Command::new(build_bin("sluice-packaging", "sluice-packaging")).arg(&generated));
    let out = dir.join("debs");
    run(Command::new(workspace_root().join("scripts/build-debs.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--gen-dir")
        .arg(&generated)
        .arg("--out")
        .arg(&out)
        .args(["--compress", "none"]));
    std::fs::read_dir(&out)
        .expect("debs out dir")
        .map(|e| e.expect("dir entry").path())
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('_').next())
                .expect("package file name")
                .to_owned();
            (name, p)
        })
        .collect()
}

/// Regular files and symlinks a package installs (directories are shared freely).
fn files(deb: &Path) -> Vec<String> {
    run(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_owned())
        .collect()
}

#[test]
fn debs_hold_everything_once_and_their_units_verify() {
    let test = "debs_hold_everything_once_and_their_units_verify";
    if tool_or_skip(test, "dpkg-deb").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let debs = build_debs(dir.path());
    assert_eq!(
        debs.keys().collect::<Vec<_>>(),
        ["sluice-common", "sluice-recv", "sluice-send"],
        "{debs:?}"
    );

    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for (pkg, deb) in &debs {
        for f in files(deb) {
            if let Some(other) = owner.insert(f.clone(), pkg.clone()) {
                panic!("{f} is in both {other} and {pkg}: the packages would conflict");
            }
        }
    }
    for (path, pkg) in [
        ("/usr/bin/sluice-recv", "sluice-recv"),
        ("/usr/bin/sluice-send", "sluice-send"),
        ("/lib/systemd/system/sluice-recv.service", "sluice-recv"),
        ("/lib/systemd/system/sluice-send.service", "sluice-send"),
        ("/lib/systemd/system/sluice-send.timer", "sluice-send"),
        ("/usr/share/man/man1/sluice-recv.1.gz", "sluice-recv"),
        ("/usr/share/man/man1/sluice-recv-listen.1.gz", "sluice-recv"),
        ("/usr/share/man/man1/sluice-send-udp.1.gz", "sluice-send"),
        (
            "/usr/share/bash-completion/completions/sluice-recv",
            "sluice-recv",
        ),
        (
            "/usr/share/zsh/vendor-completions/_sluice-send",
            "sluice-send",
        ),
        (
            "/usr/share/fish/vendor_completions.d/sluice-recv.fish",
            "sluice-recv",
        ),
        (
            "/usr/share/sluice-recv/monitoring/alerts.yml",
            "sluice-recv",
        ),
        (
            "/usr/share/sluice-recv/monitoring/grafana-dashboard.json",
            "sluice-recv",
        ),
        (
            "/usr/share/doc/sluice-recv/examples/recv.toml",
            "sluice-recv",
        ),
        (
            "/usr/share/doc/sluice-send/examples/send.toml",
            "sluice-send",
        ),
        ("/usr/share/doc/sluice-recv/copyright", "sluice-recv"),
        ("/usr/lib/sysctl.d/90-sluice.conf", "sluice-common"),
        (
            "/usr/share/sluice/profiles/gbe-fibre-1500.toml",
            "sluice-common",
        ),
    ] {
        assert_eq!(
            owner.get(path).map(String::as_str),
            Some(pkg),
            "{path} should be in {pkg}"
        );
    }

    for pkg in ["sluice-recv", "sluice-send"] {
        let deb = &debs[pkg];
        let depends = run(Command::new("dpkg-deb")
            .arg("--field")
            .arg(deb)
            .arg("Depends"));
        assert!(depends.contains("sluice-common (="), "{pkg}: {depends}");
        assert!(
            depends.contains("adduser") && depends.contains("libc6"),
            "{pkg}: {depends}"
        );
        let control = dir.path().join(format!("{pkg}-control"));
        run(Command::new("dpkg-deb")
            .arg("--control")
            .arg(deb)
            .arg(&control));
        for script in ["postinst", "prerm", "postrm"] {
            run(Command::new("sh").arg("-n").arg(control.join(script)));
        }
        let postinst = std::fs::read_to_string(control.join("postinst")).expect("postinst");
        assert!(
            postinst.contains("adduser --system") && postinst.contains(pkg),
            "{pkg} postinst creates no service user:\n{postinst}"
        );
        // The packaged binary runs and names its commit.
        let root = dir.path().join(format!("{pkg}-root"));
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
        let version = run(Command::new(root.join("usr/bin").join(pkg)).arg("--version"));
        assert!(version.contains("(commit "), "{version}");
    }

    // The units as packaged, checked by systemd against the packaged binaries: the ExecStart
    // path is /usr/bin/<bin>, which the package installs; verify runs on a copy pointing at the
    // extracted binary (the host has no /usr/bin/sluice-*).
    let Some(analyze) = tool_or_skip(test, "systemd-analyze") else {
        return;
    };
    let units = dir.path().join("units");
    std::fs::create_dir_all(&units).expect("units dir");
    let mut to_verify = Vec::new();
    for (pkg, unit) in [
        ("sluice-recv", "sluice-recv.service"),
        ("sluice-send", "sluice-send.service"),
        ("sluice-send", "sluice-send.timer"),
    ] {
        let root = dir.path().join(format!("{pkg}-root"));
        let text = std::fs::read_to_string(root.join("lib/systemd/system").join(unit))
            .expect("packaged unit");
        if unit.ends_with(".service") {
            assert!(
                text.contains(&format!("ExecStart=/usr/bin/{pkg} ")),
                "{unit} must run the packaged /usr/bin/{pkg}"
            );
        }
        let local = text.replace(
            &format!("ExecStart=/usr/bin/{pkg}"),
            &format!("ExecStart={}", root.join("usr/bin").join(pkg).display()),
        );
        std::fs::write(units.join(unit), local).expect("write unit copy");
        to_verify.push(units.join(unit));
    }
    let (ours, report) = systemd_verify_findings(&analyze, &to_verify, "sluice-");
    assert!(ours.is_empty(), "systemd-analyze verify:\n{report}");
}
