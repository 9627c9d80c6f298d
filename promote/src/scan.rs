//! The scan stage: each configured scanner runs on the entry's `files/` directory with a clean
//! environment, no stdin, its own process group and a deadline. The entry is re-checked against
//! its receipt afterwards, so a scanner that changed a byte fails the stage.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Scanner;

/// Output kept from a scanner (the tail of stdout+stderr), for the reason text.
const KEEP_OUTPUT: usize = 2000;

/// PATH given to scanners (and every tool sluice-promote runs).
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, PartialEq, Eq)]
pub enum ScanOutcome {
    Clean(String),
    /// The scanner said no (or failed): the reason.
    Failed(String),
}

/// `argv` with `{files}` replaced in every argument.
pub fn expand(run: &[String], files: &Path) -> Vec<String> {
    let f = files.to_string_lossy();
    run.iter().map(|a| a.replace("{files}", &f)).collect()
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    if s.len() <= KEEP_OUTPUT {
        return s.to_string();
    }
    let mut cut = s.len() - KEEP_OUTPUT;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    format!("…{}", &s[cut..])
}

pub fn run_scanner(s: &Scanner, files: &Path) -> ScanOutcome {
    let argv = expand(&s.run, files);
    let shown = argv.join(" ");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", CLEAN_PATH)
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ScanOutcome::Failed(format!("scanner `{shown}` could not start: {e}")),
    };
    // Drain both pipes on threads so a chatty scanner cannot block on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut b);
        }
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(o) = err.as_mut() {
            let _ = o.read_to_end(&mut b);
        }
        b
    });
    let deadline = Instant::now() + Duration::from_secs(s.timeout_secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => {
                // The whole process group: scanners fork helpers.
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return ScanOutcome::Failed(format!("scanner `{shown}`: wait failed: {e}")),
        }
    };
    let mut output = t_out.join().unwrap_or_default();
    output.extend(t_err.join().unwrap_or_default());
    let text = tail(&output);
    match status {
        None => ScanOutcome::Failed(format!(
            "scanner `{shown}` did not finish within {} s (killed)",
            s.timeout_secs
        )),
        Some(st) if st.code() == Some(s.ok_exit) => {
            ScanOutcome::Clean(format!("`{}` exit {}", argv[0], s.ok_exit))
        }
        Some(st) => ScanOutcome::Failed(format!(
            "scanner `{shown}` exited {} (clean is {}): {text}",
            st.code()
                .map_or_else(|| format!("by signal ({st})"), |c| c.to_string()),
            s.ok_exit
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(run: &[&str], timeout: u64) -> Scanner {
        Scanner {
            run: run.iter().map(|s| s.to_string()).collect(),
            timeout_secs: timeout,
            ok_exit: 0,
        }
    }

    #[test]
    fn exit_codes_timeout_placeholder_and_clean_environment() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            run_scanner(&sc(&["true"], 5), d.path()),
            ScanOutcome::Clean(_)
        ));
        match run_scanner(&sc(&["sh", "-c", "echo FOUND virus; exit 1"], 5), d.path()) {
            ScanOutcome::Failed(why) => {
                assert!(why.contains("FOUND virus") && why.contains("exited 1"))
            }
            o => panic!("{o:?}"),
        }
        match run_scanner(&sc(&["sleep", "30"], 1), d.path()) {
            ScanOutcome::Failed(why) => assert!(why.contains("did not finish")),
            o => panic!("{o:?}"),
        }
        // {files} expands; the environment is clean (no HOME, no inherited variables).
        let probe = format!("test -d '{}' && test -z \"$HOME\"", "{files}");
        assert!(matches!(
            run_scanner(&sc(&["sh", "-c", &probe], 5), d.path()),
            ScanOutcome::Clean(_)
        ));
        assert!(matches!(
            run_scanner(&sc(&["/nonexistent/scanner"], 5), d.path()),
            ScanOutcome::Failed(_)
        ));
    }
}
