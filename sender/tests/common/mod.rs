//! What the sender's CLI tests share: running the built `sluice-send` in a directory and
//! asserting it succeeded, one way for every test file that drives the binary.

use std::path::Path;
use std::process::{Command, Output};

/// `sluice-send ARGS` run in `dir`, its output captured. `CI` and `SLUICE_LOG` are removed from
/// its environment, so neither the runner's nor a developer's settings change what it prints.
pub fn send(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice-send"))
        .args(args)
        .current_dir(dir)
        .env_remove("CI")
        .env_remove("SLUICE_LOG")
        .output()
        .expect("run sluice-send")
}

/// Asserts the command exited 0, showing its stderr otherwise.
pub fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// In `dir`: the officer key `alice`, `trust/` holding its public half, and the directory
/// `content` (relative to `dir`, already filled) signed by alice on channel `c` into `out`.
/// The bundle and trust directory every send-side CLI test starts from.
pub fn alice_signs(dir: &Path, content: &str, out: &str) {
    ok(&send(dir, &["keygen", "--out", "alice"]));
    std::fs::create_dir_all(dir.join("trust")).unwrap();
    std::fs::copy(dir.join("alice.pub"), dir.join("trust/alice.pub")).unwrap();
    ok(&send(
        dir,
        &[
            "bundle",
            "create",
            "--key",
            "alice.key",
            "--channel",
            "c",
            "--out",
            out,
            content,
        ],
    ));
}
