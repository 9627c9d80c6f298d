//! `sluice-relay`: a seeded, deterministic UDP impairment relay for tests and demos.
//! Prints `listening on ADDR` on stdout once bound, relays until SIGINT/SIGTERM or `--duration`,
//! then prints the counters as one JSON line on stderr (and to `--stats FILE`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use sluice_tests::relay::{ImpairConfig, Relay};

#[derive(Parser, Debug)]
#[command(
    name = "sluice-relay",
    about = "Seeded UDP impairment relay (loss, bursts, reorder, duplicate, corrupt, truncate)"
)]
struct Args {
    /// Address to receive datagrams on (port 0 = any free port; the chosen address is printed).
    #[arg(long)]
    listen: SocketAddr,
    /// Address every surviving datagram is forwarded to.
    #[arg(long)]
    target: SocketAddr,
    /// Random loss, percent (fractional allowed).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Burst period in datagrams: the last --burst-len of every --burst-every datagrams are dropped.
    #[arg(long, default_value_t = 0)]
    burst_every: u64,
    #[arg(long, default_value_t = 0)]
    burst_len: u64,
    /// Shuffle datagrams within windows of W datagrams.
    #[arg(long, default_value_t = 0)]
    reorder_window: usize,
    /// Flush a partly filled reorder window after this many milliseconds.
    #[arg(long, default_value_t = 20)]
    reorder_flush_ms: u64,
    /// Forward this percentage of datagrams twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Flip bits independently at this bit error rate (e.g. 1e-6).
    #[arg(long, default_value_t = 0.0)]
    corrupt_ber: f64,
    /// Flip exactly one random bit in this percentage of datagrams.
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    /// Cut this percentage of datagrams to a random shorter length.
    #[arg(long, default_value_t = 0.0)]
    truncate: f64,
    /// RNG seed: the same seed and settings give the same decisions for the same datagram order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the final counters as JSON to this file.
    #[arg(long)]
    stats: Option<std::path::PathBuf>,
    /// Stop by itself after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let cfg = ImpairConfig {
        loss_pct: a.loss,
        burst_every: a.burst_every,
        burst_len: a.burst_len,
        drop_range: None,
        reorder_window: a.reorder_window,
        reorder_flush: Duration::from_millis(a.reorder_flush_ms),
        duplicate_pct: a.duplicate,
        corrupt_ber: a.corrupt_ber,
        corrupt_pct: a.corrupt,
        truncate_pct: a.truncate,
        seed: a.seed,
    };
    cfg.validate().map_err(anyhow::Error::msg)?;

    // Block SIGINT/SIGTERM before any thread exists, then wait for them on a dedicated thread:
    // the relay loop sees a flag, flushes, and the counters are printed on the normal exit path.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block().context("blocking SIGINT/SIGTERM")?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            if mask.wait().is_ok() {
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    if let Some(secs) = a.duration {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(secs.max(0.0)));
            stop.store(true, Ordering::Relaxed);
        });
    }

    let relay =
        Relay::bind(a.listen, a.target, cfg).with_context(|| format!("binding {}", a.listen))?;
    println!("listening on {}", relay.local_addr());
    let stats = relay.run(&stop, None).context("relay loop")?;
    let line = stats.to_json().to_string();
    eprintln!("{line}");
    if let Some(path) = a.stats {
        std::fs::write(&path, format!("{line}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
