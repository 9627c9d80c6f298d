//! The peer tool, run beside Sluice on the same namespace diode in the same bench run: udpcast
//! (`udp-sender --async` → `udp-receiver`, Debian package `udpcast`), a one-way file sender with
//! FEC and a rate cap that sites use across diodes today and the only such peer installable
//! here from the package registry. `sluice-bench --peer udpcast` runs it after every Sluice row
//! of a case, on a fresh diode with the same MTU and loss, and prints both side by side.
//!
//! What it is given, so the comparison is the peer at its best on this path:
//! - the same file: the Sluice bundle itself (goodput is bundle bytes over time for both);
//! - the same rate cap as the Sluice row (`--max-bitrate`; none when Sluice ran unpaced);
//! - FEC `8x8/128` (6.25 %) without loss and `8x24/128` (18.75 %) with it: the lightest settings
//!   that arrived intact at 0 % and 5 % loss when udpcast was first measured on this machine
//!   (lighter FEC aborts the whole transfer at the first stripe that loses more than its
//!   redundancy);
//! - a 32 MiB receive buffer: udpcast never sets `SO_RCVBUF`, so it takes
//!   `net.core.rmem_default`, which overflowed at 208 KiB even without loss. That sysctl is
//!   global (read-only inside a namespace), so [`RcvbufDefault`] raises it for the peer's run
//!   only and restores it on drop.
//!
//! Time: sender spawn → the moment the received file has every byte (or the receiver exits),
//! so udpcast's 2-2.5 s end-of-transfer wait is not counted against it. Intact: blake3 of the
//! received file equals the bundle's.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use sluice_tests::netns::{DiodeOptions, Netns, Side};

use crate::case::Case;
use sluice_tests::watch::ProcessWatch;

/// The receive buffer udpcast gets through `net.core.rmem_default` (and `rmem_max`).
const PEER_RCVBUF: u64 = 32 << 20;
/// udpcast's data port (`--portbase` default 9000; the receiver binds it).
const UDPCAST_DATA_PORT: u16 = 9000;

/// Whether udpcast is installed (`apt-get install -y udpcast`).
pub fn udpcast_available() -> bool {
    ["udp-sender", "udp-receiver"]
        .iter()
        .all(|b| Path::new("/usr/bin").join(b).is_file())
}

/// udpcast's `--max-bitrate` for a Sluice case rate (`default` = Sluice's 909 Mbit/s default
/// pace, `0` = unpaced, else the same figure): `None` means no cap.
pub fn max_bitrate(case_rate: &str, sluice_set_rate_bits: Option<u64>) -> Option<String> {
    match (case_rate, sluice_set_rate_bits) {
        ("0", _) => None,
        (_, Some(bits)) if bits > 0 => Some(format!("{}k", bits.div_ceil(1000))),
        ("default", _) => Some("909m".into()),
        (r, _) => Some(r.to_ascii_lowercase()),
    }
}

/// The FEC udpcast needs on this path: see the module doc.
pub fn fec_for_loss(loss_pct: f64) -> &'static str {
    if loss_pct > 0.0 {
        "8x24/128"
    } else {
        "8x8/128"
    }
}

/// Raises `net.core.rmem_default` and `rmem_max` to [`PEER_RCVBUF`] until dropped.
struct RcvbufDefault {
    saved: Vec<(&'static str, String)>,
}

impl RcvbufDefault {
    fn raise() -> anyhow::Result<Self> {
        let mut saved = Vec::new();
        // rmem_max first: the default may not exceed it.
        for key in ["rmem_max", "rmem_default"] {
            let path = format!("/proc/sys/net/core/{key}");
            let old = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            std::fs::write(&path, PEER_RCVBUF.to_string())
                .with_context(|| format!("raising {path} for udpcast"))?;
            saved.push((key, old.trim().to_string()));
        }
        Ok(Self { saved })
    }
}

impl Drop for RcvbufDefault {
    fn drop(&mut self) {
        for (key, old) in self.saved.iter().rev() {
            let _ = std::fs::write(format!("/proc/sys/net/core/{key}"), old);
        }
    }
}

/// Whether `pid` (in its own namespace) has a UDP socket bound to `port`.
pub fn udp_bound(pid: u32, port: u16) -> bool {
    let want = format!(":{port:04X} ");
    std::fs::read_to_string(format!("/proc/{pid}/net/udp"))
        .map(|t| {
            t.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| format!("{a} ").contains(&want))
            })
        })
        .unwrap_or(false)
}

/// One udpcast transfer of `file` across `ns` (already up with the case's MTU and loss); the
/// received copy goes to `out` and is removed afterwards. Returns the row's `peer` object.
pub fn run_udpcast(
    ns: &Netns,
    file: &Path,
    out: &Path,
    loss_pct: f64,
    max_bitrate: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let want = std::fs::metadata(file)?.len();
    let _ = std::fs::remove_file(out);
    let _rcvbuf = RcvbufDefault::raise()?;
    let fec = fec_for_loss(loss_pct);
    let secs = timeout.as_secs().max(1).to_string();
    let mut recv = ns
        .command(Side::Rx, "udp-receiver")
        .args(["--interface", &ns_if(ns, Side::Rx)?, "--nokbd", "--file"])
        .arg(out)
        .args(["--mcast-rdv-address", &ns.tx_addr.to_string()])
        .args(["--receive-timeout", "10", "--start-timeout", &secs])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning udp-receiver")?;
    let recv_watch = ProcessWatch::child(&recv);
    let bound_by = Instant::now() + Duration::from_secs(10);
    while !udp_bound(recv.id(), UDPCAST_DATA_PORT) && Instant::now() < bound_by {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut send_cmd = ns.command(Side::Tx, "udp-sender");
    send_cmd
        .args(["--interface", &ns_if(ns, Side::Tx)?, "--file"])
        .arg(file)
        .args(["--async", "--fec", fec, "--autostart", "1"])
        .args(["--rexmit-hello-interval", "100", "--nokbd"])
        .args(["--mcast-rdv-address", &ns.rx_addr.to_string()])
        .args(["--mcast-data-address", &ns.rx_addr.to_string()]);
    if let Some(rate) = max_bitrate {
        send_cmd.args(["--max-bitrate", rate]);
    }
    let t0 = Instant::now();
    let mut send = send_cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning udp-sender")?;
    let send_watch = ProcessWatch::child(&send);
    let (send_status, send_stats) = send_watch.wait(&mut send)?;
    let send_secs = t0.elapsed().as_secs_f64();
    // The receiver lingers after the last block; the transfer is done when the file is whole.
    let mut t_whole = None;
    let deadline = Instant::now() + timeout;
    while recv.try_wait()?.is_none() && Instant::now() < deadline {
        if t_whole.is_none() && std::fs::metadata(out).is_ok_and(|m| m.len() == want) {
            t_whole = Some(t0.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if recv.try_wait()?.is_none() {
        let _ = recv.kill();
    }
    let (recv_status, recv_stats) = recv_watch.wait(&mut recv)?;
    let secs = t_whole.unwrap_or_else(|| t0.elapsed().as_secs_f64());
    let intact = recv_status.success() && blake3_file(out)? == blake3_file(file)?;
    let _ = std::fs::remove_file(out);
    let mib = |kib: u64| (kib as f64 / 1024.0 * 100.0).round() / 100.0;
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    Ok(json!({
        "tool": "udpcast",
        "fec": fec,
        "max_bitrate": max_bitrate,
        "rcvbuf_bytes": PEER_RCVBUF,
        "intact": intact,
        "goodput_mb_s": if intact { r2(want as f64 / secs.max(1e-9) / 1e6) } else { 0.0 },
        "secs": r2(secs),
        "send_secs": r2(send_secs),
        "send_cpu_s": r2(send_stats.cpu_secs),
        "recv_cpu_s": r2(recv_stats.cpu_secs),
        "send_peak_rss_mib": mib(send_stats.peak_rss_kib),
        "recv_peak_rss_mib": mib(recv_stats.peak_rss_kib),
        "send_exit": send_status.code(),
        "recv_exit": recv_status.code(),
    }))
}

/// udpcast across a fresh diode with `case`'s MTU and loss, sending `bundle` at the rate the
/// Sluice `row` of that case was paced at; the `peer` object for that row.
pub fn udpcast_beside(
    row: &Value,
    case: &Case,
    bundle: &Path,
    work: &Path,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let mut ns = Netns::up(&DiodeOptions {
        loss_pct: (case.loss > 0.0).then_some(case.loss),
        rate: None,
        mtu: case.mtu,
    })?;
    let rate = max_bitrate(&case.rate, row["set_rate_bits"].as_u64());
    let out = work.join("udpcast-received");
    let peer = run_udpcast(&ns, bundle, &out, case.loss, rate.as_deref(), timeout);
    ns.down()?;
    peer
}

/// The veth end inside `side`'s namespace (`diode-sim.sh status --json`: `tx_if`, `rx_if`).
fn ns_if(ns: &Netns, side: Side) -> anyhow::Result<String> {
    let key = match side {
        Side::Tx => "tx_if",
        Side::Rx => "rx_if",
    };
    ns.status_json()?[key]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("diode-sim status has no {key}"))
}

fn blake3_file(path: &Path) -> anyhow::Result<Option<blake3::Hash>> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Ok(None);
    };
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(Some(h.finalize()))
}

/// One comment line under the table: the peer beside the Sluice row it ran after.
pub fn summary_line(row: &Value) -> Option<String> {
    let p = row.get("peer")?;
    let ours = row["goodput_mb_s"].as_f64().unwrap_or(0.0);
    let theirs = p["goodput_mb_s"].as_f64().unwrap_or(0.0);
    let lead = if theirs > 0.0 {
        format!("{:.2}x", ours / theirs)
    } else {
        "-".into()
    };
    Some(format!(
        "# peer {} {} run {}: {} MB/s intact {} (sluice {} MB/s, {lead}) cpu {}+{} s rss {}/{} MiB (sluice {}/{}) fec {} max-bitrate {}",
        p["tool"].as_str().unwrap_or("?"),
        row["case"].as_str().unwrap_or("?"),
        row["run"],
        p["goodput_mb_s"],
        if p["intact"] == true { "yes" } else { "NO" },
        row["goodput_mb_s"],
        p["send_cpu_s"],
        p["recv_cpu_s"],
        p["send_peak_rss_mib"],
        p["recv_peak_rss_mib"],
        row["send_peak_rss_mib"],
        row["recv_peak_rss_mib"],
        p["fec"].as_str().unwrap_or("?"),
        p["max_bitrate"].as_str().unwrap_or("none"),
    ))
}
