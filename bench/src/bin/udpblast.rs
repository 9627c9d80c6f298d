//! `udpblast`: measure the raw one-way UDP ceiling of a path (see bench/README.md).
//!
//!   udpblast recv ADDR SECS [--rcvbuf N] [--idle-exit S] [--json]
//!   udpblast send ADDR [--size 1472] [--secs 5] [--mode sendmmsg|gso] [--batch 64] [--sndbuf N] [--json]
//!   udpblast pair [--size 1472] [--secs 5] [--mode sendmmsg|gso] [--batch 64] [--rcvbuf N] [--json]

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use sluice_bench::blast::{
    Mode, Pacing, RecvOpts, SendOpts, bind_recv, run_pair, run_recv, run_send,
};

#[derive(Parser)]
#[command(
    name = "udpblast",
    about = "Raw one-way UDP ceiling: unpaced sendmmsg/GSO blaster and recvmmsg counter"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Count datagrams until the sender's end marker, SECS, or --idle-exit seconds of silence.
    Recv {
        addr: SocketAddr,
        secs: f64,
        /// SO_RCVBUF in bytes (forced past rmem_max as root). Default: kernel default.
        #[arg(long)]
        rcvbuf: Option<usize>,
        #[arg(long, default_value_t = 2.0)]
        idle_exit: f64,
        #[arg(long)]
        json: bool,
    },
    /// Blast unpaced datagrams with sequence numbers for --secs, then end markers.
    Send {
        addr: SocketAddr,
        #[command(flatten)]
        s: SendArgs,
        #[arg(long)]
        sndbuf: Option<usize>,
    },
    /// Receiver thread + sender in one process on 127.0.0.1 (loopback ceiling).
    Pair {
        #[command(flatten)]
        s: SendArgs,
        #[arg(long, default_value_t = 32 << 20)]
        rcvbuf: usize,
    },
}

#[derive(clap::Args)]
struct SendArgs {
    /// UDP payload bytes per datagram (MTU - 28).
    #[arg(long, default_value_t = 1472)]
    size: usize,
    /// Blast duration (kept short; at most 60).
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    #[arg(long, default_value = "sendmmsg")]
    mode: Mode,
    /// Datagrams per sendmmsg, or segments per GSO send (capped so one send is <= 64 KiB).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Pacing of a GSO blast: none, user:RATE (Sluice's token bucket), user-drop:RATE (the bucket
    /// before issue 15), fq:RATE (SO_MAX_PACING_RATE), txtime:RATE (SO_TXTIME); RATE in wire
    /// bits/s with k/M/G. fq and txtime need `tc qdisc replace dev IF root fq`.
    #[arg(long, default_value = "none")]
    pacing: Pacing,
    #[arg(long)]
    json: bool,
}

fn send_opts(addr: SocketAddr, s: &SendArgs, sndbuf: Option<usize>) -> SendOpts {
    SendOpts {
        addr,
        size: s.size,
        secs: s.secs.clamp(0.1, 60.0),
        mode: s.mode,
        batch: s.batch,
        sndbuf,
        pacing: s.pacing,
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Recv {
            addr,
            secs,
            rcvbuf,
            idle_exit,
            json,
        } => {
            let o = RecvOpts {
                addr,
                secs,
                rcvbuf,
                idle_exit,
            };
            let sock = bind_recv(&o)?;
            eprintln!("udpblast: receiving on {}", sock.local_addr()?);
            let r = run_recv(&sock, &o)?;
            if json {
                println!("{}", r.to_json());
            } else {
                println!(
                    "recv: {} datagrams, {:.1} MB/s, {:.0} dgrams/s, lost {} ({:.3} %), rcvbuf {} errors {:?}",
                    r.received_datagrams,
                    r.mb_per_s(),
                    r.datagrams_per_s(),
                    r.lost,
                    r.loss_percent(),
                    r.rcvbuf,
                    r.rcvbuf_errors
                );
            }
        }
        Cmd::Send { addr, s, sndbuf } => {
            let r = run_send(&send_opts(addr, &s, sndbuf))?;
            if s.json {
                println!("{}", r.to_json());
            } else {
                println!(
                    "send {}: {} datagrams, {:.1} MB/s, {:.0} dgrams/s, {} errors, cpu {:.2} s",
                    r.mode,
                    r.sent_datagrams,
                    r.mb_per_s(),
                    r.datagrams_per_s(),
                    r.errors,
                    r.cpu_secs
                );
            }
        }
        Cmd::Pair { s, rcvbuf } => {
            let (tx, rx) = run_pair(
                "127.0.0.1:0".parse()?,
                &send_opts("127.0.0.1:0".parse()?, &s, None),
                Some(rcvbuf),
            )?;
            let v = serde_json::json!({
                "role": "pair",
                "mode": tx.mode,
                "size": tx.size,
                "batch": tx.batch,
                "sent_datagrams": tx.sent_datagrams,
                "received_datagrams": rx.received_datagrams,
                "bytes": rx.received_bytes,
                "send_mb_per_s": (tx.mb_per_s() * 1000.0).round() / 1000.0,
                "mb_per_s": (rx.mb_per_s() * 1000.0).round() / 1000.0,
                "datagrams_per_s": rx.datagrams_per_s().round(),
                "loss_percent": (rx.loss_percent() * 1000.0).round() / 1000.0,
                "send": tx.to_json(),
                "recv": rx.to_json(),
            });
            if s.json {
                println!("{v}");
            } else {
                println!(
                    "pair {}: sent {} received {} ({:.1} MB/s, {:.0} dgrams/s, loss {:.3} %)",
                    tx.mode,
                    tx.sent_datagrams,
                    rx.received_datagrams,
                    rx.mb_per_s(),
                    rx.datagrams_per_s(),
                    rx.loss_percent()
                );
            }
        }
    }
    Ok(())
}
