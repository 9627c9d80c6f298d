//! The one `sluice-recv listen` fixture of the e2e and attack tests: start it (directly or
//! through a wrapper such as `ip netns exec`), wait until it is bound, read its JSON outcome
//! lines, its `state/status.json`, its Prometheus metrics and its log, measure its resources,
//! and stop it (SIGTERM with the exit status, or SIGKILL).
//!
//! The listener always runs with `--json` (stdout is the outcome stream) and `-v` (stderr goes
//! to the log file). It is ready once `status.json` carries its pid (the socket is bound and
//! the store open) and, with `--metrics`, once the endpoint answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::watch::{ProcessStats, ProcessWatch};

/// How to start a listener.
#[derive(Clone, Debug)]
pub struct ListenOptions {
    pub bind: SocketAddr,
    pub store: PathBuf,
    pub trust: PathBuf,
    pub extra: Vec<String>,
    /// `--metrics ADDR` (reachable from the test only when the listener runs in its namespace).
    pub metrics: Option<SocketAddr>,
    /// Where stderr goes (appended); default `listen-<port>.log` beside the store.
    pub log: Option<PathBuf>,
}

impl ListenOptions {
    /// Bind `bind`, store and trust as given, no extra arguments, no metrics, default log.
    pub fn new(bind: SocketAddr, store: &Path, trust: &Path) -> Self {
        Self {
            bind,
            store: store.to_path_buf(),
            trust: trust.to_path_buf(),
            extra: Vec::new(),
            metrics: None,
            log: None,
        }
    }
}

/// A free TCP port on loopback (for `--metrics`).
pub fn free_tcp_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind tcp 127.0.0.1:0")
}

/// Polls `f` every 50 ms until it is true or `deadline` passes; true if it became true.
pub fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `sluice-recv listen --json`: its outcome lines, status, metrics, resources, log.
pub struct Listener {
    child: Option<Child>,
    watch: Option<ProcessWatch>,
    outcomes_rx: mpsc::Receiver<Value>,
    /// Outcome lines received so far (see [`Listener::wait_outcomes`]).
    pub outcomes: Vec<Value>,
    pub addr: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub store: PathBuf,
    pub log: PathBuf,
}

impl Listener {
    /// Starts `sluice-recv listen` (in `cmd`, which is `sluice-recv` itself or a wrapper such as
    /// `ip netns exec NS sluice-recv`) and waits until it is ready.
    pub fn start(mut cmd: Command, opts: &ListenOptions) -> Listener {
        let log = opts.log.clone().unwrap_or_else(|| {
            opts.store
                .with_file_name(format!("listen-{}.log", opts.bind.port()))
        });
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open listener log");
        cmd.arg("-v")
            .arg("listen")
            .arg("--json")
            .arg("--bind")
            .arg(opts.bind.to_string())
            .arg("--store")
            .arg(&opts.store)
            .arg("--trust")
            .arg(&opts.trust);
        if let Some(m) = opts.metrics {
            cmd.arg("--metrics").arg(m.to_string());
        }
        cmd.args(&opts.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let watch = ProcessWatch::start(child.id(), Duration::from_millis(20));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, outcomes_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("listener stdout (not JSON): {line}"),
                }
            }
        });
        let me = Listener {
            child: Some(child),
            watch: Some(watch),
            outcomes_rx,
            outcomes: Vec::new(),
            addr: opts.bind,
            metrics: opts.metrics,
            store: opts.store.clone(),
            log,
        };
        // The listener binds before it writes its first status (within a second), with its pid.
        let pid = u64::from(me.pid());
        let ready = wait_until(Duration::from_secs(30), || {
            me.status()["pid"].as_u64() == Some(pid)
                && (me.metrics.is_none() || me.metrics_text().is_some())
        });
        assert!(ready, "listener did not start: {}", me.log_tail());
        me
    }

    /// `BIN listen` on a free loopback port with `--metrics` on a free port, stderr appended to
    /// `<log_dir>/listen.log`.
    pub fn spawn(bin: &Path, store: &Path, trust: &Path, log_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn_at(bin, crate::free_udp_addr(), store, trust, log_dir, extra)
    }

    /// Like [`Listener::spawn`] on a given address (to restart on the same port).
    pub fn spawn_at(
        bin: &Path,
        addr: SocketAddr,
        store: &Path,
        trust: &Path,
        log_dir: &Path,
        extra: &[&str],
    ) -> Self {
        let opts = ListenOptions {
            extra: extra.iter().map(|s| s.to_string()).collect(),
            metrics: Some(free_tcp_addr()),
            log: Some(log_dir.join("listen.log")),
            ..ListenOptions::new(addr, store, trust)
        };
        Self::start(Command::new(bin), &opts)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits until `n` outcomes in total were printed (or `timeout`), returns them all.
    pub fn wait_outcomes(&mut self, n: usize, timeout: Duration) -> &[Value] {
        let deadline = Instant::now() + timeout;
        while self.outcomes.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .outcomes_rx
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(v) => self.outcomes.push(v),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if left.is_zero() {
                        panic!(
                            "timed out waiting for {n} outcome(s); got {:?}\nlistener log: {}",
                            self.outcomes,
                            self.log_tail()
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "listener exited after {:?}; log: {}",
                    self.outcomes,
                    self.log_tail()
                ),
            }
        }
        &self.outcomes
    }

    /// Any outcomes printed so far without waiting.
    pub fn poll_outcomes(&mut self) -> &[Value] {
        while let Ok(v) = self.outcomes_rx.try_recv() {
            self.outcomes.push(v);
        }
        &self.outcomes
    }

    /// `STORE/state/status.json` as the listener last wrote it (every second); `Null` before
    /// the first.
    pub fn status(&self) -> Value {
        std::fs::read(self.store.join("state/status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// A counter from status.json (`counters.<name>`), 0 when absent.
    pub fn status_counter(&self, name: &str) -> u64 {
        self.status()["counters"][name].as_u64().unwrap_or(0)
    }

    /// Waits for a status written after `after_unix_ms` and returns it.
    pub fn fresh_status(&self, after_unix_ms: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status();
            if s["updated_at_unix_ms"].as_u64().unwrap_or(0) > after_unix_ms
                && s["running"] == Value::Bool(true)
            {
                return s;
            }
            assert!(Instant::now() < deadline, "no fresh status.json: {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The Prometheus page, or `None` without `--metrics` or while the endpoint does not answer.
    pub fn metrics_text(&self) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.metrics?, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.starts_with("HTTP/1.").then_some(body)
    }

    /// The value of an unlabelled metric (or the sum over a labelled one's samples matching
    /// `name{…}`), 0 when absent from the page.
    pub fn metric(&self, name: &str) -> f64 {
        let Some(page) = self.metrics_text() else {
            return 0.0;
        };
        metric_value(&page, name)
    }

    /// SIGTERM, wait; returns the exit code and the resources seen.
    pub fn stop(mut self) -> (i32, ProcessStats) {
        let mut child = self.child.take().expect("running");
        sigterm(&child);
        let watch = self.watch.take().expect("watch");
        let (status, stats) = watch.wait(&mut child).expect("wait for listener");
        (status.code().unwrap_or(-1), stats)
    }

    /// SIGTERM, then wait (up to 60 s, then SIGKILL and panic) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        sigterm(&child);
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                if let Some(w) = self.watch.take() {
                    w.stop();
                }
                return status;
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let status = child.wait().expect("wait after SIGKILL");
                panic!(
                    "listener ignored SIGTERM for 60 s ({status}); log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, reap; nothing gets a chance to be saved. Returns the resources seen.
    pub fn kill9(mut self) -> ProcessStats {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let watch = self.watch.take().expect("watch");
        let (_, stats) = watch.wait(&mut child).expect("wait for listener");
        stats
    }

    /// SIGKILL and reap, without the resource figures.
    pub fn kill(self) {
        self.kill9();
    }

    /// Resources seen so far.
    pub fn stats(&self) -> ProcessStats {
        self.watch.as_ref().map(|w| w.stats()).unwrap_or_default()
    }

    /// The listener's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 40 lines of the log.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

fn sigterm(child: &Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sum of the samples of metric `name` (with or without labels) on a Prometheus page.
pub fn metric_value(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let base = key.split('{').next()?;
            (base == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}
