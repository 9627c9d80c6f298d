//! Embeds the build's git commit, for `--version` (and so for support: which build is this?).
//!
//! Source: `SLUICE_GIT_COMMIT` when set (release scripts and source tarballs, which have no
//! `.git`: `scripts/repro-build.sh` sets it to the commit it archived, so both of its builds
//! embed the same string), else `git rev-parse HEAD` of this very checkout, else `unknown`.
//! Nothing else varies, so two builds of one commit stay bit-identical.
//! Both binaries show it through `sluice_host::VERSION`, so this is the one build script.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SLUICE_GIT_COMMIT");
    let commit = std::env::var("SLUICE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .map(|c| c.trim().to_owned())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    let short: String = commit.chars().take(12).collect();
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rustc-env=SLUICE_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=SLUICE_VERSION={version} (commit {short})");
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    // Builds run as root on a clone owned by someone else (CI): trust this checkout only.
    let safe = format!("safe.directory={}", root.display());
    let out = Command::new("git")
        .arg("-c")
        .arg(safe)
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}

fn git_commit() -> Option<String> {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let root = Path::new(&manifest).parent()?;
    // A source tarball unpacked inside some other checkout must not report that one's commit.
    let top = git(root, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != root.canonicalize().ok()? {
        return None;
    }
    let commit = git(root, &["rev-parse", "HEAD"])?;
    // Rebuild when HEAD moves: HEAD itself, the branch it points at, and packed refs.
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(path) = git(
            root,
            &["rev-parse", "--path-format=absolute", "--git-path", &name],
        ) && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}
