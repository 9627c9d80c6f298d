//! `sluice-bench`: end-to-end goodput, CPU and peak RSS of `sluice-send udp` → namespace diode →
//! `sluice-recv listen`, beside the raw UDP ceilings measured on the same path in the same run.
//! Needs root (network namespaces). See bench/README.md.

#![recursion_limit = "256"]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rand::{RngCore, SeedableRng};
use serde_json::{Value, json};
use sluice_bench::blast::{self, Mode, RecvOpts, SendOpts};
use sluice_bench::case::{Case, parse_case, parse_size, rate_args};
use sluice_bench::table::{self, human, print_header, print_row, r2, r3};
use sluice_bench::{peer, verdict};
use sluice_common::transport::pacer::IP_UDP_OVERHEAD;
use sluice_tests::{DiodeOptions, Netns, ProcessWatch, Side};

/// End-to-end Sluice throughput against the raw UDP ceiling of the same run (needs root).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Small bundles (64 MiB) and short ceiling blasts, for CI: figures printed, never asserted.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object per case (and a final summary object) instead of the table.
    #[arg(long)]
    json: bool,
    /// Bundle size(s), comma-separated, with K/M/G suffixes (binary): e.g. 1G or 256M,1G,4G.
    /// Default 1G (64M with --quick).
    #[arg(long, value_delimiter = ',')]
    size: Vec<String>,
    /// Cases: mtu<N>-loss<PCT>[-oh<PCT>][-rate<BITS>], comma-separated.
    /// Default: mtu1500-loss0,mtu1500-loss5,mtu9000-loss0,mtu9000-loss5.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Repair overhead in percent when a case does not say (-oh<PCT>).
    #[arg(long, default_value_t = 10)]
    overhead: u32,
    /// sluice-send --rate when a case does not say (-rate<BITS>); 0 = unpaced; `default` passes
    /// no --rate (the sender's own default, the gbe-fibre-1500 profile's rate).
    #[arg(long, default_value = "default")]
    rate: String,
    /// Run every case this many times (each run its own row).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Seconds of each raw-ceiling blast (default 3, 1.5 with --quick); 0 skips the ceilings.
    #[arg(long)]
    ceiling_secs: Option<f64>,
    /// Extra argument for sluice-send udp (repeatable), e.g. --send-arg=--window=8.
    #[arg(long = "send-arg", allow_hyphen_values = true)]
    send_args: Vec<String>,
    /// Extra argument for sluice-recv listen (repeatable), e.g. --recv-arg=--decode-threads=2.
    #[arg(long = "recv-arg", allow_hyphen_values = true)]
    recv_args: Vec<String>,
    /// Give up on a transfer after this many seconds.
    #[arg(long, default_value_t = 900.0)]
    timeout: f64,
    /// Working directory for bundles and stores (default: a fresh temporary directory).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Keep the working directory (and each case's store) afterwards.
    #[arg(long)]
    keep: bool,
    /// Use these binaries instead of building them (directory holding sluice-send, sluice-recv).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also run this peer tool after every Sluice row, on a fresh diode with the same MTU, loss
    /// and rate cap, and print it beside the row (bench/src/peer.rs). Only `udpcast`
    /// (apt-get install -y udpcast).
    #[arg(long, value_parser = ["udpcast"])]
    peer: Option<String>,
}

/// UDP RcvbufErrors in the receiver's namespace.
fn rcvbuf_errors(ns: &Netns) -> anyhow::Result<Option<u64>> {
    ns.run_in(Side::Rx, blast::udp_rcvbuf_errors)?
        .join()
        .map_err(|_| anyhow::anyhow!("reading /proc/net/snmp in the receiver namespace panicked"))
}

/// Raw ceilings on the case's path: what arrives of an unpaced blast.
#[derive(Clone, Debug, Default)]
struct Ceilings {
    sendmmsg_mb_s: f64,
    gso_mb_s: f64,
    sendmmsg: Value,
    gso: Value,
}

fn measure_ceiling(ns: &Netns, size: usize, mode: Mode, secs: f64) -> anyhow::Result<(f64, Value)> {
    let addr = SocketAddr::from((ns.rx_addr, 9100));
    let ropts = RecvOpts {
        addr,
        secs: secs + 5.0,
        rcvbuf: Some(64 << 20),
        idle_exit: 1.0,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let r = ns.run_in(Side::Rx, move || {
        let sock = match blast::bind_recv(&ropts) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return Err(e);
            }
        };
        let _ = tx.send(Ok(()));
        blast::run_recv(&sock, &ropts)
    })?;
    rx.recv()
        .context("ceiling receiver died")?
        .map_err(anyhow::Error::msg)?;
    let sopts = SendOpts {
        addr,
        size,
        secs,
        mode,
        batch: 64,
        sndbuf: Some(8 << 20),
        pacing: blast::Pacing::None,
    };
    let s = ns.run_in(Side::Tx, move || blast::run_send(&sopts))?;
    let sent = s
        .join()
        .map_err(|_| anyhow::anyhow!("blast sender panicked"))??;
    let got = r
        .join()
        .map_err(|_| anyhow::anyhow!("blast receiver panicked"))??;
    let v = json!({"send": sent.to_json(), "recv": got.to_json()});
    Ok((got.mb_per_s(), v))
}

struct Fixture {
    size: u64,
    src_root: PathBuf,
    bundle: PathBuf,
    bundle_bytes: u64,
    tree: std::collections::BTreeMap<String, blake3::Hash>,
}

struct Bins {
    send: PathBuf,
    recv: PathBuf,
}

fn run_ok(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A bundle of `size` bytes of random content: one big file plus a small one.
fn make_fixture(work: &Path, bins: &Bins, size: u64, seq: u64) -> anyhow::Result<Fixture> {
    let src_root = work.join(format!("src-{}", human(size)));
    let dir = src_root.join("payload");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("README.txt"), b"sluice-bench payload\n")?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(size);
    let mut f =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join("data.bin"))?);
    let mut buf = vec![0u8; 4 << 20];
    let mut left = size.saturating_sub(4096);
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let bundle = work.join(format!("bench-{}.sluice", human(size)));
    let _ = std::fs::remove_file(&bundle);
    run_ok(
        Command::new(&bins.send)
            .args(["bundle", "create", "--key"])
            .arg(work.join("keys/bench.key"))
            .args(["--channel", "bench", "--seq", &seq.to_string(), "--out"])
            .arg(&bundle)
            .arg(&dir),
    )?;
    let bundle_bytes = std::fs::metadata(&bundle)?.len();
    let tree = sluice_tests::blake3_tree(&src_root)?;
    Ok(Fixture {
        size,
        src_root,
        bundle,
        bundle_bytes,
        tree,
    })
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn terminate_after(pid: u32, deadline: Instant, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            if Instant::now() >= deadline {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
                std::thread::sleep(Duration::from_secs(5));
                if !done.load(Ordering::Relaxed) {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg(pid.to_string())
                        .status();
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// Bytes written by the page-cache probe (at most the bundle size).
const PAGE_CACHE_PROBE_BYTES: u64 = 256 << 20;

/// The receiver writes every delivered byte twice into the page cache (staging object, then the
/// extracted files), so how fast this machine fills fresh page-cache pages bounds it as much as
/// the UDP path does. On a VM that hands free memory back to its host (free page reporting),
/// that speed varies 4x with what was freed recently: measured 1.5 GB/s and 0.3 GB/s on the
/// same VM within the hour. Writes `bytes` in 1 MiB `write`s to a file in the work directory
/// (the stores' filesystem), without fsync, and reports MB/s; the file is removed.
fn measure_page_cache_write(work: &Path, bytes: u64) -> anyhow::Result<f64> {
    use std::io::Write;
    let path = work.join("page-cache-probe");
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut file = std::fs::File::create(&path).context("page-cache probe")?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n]).context("page-cache probe")?;
        left -= n as u64;
    }
    drop(file);
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    Ok(bytes as f64 / 1e6 / secs.max(1e-9))
}

#[allow(clippy::too_many_arguments)]
fn run_case(
    cli: &Cli,
    bins: &Bins,
    work: &Path,
    fx: &Fixture,
    case: &Case,
    run: u32,
    ceiling_secs: f64,
) -> anyhow::Result<Value> {
    let load_before = load_avg();
    let mut ns = Netns::up(&DiodeOptions {
        loss_pct: (case.loss > 0.0).then_some(case.loss),
        rate: None,
        mtu: case.mtu,
    })?;
    let datagram = case.mtu as usize - IP_UDP_OVERHEAD;
    let mut ceil = Ceilings::default();
    if ceiling_secs > 0.0 {
        (ceil.sendmmsg_mb_s, ceil.sendmmsg) =
            measure_ceiling(&ns, datagram, Mode::Sendmmsg, ceiling_secs)?;
        (ceil.gso_mb_s, ceil.gso) = measure_ceiling(&ns, datagram, Mode::Gso, ceiling_secs)?;
    }
    let write_ceiling = measure_page_cache_write(work, fx.size.min(PAGE_CACHE_PROBE_BYTES))?;
    let loss_before = ns.status()?.loss_drops;
    let rcvbuf_before = rcvbuf_errors(&ns)?;

    let store = work.join(format!("store-{}-{}-{run}", case.name, human(fx.size)));
    let _ = std::fs::remove_dir_all(&store);
    let port = 7000u16;
    let bind = SocketAddr::from((ns.rx_addr, port));
    let mut recv_cmd = ns.command(Side::Rx, &bins.recv);
    recv_cmd
        .args(["listen", "--bind", &bind.to_string(), "--store"])
        .arg(&store)
        .arg("--trust")
        .arg(work.join("trust"))
        .arg("--link-key")
        .arg(work.join("keys/link.key"))
        .args([
            "--max-bundles",
            "1",
            "--json",
            "--max-datagram",
            &datagram.to_string(),
        ])
        .args(&cli.recv_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(store.with_extension("recv.log"))?);
    let mut recv = recv_cmd.spawn().context("spawning sluice-recv")?;
    let recv_watch = ProcessWatch::child(&recv);
    let recv_pid = recv.id();
    let recv_stdout = recv.stdout.take().expect("piped");
    let (line_tx, line_rx) = std::sync::mpsc::channel::<(Instant, String)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(recv_stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send((Instant::now(), line));
        }
    });
    let bound_by = Instant::now() + Duration::from_secs(10);
    while !peer::udp_bound(recv_pid, port) {
        if Instant::now() > bound_by {
            let _ = recv.kill();
            bail!("sluice-recv did not bind {bind} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let recv_done = Arc::new(AtomicBool::new(false));
    terminate_after(
        recv_pid,
        Instant::now() + Duration::from_secs_f64(cli.timeout),
        recv_done.clone(),
    );

    let mtu = case.mtu.to_string();
    let overhead = case.overhead.to_string();
    let mut send_cmd = ns.command(Side::Tx, &bins.send);
    send_cmd
        .args(["udp", "--to", &bind.to_string(), "--trust"])
        .arg(work.join("trust"))
        .arg("--link-key")
        .arg(work.join("keys/link.key"))
        .args(["--mtu", &mtu, "--overhead", &overhead, "--json"])
        .args(rate_args(&case.rate))
        .args(&cli.send_args)
        .arg(&fx.bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(store.with_extension("send.log"))?);
    let t_spawn = Instant::now();
    let mut send = send_cmd.spawn().context("spawning sluice-send")?;
    let send_watch = ProcessWatch::child(&send);
    let send_done = Arc::new(AtomicBool::new(false));
    terminate_after(
        send.id(),
        Instant::now() + Duration::from_secs_f64(cli.timeout),
        send_done.clone(),
    );
    let mut send_out = String::new();
    send.stdout
        .take()
        .expect("piped")
        .read_to_string(&mut send_out)?;
    let (send_status, send_stats) = send_watch.wait(&mut send)?;
    send_done.store(true, Ordering::Relaxed);
    let t_send_exit = Instant::now();
    // The listener exits by itself after a decision (accepted/rejected). An "incomplete" outcome
    // is not a decision (it would wait for another pass until its idle timeout), so stop it then,
    // or when it has not decided within a grace period after the sender finished.
    let grace = Duration::from_secs_f64((t_send_exit - t_spawn).as_secs_f64().max(20.0) * 3.0);
    let mut lines: Vec<(Instant, String)> = Vec::new();
    loop {
        match line_rx.recv_timeout(Duration::from_millis(100)) {
            Ok((t, l)) => {
                let word = serde_json::from_str::<Value>(&l)
                    .ok()
                    .and_then(|v| v["outcome"].as_str().map(str::to_string));
                lines.push((t, l));
                if word.as_deref() == Some("incomplete") {
                    let _ = Command::new("kill")
                        .arg("-TERM")
                        .arg(recv_pid.to_string())
                        .status();
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if t_send_exit.elapsed() > grace {
                    let _ = Command::new("kill")
                        .arg("-TERM")
                        .arg(recv_pid.to_string())
                        .status();
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let (recv_status, recv_stats) = recv_watch.wait(&mut recv)?;
    recv_done.store(true, Ordering::Relaxed);
    let t_recv_exit = Instant::now();
    let _ = reader.join();

    let send_json: Value = send_out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    let send_secs = send_json["duration_secs"].as_f64();
    // The sender verifies the bundle before its clock starts: send start = exit - its duration.
    let t_send_start = send_secs
        .map(|s| {
            t_send_exit
                .checked_sub(Duration::from_secs_f64(s))
                .unwrap_or(t_spawn)
        })
        .unwrap_or(t_spawn)
        .max(t_spawn);
    let outcome = lines
        .iter()
        .filter_map(|(t, l)| serde_json::from_str::<Value>(l).ok().map(|v| (*t, v)))
        .find(|(_, v)| v["outcome"] == "accepted" || v["outcome"] == "rejected");
    let (t_commit, outcome) = match outcome {
        Some((t, v)) => (t, v),
        None => (t_recv_exit, Value::Null),
    };
    let accepted = outcome["outcome"] == "accepted";
    let secs = t_commit
        .saturating_duration_since(t_send_start)
        .as_secs_f64();
    let e2e_secs = t_commit.saturating_duration_since(t_spawn).as_secs_f64();
    let goodput = if accepted {
        fx.bundle_bytes as f64 / secs.max(1e-9) / 1e6
    } else {
        0.0
    };

    let intact = accepted
        && outcome["bundle_id"]
            .as_str()
            .map(|id| store.join("quarantine").join(id).join("files"))
            .and_then(|p| sluice_tests::blake3_tree(&p).ok())
            .is_some_and(|t| t == fx.tree);
    let status: Value = std::fs::read(store.join("state/status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let loss_drops = ns.status()?.loss_drops.saturating_sub(loss_before);
    let rcvbuf = rcvbuf_errors(&ns)?
        .zip(rcvbuf_before)
        .map(|(a, b)| a.saturating_sub(b));
    ns.down()?;
    if !cli.keep {
        let _ = std::fs::remove_dir_all(&store);
    }
    let gib = fx.bundle_bytes as f64 / (1u64 << 30) as f64;
    let cpu_total = send_stats.cpu_secs + recv_stats.cpu_secs;
    let (send_threads, recv_threads) = (send_stats.cpu_by_thread(), recv_stats.cpu_by_thread());
    let ratio = |c: f64| if c > 0.0 { goodput / c } else { 0.0 };
    Ok(json!({
        "case": case.name,
        "run": run,
        "mtu": case.mtu,
        "loss_percent": case.loss,
        "overhead_percent": case.overhead,
        "rate": case.rate,
        "bundle_bytes": fx.bundle_bytes,
        "goodput_mb_s": r2(goodput),
        "secs": r3(secs),
        "e2e_secs_incl_sender_verify": r3(e2e_secs),
        "send_secs": send_secs.map(r3),
        // The rate the sender paced at (null = unpaced) and what it reached on the wire.
        "set_rate_bits": send_json["rate_limit_bits_per_sec"],
        "rate_source": send_json["rate_source"],
        "wire_mbit_s": send_json["wire_mbit_per_sec"].as_f64().map(r2),
        "rate_ratio": verdict::rate_ratio(&send_json).map(r3),
        // Paced: wire bytes of the set rate the sender left unused (its token bucket was full).
        "send_pacing_unused_bytes": send_json["pacing_unused_bytes"],
        // Sender finished → quarantine commit: the receiver's last blocks, verification, commit.
        "commit_tail_secs": r3(t_commit.saturating_duration_since(t_send_exit).as_secs_f64()),
        "ceiling_sendmmsg_mb_s": r2(ceil.sendmmsg_mb_s),
        "ceiling_gso_mb_s": r2(ceil.gso_mb_s),
        "ceiling_page_cache_write_mb_s": r2(write_ceiling),
        "ratio_sendmmsg": r3(ratio(ceil.sendmmsg_mb_s)),
        "ratio_gso": r3(ratio(ceil.gso_mb_s)),
        "send_cpu_s": r2(send_stats.cpu_secs),
        "recv_cpu_s": r2(recv_stats.cpu_secs),
        "cpu_s_per_gib": r2(cpu_total / gib),
        "send_peak_rss_mib": r2(send_stats.peak_rss_kib as f64 / 1024.0),
        "recv_peak_rss_mib": r2(recv_stats.peak_rss_kib as f64 / 1024.0),
        // CPU seconds per thread name, busiest first, and the busiest one's share of its side.
        "send_threads": table::threads_json(&send_threads),
        "recv_threads": table::threads_json(&recv_threads),
        "send_top_thread_pct": table::top_share_pct(&send_threads),
        "recv_top_thread_pct": table::top_share_pct(&recv_threads),
        "sent_frames": send_json["frames"],
        "gso_segments_per_send": send_json["gso_segments_per_send"],
        "recv_frames": outcome["frames"],
        "repaired_blocks": outcome["repaired_blocks"],
        "nft_loss_drops": loss_drops,
        "socket_drops": status["kernel_drops"],
        // The receiver namespace's UDP RcvbufErrors delta over the transfer (only the listener
        // receives there): socket overflows, each up to a whole GRO train.
        "rcvbuf_errors": rcvbuf,
        "size": human(fx.size),
        "outcome": outcome["outcome"],
        "intact": intact,
        "send_exit": send_status.code(),
        "recv_exit": recv_status.code(),
        "load_before": load_before,
        "load_after": load_avg(),
        "ceilings": {"sendmmsg": ceil.sendmmsg, "gso": ceil.gso},
    }))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("sluice-bench needs root: it builds network namespaces (hardware/diode-sim.sh)");
    }
    let sizes: Vec<u64> = if cli.size.is_empty() {
        vec![if cli.quick { 64 << 20 } else { 1 << 30 }]
    } else {
        cli.size
            .iter()
            .map(|s| parse_size(s))
            .collect::<anyhow::Result<_>>()?
    };
    let case_names: Vec<String> = if cli.cases.is_empty() {
        [
            "mtu1500-loss0",
            "mtu1500-loss5",
            "mtu9000-loss0",
            "mtu9000-loss5",
        ]
        .map(String::from)
        .to_vec()
    } else {
        cli.cases.clone()
    };
    let cases: Vec<Case> = case_names
        .iter()
        .map(|c| parse_case(c, cli.overhead, &cli.rate))
        .collect::<anyhow::Result<_>>()?;
    if cli.peer.is_some() && !peer::udpcast_available() {
        bail!("--peer udpcast: udp-sender/udp-receiver not found; apt-get install -y udpcast");
    }
    let ceiling_secs = cli
        .ceiling_secs
        .unwrap_or(if cli.quick { 1.5 } else { 3.0 });

    let bins = match &cli.bin_dir {
        Some(d) => Bins {
            send: d.join("sluice-send"),
            recv: d.join("sluice-recv"),
        },
        None => Bins {
            send: sluice_tests::build_bin("sluice-send", "sluice-send"),
            recv: sluice_tests::build_bin("sluice-recv", "sluice-recv"),
        },
    };
    let mut tmp = None;
    let work: PathBuf = match &cli.workdir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            // On disk, not tmpfs: a 4 GiB bundle, its staging copy and quarantine copy.
            let parent =
                std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
            let t = tempfile::Builder::new()
                .prefix("sluice-bench-")
                .tempdir_in(parent)?;
            let p = t.path().to_path_buf();
            tmp = Some(t);
            p
        }
    };
    std::fs::create_dir_all(work.join("keys"))?;
    std::fs::create_dir_all(work.join("trust"))?;
    if !work.join("keys/bench.key").exists() {
        run_ok(
            Command::new(&bins.send)
                .args(["keygen", "--name", "bench", "--out"])
                .arg(work.join("keys/bench")),
        )?;
    }
    std::fs::copy(work.join("keys/bench.pub"), work.join("trust/bench.pub"))?;
    // The namespace diode's addresses are not loopback, so both ends need a secret link key.
    if !work.join("keys/link.key").exists() {
        run_ok(
            Command::new(&bins.send)
                .args(["link-keygen", "--out"])
                .arg(work.join("keys/link.key")),
        )?;
    }

    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let date = run_ok(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]))
        .unwrap_or_default()
        .trim()
        .to_string();
    let rev = run_ok(
        Command::new("git")
            .current_dir(sluice_tests::workspace_root())
            .args(["rev-parse", "--short", "HEAD"]),
    )
    .unwrap_or_default()
    .trim()
    .to_string();
    let header = json!({
        "date": date, "git": rev, "load_avg": load_avg(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "args": std::env::args().skip(1).collect::<Vec<_>>(),
    });
    if cli.json {
        println!("{}", json!({"header": header}));
    } else {
        println!(
            "# sluice-bench {date} git {rev} load {} cpus {} | MB = 10^6 B of bundle; goodput = bundle bytes / (send start -> quarantine commit); ceilings = what arrives of an unpaced blast of the same datagram size on the same diode",
            load_avg(),
            header["cpus"]
        );
        print_header();
    }
    let _ = std::io::stdout().flush();
    let mut rows = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let fx = make_fixture(&work, &bins, size, started + i as u64)?;
        for case in &cases {
            for run in 1..=cli.repeat {
                let mut row = run_case(&cli, &bins, &work, &fx, case, run, ceiling_secs)
                    .with_context(|| format!("case {} size {}", case.name, human(size)))?;
                if cli.peer.is_some() {
                    let timeout = Duration::from_secs_f64(cli.timeout);
                    row["peer"] = peer::udpcast_beside(&row, case, &fx.bundle, &work, timeout)
                        .with_context(|| format!("udpcast beside {}", case.name))?;
                }
                if cli.json {
                    println!("{row}");
                } else {
                    print_row(&row);
                }
                let _ = std::io::stdout().flush();
                rows.push(row);
            }
        }
        if !cli.keep {
            let _ = std::fs::remove_dir_all(&fx.src_root);
            let _ = std::fs::remove_file(&fx.bundle);
        }
    }
    let failures: Vec<String> = rows.iter().filter_map(verdict::failure).collect();
    if cli.json {
        println!(
            "{}",
            json!({"summary": {"rows": rows.len(), "load_avg_end": load_avg(),
            "all_intact": failures.is_empty(), "failures": failures}})
        );
    } else {
        for row in &rows {
            table::print_threads(row);
        }
        for line in rows.iter().filter_map(peer::summary_line) {
            println!("{line}");
        }
        println!("# load at end {}", load_avg());
    }
    if cli.keep {
        eprintln!("kept {}", work.display());
        if let Some(t) = tmp.take() {
            let _ = t.keep();
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} cases did not arrive intact:\n  {}",
            failures.len(),
            rows.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}
