//! The hostile side of the test rig: a running `sluice-recv listen` to attack, and the attacker's
//! tools (frames crafted with the real wire encoders, a real [`Sender`] driven in memory so its
//! frames can be captured and replayed, signed bundles built with or without the path policy).
//!
//! - [`Listener::spawn`] starts `sluice-recv listen` on a free loopback port with `--metrics`, logs
//!   in files; [`Listener::status`], [`Listener::metric`], [`Listener::alive`],
//!   [`Listener::terminate`] (SIGTERM and exit status), [`Listener::kill`] (SIGKILL).
//! - [`Signer`]: a fixed-seed officer key with a trust directory; [`Signer::bundle`] builds with
//!   the real builder, [`Signer::careless_bundle`] signs any header (`write_unchecked`).
//! - [`sender_frames`]: every frame a real [`Sender`] emits for one object (a "capture").
//! - [`data_frame`] / [`end_frame`]: hand-made frames under any key and geometry.
//! - [`Blaster`]: paced UDP sending; [`wait_until`]: polling with a generous deadline.
//! - [`audit_records`], [`rejected_records`], [`quarantine_ids`], [`staging_files`]: store reads.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sluice_common::bundle::build::{self, BundleSpec, MemSource};
use sluice_common::bundle::keys::SecretKey;
use sluice_common::bundle::{BundleId, Entry, EntryKind, FORMAT_VERSION, Header};
use sluice_common::transport::params::ObjectParams;
use sluice_common::transport::send::{Sender, SenderConfig};
use sluice_common::transport::wire::{self, DataHeader, LinkKey, ObjectEnd};

/// The bundle id of bundle bytes (blake3 of the signed header), without any trust decision.
pub fn bundle_id(bundle: &[u8]) -> BundleId {
    sluice_common::bundle::inspect(bundle)
        .expect("a bundle with a readable envelope")
        .0
        .id
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

/// A running `sluice-recv listen`.
pub struct Listener {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub store: PathBuf,
    pub log: PathBuf,
}

impl Listener {
    /// `sluice-recv -v listen --bind <free> --store STORE --trust TRUST --metrics <free> EXTRA…`,
    /// stdout and stderr appended to `<log_dir>/listen.log`.
    pub fn spawn(bin: &Path, store: &Path, trust: &Path, log_dir: &Path, extra: &[&str]) -> Self {
        let addr = crate::free_udp_addr();
        Self::spawn_at(bin, addr, store, trust, log_dir, extra)
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
        let metrics = free_tcp_addr();
        let log = log_dir.join("listen.log");
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("open listener log")
        };
        let child = Command::new(bin)
            .arg("-v")
            .arg("listen")
            .arg("--bind")
            .arg(addr.to_string())
            .arg("--store")
            .arg(store)
            .arg("--trust")
            .arg(trust)
            .arg("--metrics")
            .arg(metrics.to_string())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(open())
            .stderr(open())
            .spawn()
            .expect("spawn sluice-recv listen");
        let l = Listener {
            child,
            addr,
            metrics,
            store: store.to_path_buf(),
            log,
        };
        // Ready when it serves metrics (after the socket is bound and the store opened).
        let ready = wait_until(Duration::from_secs(30), || l.metrics_text().is_some());
        assert!(ready, "listener did not come up; log:\n{}", l.log_text());
        l
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The listener's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `STORE/state/status.json`, if written yet.
    pub fn status(&self) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.store.join("state/status.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// A counter from status.json (`counters.<name>`), 0 when absent.
    pub fn status_counter(&self, name: &str) -> u64 {
        self.status()
            .and_then(|s| s["counters"][name].as_u64())
            .unwrap_or(0)
    }

    /// The Prometheus page, or `None` when the endpoint does not answer (yet).
    pub fn metrics_text(&self) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(2)).ok()?;
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

    /// SIGTERM, then wait (up to 60 s, then SIGKILL) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let status = self.child.wait().expect("wait after SIGKILL");
                panic!(
                    "listener ignored SIGTERM for 60 s ({status}); log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
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

/// An officer key (fixed seed) and a trust directory trusting it as `alice`.
pub struct Signer {
    pub key: SecretKey,
    pub trust: PathBuf,
}

impl Signer {
    /// Writes `dir/alice.pub` and a policy (`require_increasing_sequence = false`, so tests can
    /// send bundles in any order; rollback is covered by the store's own tests).
    pub fn new(dir: &Path) -> Self {
        let key = SecretKey::from_seed(&[0x41; 32]);
        std::fs::create_dir_all(dir).expect("trust dir");
        std::fs::write(dir.join("alice.pub"), key.public().to_sluice_text("alice"))
            .expect("write alice.pub");
        std::fs::write(
            dir.join("policy.toml"),
            "[defaults]\nallow_any_trusted_signer = true\nrequire_increasing_sequence = false\n",
        )
        .expect("write policy.toml");
        Signer {
            key,
            trust: dir.to_path_buf(),
        }
    }

    /// A bundle built by the real builder (path policy applied) from `(path, bytes)` files.
    pub fn bundle(&self, channel: &str, sequence: u64, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut src = MemSource::default();
        for (p, b) in files {
            src.0.insert((*p).to_string(), b.clone());
        }
        let spec = BundleSpec {
            channel: channel.into(),
            sequence,
            created: 1_790_000_000,
            expires: None,
            note: None,
        };
        let mut out = Vec::new();
        build::build(
            &spec,
            src.entries(),
            &self.key,
            &mut src,
            &mut out,
            &mut |_, _| {},
        )
        .expect("build bundle");
        out
    }

    /// A validly signed bundle whose manifest is exactly `entries` (kind, path, body) in the
    /// given order: no path policy, no sorting, no parents added. A careless signer.
    pub fn careless_bundle(
        &self,
        channel: &str,
        sequence: u64,
        entries: &[(EntryKind, &str, &[u8])],
    ) -> Vec<u8> {
        let header = Header {
            format_version: FORMAT_VERSION,
            channel: channel.into(),
            sequence,
            created: 1_790_000_000,
            expires: None,
            note: None,
            signer: self.key.key_id(),
            entries: entries
                .iter()
                .map(|(kind, path, body)| Entry {
                    kind: *kind,
                    path: (*path).to_string(),
                    size: if *kind == EntryKind::File {
                        body.len() as u64
                    } else {
                        0
                    },
                    blake3: if *kind == EntryKind::File {
                        *blake3::hash(body).as_bytes()
                    } else {
                        [0; 32]
                    },
                    executable: false,
                })
                .collect(),
        };
        let bodies: Vec<&[u8]> = entries
            .iter()
            .filter(|(k, _, _)| *k == EntryKind::File)
            .map(|(_, _, b)| *b)
            .collect();
        build::write_unchecked(&header, &self.key, &bodies)
    }
}

/// Every frame a real [`Sender`] emits for `object` (data, object-end and heartbeat frames, in
/// send order): what a capture socket on the diode link would record. The object id is the
/// bundle's (`BundleId::object_id`), as `sluice-send` uses.
pub fn sender_frames(
    key: &LinkKey,
    object: &[u8],
    object_id: [u8; 16],
    symbol_size: u16,
    block_size: u32,
    overhead_percent: u32,
    passes: u16,
) -> Vec<Vec<u8>> {
    let mut config = SenderConfig::new(key.clone(), [0x5E; 16], symbol_size, block_size);
    config.overhead_percent = overhead_percent;
    config.passes = passes;
    config.heartbeat_interval = Duration::from_secs(3600);
    let now = Instant::now();
    let mut sender = Sender::new(config, now, 1_790_000_000_000).expect("sender config");
    sender
        .queue_object(now, object_id, object.len() as u64, 1_790_000_000_000)
        .expect("queue object");
    let mut frames = Vec::new();
    let mut buf = vec![0u8; wire::MAX_FRAME_LEN];
    let mut idle = 0;
    while !sender.is_finished() {
        while let Some(r) = sender.poll_read() {
            let start = r.offset as usize;
            let data = object[start..start + r.len].to_vec();
            sender.handle_read(r, data).expect("read answer");
        }
        match sender.poll_transmit(now, &mut buf) {
            Some(n) => {
                frames.push(buf[..n].to_vec());
                idle = 0;
            }
            None => {
                idle += 1;
                assert!(idle < 1000, "sender stalled");
            }
        }
    }
    frames
}

/// A data frame under `key` with arbitrary (validated by the encoder) geometry.
pub fn data_frame(
    key: &LinkKey,
    params: ObjectParams,
    block: u32,
    esi: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![0u8; wire::data_frame_len(params.symbol_size)];
    let n = wire::encode_data(key, &DataHeader { params, block, esi }, payload, &mut out)
        .expect("encodable data frame");
    out.truncate(n);
    out
}

/// An object-end frame under `key`.
pub fn end_frame(key: &LinkKey, params: ObjectParams, pass: u16, passes: u16) -> Vec<u8> {
    let mut out = vec![0u8; wire::OBJECT_END_LEN];
    wire::encode_object_end(
        key,
        &ObjectEnd {
            params,
            pass,
            passes,
            frames_sent_this_pass: 1,
        },
        &mut out,
    )
    .expect("encodable end frame");
    out
}

/// `frame` with its tag's last byte flipped (what a forger without the key produces).
pub fn bad_tag(mut frame: Vec<u8>) -> Vec<u8> {
    if let Some(b) = frame.last_mut() {
        *b ^= 0x55;
    }
    frame
}

/// A UDP socket that paces itself: a short sleep every `burst` datagrams, so loopback sends stay
/// below what the listener drains (tests assert outcomes, never rates).
pub struct Blaster {
    pub socket: UdpSocket,
    pub to: SocketAddr,
    pub burst: usize,
    pub pause: Duration,
    pub sent: u64,
}

impl Blaster {
    pub fn new(to: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind attacker socket");
        Blaster {
            socket,
            to,
            burst: 64,
            pause: Duration::from_micros(500),
            sent: 0,
        }
    }

    /// Sends one datagram (errors such as ECONNREFUSED from a dead listener are ignored here;
    /// liveness is asserted separately).
    pub fn send(&mut self, datagram: &[u8]) {
        let _ = self.socket.send_to(datagram, self.to);
        self.sent += 1;
        if self.burst > 0 && self.sent % self.burst as u64 == 0 {
            std::thread::sleep(self.pause);
        }
    }

    pub fn send_all<'a>(&mut self, frames: impl IntoIterator<Item = &'a Vec<u8>>) {
        for f in frames {
            self.send(f);
        }
    }
}

fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Every record of `STORE/audit.jsonl`.
pub fn audit_records(store: &Path) -> Vec<serde_json::Value> {
    read_jsonl(&store.join("audit.jsonl"))
}

/// Audit records with `decision == d`.
pub fn decisions(store: &Path, d: &str) -> Vec<serde_json::Value> {
    audit_records(store)
        .into_iter()
        .filter(|r| r["decision"] == d)
        .collect()
}

/// Every `STORE/rejected/*.json` record.
pub fn rejected_records(store: &Path) -> Vec<serde_json::Value> {
    let Ok(rd) = std::fs::read_dir(store.join("rejected")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect()
}

/// Names under `STORE/quarantine/`.
pub fn quarantine_ids(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.join("quarantine"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every file below `STORE/staging/` (relative paths), for orphan checks.
pub fn staging_files(store: &Path) -> Vec<String> {
    let root = store.join("staging");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(&root)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// Bytes allocated on disk below `dir` (st_blocks × 512), following no symlinks.
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// `sluice-recv audit verify --store STORE`: (exit code, output).
pub fn audit_verify(bin: &Path, store: &Path) -> (i32, String) {
    let out = Command::new(bin)
        .args(["audit", "verify", "--store"])
        .arg(store)
        .output()
        .expect("run audit verify");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A tmpfs mounted for one test, unmounted (lazily, so a stuck process cannot keep it) on drop.
pub struct TmpfsMount {
    pub path: PathBuf,
}

impl TmpfsMount {
    /// `mount -t tmpfs -o OPTIONS tmpfs PATH` (PATH is created).
    pub fn new(path: &Path, options: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .status()?;
        if !st.success() {
            return Err(std::io::Error::other(format!(
                "mount tmpfs -o {options}: {st}"
            )));
        }
        Ok(TmpfsMount {
            path: path.to_path_buf(),
        })
    }

    /// `mount -o remount,OPTIONS PATH` (grow, shrink, or make read-only).
    pub fn remount(&self, options: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount {options}: {st}");
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// True when this process may mount a tmpfs. Otherwise prints why the test is skipped and
/// returns false, except under `CI=true`, where it panics (CI runs as root; a skip there would
/// hide a broken setup).
pub fn require_mount_or_skip(test_name: &str) -> bool {
    let reason = if !nix::unistd::geteuid().is_root() {
        Some("not running as root (mounting a tmpfs needs CAP_SYS_ADMIN)".to_string())
    } else {
        let probe = std::env::temp_dir().join(format!("sluice-mount-probe-{}", std::process::id()));
        match TmpfsMount::new(&probe, "size=1m") {
            Ok(m) => {
                drop(m);
                let _ = std::fs::remove_dir(&probe);
                None
            }
            Err(e) => Some(format!("cannot mount a tmpfs: {e}")),
        }
    };
    let Some(reason) = reason else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test_name}: CI=true but storage-fault tests cannot run: {reason}");
    }
    eprintln!("SKIPPED {test_name}: {reason}");
    false
}

/// Free bytes and free inodes of the filesystem holding `path`.
pub fn fs_free(path: &Path) -> (u64, u64) {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    (
        s.blocks_available() as u64 * s.fragment_size() as u64,
        s.files_available() as u64,
    )
}
