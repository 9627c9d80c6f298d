//! The namespace diode (`hardware/diode-sim.sh`) as an RAII guard for tests.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// Which end of the diode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Low side: `<prefix>-tx`, where the sender runs.
    Tx,
    /// High side: `<prefix>-rx`, where the receiver runs.
    Rx,
}

/// `diode-sim.sh up` options.
#[derive(Clone, Debug)]
pub struct DiodeOptions {
    /// Random loss on the receiving side, percent (None = lossless).
    pub loss_pct: Option<f64>,
    /// tc rate on the sending veth, tc syntax (`"200mbit"`).
    pub rate: Option<String>,
    pub mtu: u32,
}

impl Default for DiodeOptions {
    fn default() -> Self {
        Self {
            loss_pct: None,
            rate: None,
            mtu: 1500,
        }
    }
}

/// Counters from `diode-sim.sh status --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiodeStatus {
    pub up: bool,
    /// Packets the high side tried to send toward the low side (dropped). Must stay 0 for sluice-recv.
    pub egress_to_low_side_packets: u64,
    /// ICMP errors (port unreachable...) the high side's kernel tried to send toward the low side,
    /// e.g. for datagrams that arrived while no receiver listened. Not the receiver's doing.
    pub icmp_errors_to_low_side: u64,
    /// Frames of any kind (ARP, raw...) dropped at the high-side veth egress.
    pub egress_frames_dropped: u64,
    /// Datagrams dropped by the emulated random loss.
    pub loss_drops: u64,
}

/// True when running as root with `ip` and `nft` available. Otherwise prints why the test is
/// skipped and returns false — except under `CI=true`, where a missing prerequisite fails the test
/// (CI runs as root and installs nftables, so a skip there would hide a broken setup).
pub fn require_root_or_skip(test_name: &str) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("not running as root (network namespaces need CAP_NET_ADMIN)".to_string());
    }
    for tool in ["ip", "nft", "ethtool"] {
        if which(tool).is_none() {
            missing.push(format!(
                "`{tool}` not installed (apt-get install -y iproute2 nftables ethtool)"
            ));
        }
    }
    if missing.is_empty() {
        return true;
    }
    crate::skip_unless_ci(
        test_name,
        &format!("the namespace diode cannot run: {}", missing.join("; ")),
    )
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A running emulated diode with names unique to this process and call; `down` on drop.
pub struct Netns {
    prefix: String,
    pub tx_ns: String,
    pub rx_ns: String,
    pub tx_addr: Ipv4Addr,
    pub rx_addr: Ipv4Addr,
    pub mtu: u32,
    torn_down: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn script() -> PathBuf {
    crate::workspace_root().join("hardware/diode-sim.sh")
}

impl Netns {
    /// Bring a diode up (namespaces `sluice-t{pid}-{n}-tx` / `-rx`).
    pub fn up(opts: &DiodeOptions) -> anyhow::Result<Netns> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("sluice-t{}-{n}", std::process::id());
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg("up")
            .arg("--mtu")
            .arg(opts.mtu.to_string());
        if let Some(l) = opts.loss_pct {
            cmd.arg("--loss").arg(l.to_string());
        }
        if let Some(r) = &opts.rate {
            cmd.arg("--rate").arg(r);
        }
        cmd.env("SLUICE_NS_PREFIX", &prefix);
        let me = Netns {
            tx_ns: format!("{prefix}-tx"),
            rx_ns: format!("{prefix}-rx"),
            prefix,
            tx_addr: Ipv4Addr::new(10, 231, 0, 1),
            rx_addr: Ipv4Addr::new(10, 231, 0, 2),
            mtu: opts.mtu,
            torn_down: false,
        };
        // Constructed before running so Drop cleans a half-made setup too.
        let out = cmd.output().context("running hardware/diode-sim.sh up")?;
        if !out.status.success() {
            bail!(
                "diode-sim.sh up failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(me)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn ns(&self, side: Side) -> &str {
        match side {
            Side::Tx => &self.tx_ns,
            Side::Rx => &self.rx_ns,
        }
    }

    /// `ip netns exec <ns> <program>`: add args, spawn as usual.
    pub fn command(&self, side: Side, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.arg("netns").arg("exec").arg(self.ns(side)).arg(program);
        c
    }

    /// Run `f` on a fresh thread that has joined the namespace (sockets it opens live there).
    pub fn run_in<T: Send + 'static>(
        &self,
        side: Side,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<std::thread::JoinHandle<T>> {
        let path = PathBuf::from("/run/netns").join(self.ns(side));
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            // setns only moves this thread; it ends with the closure.
            let r = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET);
            let ok = r.is_ok();
            let _ = tx.send(r);
            if !ok {
                panic!("setns failed");
            }
            f()
        });
        rx.recv()
            .context("netns thread died")?
            .context("setns into the namespace")?;
        Ok(h)
    }

    /// Counters from `diode-sim.sh status --json`.
    pub fn status(&self) -> anyhow::Result<DiodeStatus> {
        let v = self.status_json()?;
        let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        Ok(DiodeStatus {
            up: v.get("up").and_then(|x| x.as_bool()).unwrap_or(false),
            egress_to_low_side_packets: n("egress_to_low_side_packets"),
            icmp_errors_to_low_side: n("icmp_errors_to_low_side"),
            egress_frames_dropped: n("egress_frames_dropped"),
            loss_drops: n("loss_drops"),
        })
    }

    /// The raw `status --json` object.
    pub fn status_json(&self) -> anyhow::Result<serde_json::Value> {
        let stdout = self.run_script("status", &["--json"])?;
        serde_json::from_slice(&stdout).context("parsing status --json")
    }

    /// Tear down now (also done on drop); idempotent.
    pub fn down(&mut self) -> anyhow::Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.run_script("down", &[])?;
        self.torn_down = true;
        Ok(())
    }

    /// Runs `diode-sim.sh ACTION ARGS…` on this diode's namespaces: its stdout, or an error
    /// with its stderr when it fails.
    fn run_script(&self, action: &str, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let out = Command::new("bash")
            .arg(script())
            .arg(action)
            .args(args)
            .env("SLUICE_NS_PREFIX", &self.prefix)
            .output()
            .with_context(|| format!("running diode-sim.sh {action}"))?;
        if !out.status.success() {
            bail!(
                "diode-sim.sh {action} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = self.down() {
            eprintln!("warning: could not tear down diode {}: {e:#}", self.prefix);
        }
    }
}
