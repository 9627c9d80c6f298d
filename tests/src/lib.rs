//! Shared harness for Sluice's end-to-end tests: locating the built binaries, temporary stores,
//! the seeded impairment relay, the namespace diode emulator, and resource measurements.
//!
//! - binaries: [`build_bin`]`(package, bin)`, [`bin_path`]`(name)`, [`try_bin_path`]
//! - addresses and files: [`free_udp_port`], [`free_udp_addr`], [`TempStore`], [`blake3_tree`]
//! - commands: [`run_with_deadline`] (a hang fails instead of stalling), [`output_text`] (exit
//!   code, stdout and stderr for a failure message), [`tool_or_skip`]; every skip goes through
//!   [`skip_unless_ci`] (a printed reason, a failure under `CI=true`);
//!   [`systemd_verify_findings`] (what `systemd-analyze verify` says about our units)
//! - the namespace diode: [`require_root_or_skip`] (skips with a reason; fails under `CI=true`),
//!   [`Netns::up`] → `command(Side, prog)` (`ip netns exec`), `run_in(Side, closure)` (a thread
//!   inside the namespace), `status()` counters, `down()`/drop
//! - the impairment relay: [`Relay::bind`] → `spawn()` → [`RelayHandle::stop`] → [`RelayStats`];
//!   the pure [`Impairer`] for socket-free tests; the `sluice-relay` binary for processes
//! - resources: [`ProcessWatch`] (peak RSS from VmHWM, peak open fds, CPU seconds)
//! - end to end ([`e2e`]): `bins()` (sluice-send/-recv built without raptorq's slow debug
//!   self-checks), keys, `mixed_tree`, `make_bundle`, `send_udp`, `assert_delivered` and
//!   `drive_sender` (the sans-IO transport sender over a socket, bypassing sender-side
//!   verification)
//! - the listener ([`listener`]): the one `sluice-recv listen` fixture (JSON outcomes, status,
//!   metrics, log, resources, SIGTERM/SIGKILL), for the e2e and the attack tests alike
//! - the store ([`store`]): typed readers of audit records, receipts and rejected records (the
//!   receiver's own record types), quarantine and staging listings, `audit verify`
//! - pure pieces (impairment model, simulated diode, sender drive loops) come from
//!   `sluice-testkit`
//!
//! Tests must not depend on timing: pace senders, wait for counters, use generous deadlines.

pub mod attack;
pub mod e2e;
pub mod listener;
pub mod netns;
pub mod relay;
pub mod store;
pub mod watch;

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use netns::{DiodeOptions, DiodeStatus, Netns, Side, require_root_or_skip};
pub use relay::{ImpairConfig, Impairer, Relay, RelayHandle, RelayStats};
pub use watch::{ProcessStats, ProcessWatch};

/// The workspace root (the directory holding `hardware/`, `tests/`, ...).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Candidate directories holding built binaries, best first: the profile directory of the running
/// test executable (`target/<profile>/deps/x` → `target/<profile>`), then `$CARGO_TARGET_DIR` and
/// `<workspace>/target` with `release` and `debug`.
pub fn bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        let mut d = exe.parent().map(Path::to_path_buf);
        while let Some(dir) = d {
            if dir.file_name().is_some_and(|n| n == "deps") {
                d = dir.parent().map(Path::to_path_buf);
                continue;
            }
            dirs.push(dir);
            break;
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    for p in ["debug", "release"] {
        dirs.push(target.join(p));
    }
    dirs
}

/// Path of a built workspace binary such as `sluice-send`, `sluice-recv` or `sluice-relay`.
/// Panics with the places it looked (and the cargo command to build it) when it is missing.
pub fn bin_path(name: &str) -> PathBuf {
    try_bin_path(name).unwrap_or_else(|| {
        panic!(
            "binary {name:?} not found in {:?}; build it first (cargo build --bin {name}, or --release \
             to match a release test run)",
            bin_dirs()
        )
    })
}

/// Like [`bin_path`] but `None` when the binary has not been built.
pub fn try_bin_path(name: &str) -> Option<PathBuf> {
    bin_dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Build `bin` of workspace package `package` with the profile of the running test (debug, or
/// release when the test executable lives in `target/release`) and return its path. Cargo only
/// builds other packages' binaries for a test when asked, so e2e tests call this first; it is a
/// quick no-op when the binary is up to date. Uses `$CARGO` (set by cargo) or `cargo`.
pub fn build_bin(package: &str, bin: &str) -> PathBuf {
    let release = bin_dirs()
        .first()
        .is_some_and(|d| d.file_name().is_some_and(|n| n == "release"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("running cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    bin_path(bin)
}

/// A UDP port that was free a moment ago on 127.0.0.1 (bind to port 0 and release).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// `127.0.0.1:<free port>`.
pub fn free_udp_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_udp_port()))
}

/// A temporary directory for one test (a receiver store, an outbox, input trees), removed on drop
/// unless [`TempStore::keep`] was called (or `SLUICE_KEEP_TMP=1` is set) for post-mortems.
pub struct TempStore {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TempStore {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sluice-test-")
            .tempdir()
            .expect("create temp dir");
        let path = dir.path().to_path_buf();
        let mut s = Self {
            dir: Some(dir),
            path,
        };
        if std::env::var_os("SLUICE_KEEP_TMP").is_some_and(|v| v == "1") {
            s.keep();
        }
        s
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// `path()/rel`, creating the directory.
    pub fn subdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.path.join(rel);
        std::fs::create_dir_all(&p).expect("create subdir");
        p
    }
    /// Write a file below the store, creating parents.
    pub fn write(&self, rel: impl AsRef<Path>, bytes: &[u8]) -> PathBuf {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&p, bytes).expect("write file");
        p
    }
    /// Fill `rel` with `files` files of pseudo-random content (deterministic in `seed`), sizes
    /// cycling through `sizes`, spread over a few subdirectories. Returns the directory.
    pub fn random_tree(
        &self,
        rel: impl AsRef<Path>,
        seed: u64,
        files: usize,
        sizes: &[usize],
    ) -> PathBuf {
        use rand::{RngCore, SeedableRng};
        let root = self.subdir(rel);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for i in 0..files {
            let size = sizes[i % sizes.len().max(1)];
            let mut data = vec![0u8; size];
            rng.fill_bytes(&mut data);
            let p = root.join(format!("d{}/f{i:04}.bin", i % 3));
            std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
            std::fs::write(p, data).expect("write");
        }
        root
    }
    /// Keep the directory after the test (its path is printed).
    pub fn keep(&mut self) -> &Path {
        if let Some(d) = self.dir.take() {
            let p = d.keep();
            eprintln!("keeping test directory {}", p.display());
        }
        &self.path
    }
}

impl Default for TempStore {
    fn default() -> Self {
        Self::new()
    }
}

/// BLAKE3 of every regular file under `dir`, keyed by its path relative to `dir` (with `/`
/// separators, sorted): two trees are byte-identical iff their maps are equal. Symlinks and other
/// non-regular files are an error (a received tree must not contain them).
pub fn blake3_tree(dir: &Path) -> io::Result<BTreeMap<String, blake3::Hash>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            let path = entry.path();
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let mut h = blake3::Hasher::new();
                h.update_reader(std::fs::File::open(&path)?)?;
                let rel = path
                    .strip_prefix(dir)
                    .expect("below dir")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(rel, h.finalize());
            } else {
                return Err(io::Error::other(format!(
                    "{} is neither a regular file nor a directory",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// The one way a test skips for a missing prerequisite: prints `SKIPPED {test}: {reason}` and
/// returns false, except under `CI=true`, where it panics instead (CI runs as root with every
/// tool installed, so a skip there would hide a broken setup). Every `*_or_skip` check ends here.
pub fn skip_unless_ci(test: &str, reason: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: CI=true but {reason}"
    );
    eprintln!("SKIPPED {test}: {reason}");
    false
}

/// The tool's path, or `None` (skip) with the reason; under `CI=true` a missing tool fails.
pub fn tool_or_skip(test: &str, tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let package = match tool {
            "promtool" => "prometheus",
            "systemd-analyze" => "systemd",
            other => other,
        };
        skip_unless_ci(
            test,
            &format!("`{tool}` is not installed (Debian package: {package}; .ci/run installs it)"),
        );
    }
    found
}

/// `systemd-analyze verify UNITS`: the report lines that mention `ours`, and the whole report
/// for the failure message. Without a running systemd (containers) verify can still complain
/// about the host's own unit tree, so only findings about our units count.
pub fn systemd_verify_findings(
    analyze: &Path,
    units: &[PathBuf],
    ours: &str,
) -> (Vec<String>, String) {
    let out = Command::new(analyze)
        .arg("verify")
        .args(units)
        .output()
        .expect("run systemd-analyze verify");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let findings = report
        .lines()
        .filter(|l| l.contains(ours))
        .map(str::to_string)
        .collect();
    (findings, report)
}

/// A finished command's exit code, stdout and stderr as one text, for assertion messages: every
/// test that checks a command's exit code shows the same three things when it fails.
pub fn output_text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` (stdin closed, stdout and stderr captured) and returns its output, killing it and
/// panicking with its stderr if it has not finished within `deadline`: a hang fails the test
/// instead of stalling CI. Any exit code is returned; the caller asserts the one it expects.
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} did not finish within {deadline:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
