//! `sluice-recv doctor`: preflight checks of the high-side host before listening or importing.
//!
//! Each check yields a [`Finding`] (ok / warn / fail, what was measured, the exact fix). The
//! checks read from an [`Env`] (proc and sys roots, store and trust paths, the clock), so tests
//! feed a fake tree: `SLUICE_PROC_ROOT`, `SLUICE_SYS_ROOT` (or the hidden `--proc-root`,
//! `--sys-root` flags). Exit 0 if nothing failed, 1 otherwise. The only socket it opens is a
//! UDP socket bound to an ephemeral port to read back the receive buffer the kernel grants;
//! nothing is ever sent.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_common::exit::{self, CommandError, Exit};
use sluice_common::profile::Profile;

use sluice_host::hostcheck::*;
use sluice_host::linkkey::{Endpoint, doctor_finding};

/// What each exit code means (the same for both `doctor`s).
pub use sluice_host::hostcheck::EXIT_CODES;

/// Preflight checks of this host (socket buffers, MTU, store, free space, trust, clock, link key)
///
/// Check the high-side host: socket buffers, MTU of the bind interface, store writability and
/// free space, trust store, clock, link key. Prints one finding per check with the exact fix to apply.
///
/// Examples:
///
///   sluice-recv doctor --store /var/lib/sluice --trust /etc/sluice/trust --bind 10.0.0.2:7000 \
///       --link-key /etc/sluice/link.key
///   sluice-recv doctor --store /var/lib/sluice --trust /etc/sluice/trust --profile gbe-fibre-1500 --json
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = exit::help_table(EXIT_CODES)
)]
pub struct Args {
    /// The quarantine store directory `listen`/`import` will use.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// The trust directory (`*.pub` signer keys and optional `policy.toml`).
    #[arg(long, value_name = "DIR")]
    pub trust: PathBuf,
    /// The address `listen` will bind; enables the MTU and granted-buffer checks on it.
    #[arg(long, value_name = "ADDR:PORT")]
    pub bind: Option<String>,
    /// Link key file to check the way `listen` and `import` will read it. Without it the public
    /// default key is assumed, a failure unless --bind is loopback.
    #[arg(long, value_name = "FILE")]
    pub link_key: Option<PathBuf>,
    #[command(flatten)]
    pub host: DoctorArgs,
}

/// Everything the checks read from the host: the flags and the clock.
pub struct Env {
    pub args: Args,
    pub now: SystemTime,
}

/// The receive buffer `listen` asks for (hardware/sysctl/90-sluice.conf).
const LISTEN_RCVBUF: usize = 32 << 20;
const GIB: u64 = 1 << 30;
/// 2024-01-01T00:00:00Z: no correctly set clock is earlier.
const CLOCK_FLOOR: u64 = 1_704_067_200;
/// 2100-01-01T00:00:00Z: later than this, the clock is wrong, not the calendar.
const CLOCK_CEILING: u64 = 4_102_444_800;

/// Runs every check; failed checks are the exit code, not an error.
pub fn run(args: Args) -> Result<Exit, CommandError> {
    let json = args.host.json;
    let env = Env {
        args,
        now: SystemTime::now(),
    };
    Ok(report(&run_checks(&env), json))
}

pub fn run_checks(env: &Env) -> Vec<Finding> {
    let mut out = Vec::new();
    let (profile, rate, rate_note) = profile_and_rate(env.args.host.profile.as_deref(), &mut out);
    out.extend(check_rmem(env, rate, &rate_note));
    out.extend(check_bind(env, profile.as_ref(), rate));
    let max_bundle = check_trust(&env.args.trust, &mut out);
    out.extend(check_store(&env.args.store, max_bundle));
    out.push(check_clock(env.now));
    // The loader and the public-key rule `listen` applies; without --bind there is no loopback
    // exemption to claim.
    let endpoint = env
        .args
        .bind
        .as_deref()
        .and_then(|spec| resolve(spec).ok())
        .map_or(Endpoint::Media, |addr| Endpoint::Udp(addr.ip()));
    out.push(doctor_finding(env.args.link_key.as_deref(), endpoint));
    out
}

fn check_rmem(env: &Env, rate: u64, rate_note: &str) -> Vec<Finding> {
    let need = bytes_for_ms(rate, 100);
    let floor = bytes_for_ms(rate, 40);
    let persist = format!(
        "persist: install {SYSCTL_CONF} as /etc/sysctl.d/90-sluice.conf (the .deb puts it in /usr/lib/sysctl.d/) and run `sysctl --system`"
    );
    let mut out = Vec::new();
    out.push(match read_sysctl_u64(&env.args.host.proc_root, "net.core.rmem_max") {
        Err(e) => finding("rmem_max", Status::Warn, format!("could not check: {e}"), None),
        Ok(v) if v >= need => finding(
            "rmem_max",
            Status::Ok,
            format!("net.core.rmem_max = {v} bytes holds >= 100 ms of {rate_note} ({need} bytes)"),
            None,
        ),
        Ok(v) => finding(
            "rmem_max",
            if v >= floor { Status::Warn } else { Status::Fail },
            format!(
                "net.core.rmem_max = {v} bytes holds only {} ms of {rate_note}; need {need} bytes (100 ms) or the kernel drops datagrams during any stall of the receiver",
                v * 1000 / (rate / 8).max(1)
            ),
            Some(format!(
                "sysctl -w net.core.rmem_max={}\n{persist}",
                need.max(64 << 20)
            )),
        ),
    });
    out.push(match read_sysctl_u64(&env.args.host.proc_root, "net.core.rmem_default") {
        Err(e) => finding("rmem_default", Status::Warn, format!("could not check: {e}"), None),
        Ok(v) if v >= need => finding(
            "rmem_default",
            Status::Ok,
            format!("net.core.rmem_default = {v} bytes"),
            None,
        ),
        Ok(v) => finding(
            "rmem_default",
            Status::Ok,
            format!(
                "net.core.rmem_default = {v} bytes; sluice-recv sets SO_RCVBUF itself, so this only matters for other tools on this host"
            ),
            None,
        ),
    });
    // udp_mem is in pages: min pressure max. Above `max` the kernel drops UDP datagrams for all
    // sockets together.
    out.push(match read_sysctl(&env.args.host.proc_root, "net.ipv4.udp_mem") {
        Err(e) => finding("udp_mem", Status::Warn, format!("could not check: {e}"), None),
        Ok(t) => match t.split_whitespace().nth(2).and_then(|m| m.parse::<u64>().ok()) {
            None => finding("udp_mem", Status::Warn, format!("unexpected net.ipv4.udp_mem {t:?}"), None),
            Some(pages) if pages.saturating_mul(4096) >= 2 * need => finding(
                "udp_mem",
                Status::Ok,
                format!("net.ipv4.udp_mem max = {pages} pages ({} MiB)", (pages * 4096) >> 20),
                None,
            ),
            Some(pages) => finding(
                "udp_mem",
                Status::Warn,
                format!(
                    "net.ipv4.udp_mem max = {pages} pages ({} MiB) is less than twice the 100 ms buffer; all UDP sockets together are capped there",
                    (pages * 4096) >> 20
                ),
                Some(format!(
                    "sysctl -w net.ipv4.udp_mem=\"{} {} {}\"",
                    2 * need / 4096,
                    3 * need / 4096,
                    4 * need / 4096
                )),
            ),
        },
    });
    out
}

fn check_bind(env: &Env, profile: Option<&Profile>, rate: u64) -> Vec<Finding> {
    let mut out = Vec::new();
    let bind_ip = match &env.args.bind {
        None => {
            out.push(finding(
                "mtu",
                Status::Warn,
                "not checked: no --bind ADDR:PORT given".into(),
                Some("rerun with --bind DIODE_NIC_IP:PORT".into()),
            ));
            None
        }
        Some(spec) => match resolve(spec) {
            Err(e) => {
                out.push(finding(
                    "bind",
                    Status::Fail,
                    e,
                    Some("give --bind as IP:PORT".into()),
                ));
                return out;
            }
            Ok(a) => Some(a.ip()),
        },
    };
    match bind_ip {
        Some(std::net::IpAddr::V4(ip)) if ip.is_unspecified() => out.push(finding(
            "mtu",
            Status::Warn,
            "bind address 0.0.0.0 accepts datagrams from every interface; the MTU cannot be checked".into(),
            Some("bind to the diode NIC's own address (--bind DIODE_NIC_IP:PORT)".into()),
        )),
        Some(std::net::IpAddr::V4(ip)) => {
            let route_file = env.args.host.proc_root.join("net/route");
            match std::fs::read_to_string(&route_file) {
                Err(e) => out.push(finding(
                    "mtu",
                    Status::Warn,
                    format!("could not check: cannot read {}: {e}", route_file.display()),
                    None,
                )),
                Ok(t) => {
                    let routes = parse_routes(&t);
                    // The interface that owns the address is the one with the directly connected
                    // (gateway-less) route covering it; loopback lives in the local table only.
                    let direct: Vec<Route> =
                        routes.into_iter().filter(|r| r.gateway.is_unspecified()).collect();
                    let iface = if ip.is_loopback() {
                        Some("lo".to_string())
                    } else {
                        route_to(&direct, ip).map(|r| r.iface.clone())
                    };
                    match iface {
                        Some(iface) => out.push(check_mtu(
                            &env.args.host.sys_root,
                            &iface,
                            profile,
                            &format!("connected subnet of {ip}"),
                        )),
                        // Whether the address is local at all is decided by the bind probe below.
                        None => out.push(finding(
                            "mtu",
                            Status::Warn,
                            format!(
                                "could not check: no directly connected subnet in {} contains {ip}, so its interface is unknown",
                                route_file.display()
                            ),
                            Some(format!(
                                "check by hand: ip -br addr show to {ip}; cat /sys/class/net/<dev>/mtu; give the address a prefix (ip addr add {ip}/<prefix> dev <diode-if>)"
                            )),
                        )),
                    }
                }
            }
        }
        Some(ip) => out.push(finding(
            "mtu",
            Status::Warn,
            format!("could not check: {ip} is IPv6; only IPv4 routes are read from /proc/net/route"),
            Some("check by hand: ip -6 addr show; cat /sys/class/net/<dev>/mtu".into()),
        )),
        None => {}
    }
    let probe_ip = bind_ip.unwrap_or(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST));
    out.push(check_granted_buffer(SocketAddr::new(probe_ip, 0), rate));
    out
}

/// Binds a UDP socket on an ephemeral port and reads back the receive buffer the kernel grants
/// an unprivileged `SO_RCVBUF` request (what the systemd unit's listener gets).
fn check_granted_buffer(addr: SocketAddr, rate: u64) -> Finding {
    let need = bytes_for_ms(rate, 100);
    let socket = match socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .and_then(|s| s.bind(&addr.into()).map(|()| s))
    {
        Ok(s) => s,
        Err(e) => {
            return finding(
                "udp-buffer-granted",
                Status::Fail,
                format!("cannot bind a UDP socket on {addr}: {e}"),
                Some("the bind address must be an address of this host (ip addr show)".into()),
            );
        }
    };
    let _ = socket.set_recv_buffer_size(LISTEN_RCVBUF);
    match socket.recv_buffer_size() {
        Err(e) => finding(
            "udp-buffer-granted",
            Status::Warn,
            format!("could not read SO_RCVBUF back: {e}"),
            None,
        ),
        // Linux reports twice the usable size (the other half is skb bookkeeping).
        Ok(granted) if (granted / 2) as u64 >= need => finding(
            "udp-buffer-granted",
            Status::Ok,
            format!(
                "asked for SO_RCVBUF {LISTEN_RCVBUF}, kernel granted {granted} (reported, doubled) on {addr}"
            ),
            None,
        ),
        Ok(granted) => finding(
            "udp-buffer-granted",
            Status::Fail,
            format!(
                "asked for SO_RCVBUF {LISTEN_RCVBUF}, kernel granted only {granted} (reported, doubled) on {addr}; an unprivileged listener would drop datagrams during a {} ms stall",
                (granted / 2) as u64 * 1000 / (rate / 8).max(1)
            ),
            Some(format!(
                "sysctl -w net.core.rmem_max={}\npersist: install {SYSCTL_CONF} as /etc/sysctl.d/90-sluice.conf and run `sysctl --system`",
                (need.max(LISTEN_RCVBUF as u64)) * 2
            )),
        ),
    }
}

/// Loads the trust directory exactly as `listen` and `verify` will (every key parsed, weak keys
/// and unknown policy keys refused) and returns the largest `max_bundle_bytes` in its policy.
fn check_trust(dir: &Path, out: &mut Vec<Finding>) -> Option<u64> {
    match sluice_host::trust_dir::load_trust_dir(dir) {
        Ok(trust) => {
            let largest = trust
                .channels()
                .map(|(_, rule)| rule.max_bundle_bytes)
                .max();
            out.push(finding(
                "trust",
                Status::Ok,
                format!(
                    "{} trusted signer key(s) and {} channel rule(s) in {}",
                    trust.keys().len(),
                    trust.channels().count(),
                    dir.display()
                ),
                None,
            ));
            largest
        }
        Err(e) => {
            let text = format!("{e:#}");
            let (detail, fix) = match text.split_once("\nhelp: ") {
                Some((d, f)) => (d.to_string(), Some(f.to_string())),
                None => (text, None),
            };
            out.push(finding("trust", Status::Fail, detail, fix));
            None
        }
    }
}

fn check_store(store: &Path, max_bundle: Option<u64>) -> Vec<Finding> {
    let mut out = Vec::new();
    // The nearest existing directory: the store itself, or the parent it would be created in.
    let mut existing = store.to_path_buf();
    while !existing.exists() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p.to_path_buf(),
            _ => {
                existing = PathBuf::from(".");
                break;
            }
        }
    }
    if existing == store {
        out.push(probe_write(store));
    } else {
        let writable = rustix::fs::access(&existing, rustix::fs::Access::WRITE_OK).is_ok();
        out.push(finding(
            "store-writable",
            if writable { Status::Warn } else { Status::Fail },
            format!(
                "{} does not exist; {} is {}writable so it {} be created",
                store.display(),
                existing.display(),
                if writable { "" } else { "not " },
                if writable { "can" } else { "cannot" }
            ),
            Some(format!(
                "install -d -o sluice -g sluice -m 0750 {}",
                store.display()
            )),
        ));
    }
    let threshold = (10 * GIB).max(max_bundle.unwrap_or(0).saturating_mul(2));
    match rustix::fs::statvfs(&existing) {
        Err(e) => out.push(finding(
            "store-free-space",
            Status::Warn,
            format!("could not check: statvfs {}: {e}", existing.display()),
            None,
        )),
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            let gib = |b: u64| format!("{:.1} GiB", b as f64 / GIB as f64);
            let status = if max_bundle.is_some_and(|m| free < m) {
                Status::Fail
            } else if free < threshold {
                Status::Warn
            } else {
                Status::Ok
            };
            out.push(finding(
                "store-free-space",
                status,
                format!(
                    "{} free on the store's filesystem; want at least {} (10 GiB or twice the largest max_bundle_bytes)",
                    gib(free),
                    gib(threshold)
                ),
                (status != Status::Ok).then(|| {
                    "free space (release or delete reviewed bundles from quarantine/), or move the store to a larger filesystem".to_string()
                }),
            ));
        }
    }
    out
}

/// Creates, fsyncs and removes a probe file: the same operations a commit needs.
fn probe_write(store: &Path) -> Finding {
    use std::io::Write;
    let probe = store.join(format!(".doctor-probe-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)?;
        f.write_all(b"sluice doctor probe\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::remove_file(&probe)?;
        std::fs::File::open(store)?.sync_all()
    })();
    match result {
        Ok(()) => finding(
            "store-writable",
            Status::Ok,
            format!(
                "{}: created, fsynced and removed a probe file",
                store.display()
            ),
            None,
        ),
        Err(e) => {
            let _ = std::fs::remove_file(&probe);
            finding(
                "store-writable",
                Status::Fail,
                format!("{}: probe write failed: {e}", store.display()),
                Some(format!(
                    "chown -R sluice:sluice {0}; chmod 0750 {0}; check the filesystem is mounted read-write (findmnt -T {0})",
                    store.display()
                )),
            )
        }
    }
}

fn check_clock(now: SystemTime) -> Finding {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let built: u64 = option_env!("SOURCE_DATE_EPOCH")
        .and_then(|s| s.parse().ok())
        .unwrap_or(CLOCK_FLOOR)
        .max(CLOCK_FLOOR);
    let fix = "set the clock from a trusted high-side time source (chrony/PTP on the high side), or by hand: date -u -s 'YYYY-MM-DD HH:MM:SS'; bundle expiry and audit timestamps depend on it".to_string();
    if secs < built {
        finding(
            "clock",
            Status::Fail,
            format!(
                "system time {secs} (unix) is before {built} (this build's SOURCE_DATE_EPOCH, or 2024-01-01): the clock is wrong"
            ),
            Some(fix),
        )
    } else if secs > CLOCK_CEILING {
        finding(
            "clock",
            Status::Fail,
            format!("system time {secs} (unix) is after 2100: the clock is wrong"),
            Some(fix),
        )
    } else {
        finding(
            "clock",
            Status::Ok,
            format!(
                "system time {secs} (unix) is after {built} (this build's SOURCE_DATE_EPOCH, or 2024-01-01) and before 2100"
            ),
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn env(root: &Path, now: SystemTime) -> Env {
        Env {
            args: Args {
                store: root.join("store"),
                trust: root.join("trust"),
                bind: None,
                link_key: None,
                host: DoctorArgs::fake_root(root),
            },
            now,
        }
    }

    fn get<'a>(f: &'a [Finding], check: &str) -> &'a Finding {
        f.iter().find(|x| x.check == check).unwrap()
    }

    #[test]
    fn clock_before_2024_or_after_2100_fails() {
        let dir = tempfile::tempdir().unwrap();
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let f = run_checks(&env(dir.path(), at(1_000_000_000)));
        assert_eq!(get(&f, "clock").status, Status::Fail);
        let f = run_checks(&env(dir.path(), at(5_000_000_000)));
        assert_eq!(get(&f, "clock").status, Status::Fail);
        let f = run_checks(&env(dir.path(), at(1_800_000_000)));
        assert_eq!(get(&f, "clock").status, Status::Ok);
    }

    #[test]
    fn missing_proc_and_trust_are_reported_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let f = run_checks(&env(dir.path(), SystemTime::now()));
        assert!(get(&f, "rmem_max").detail.starts_with("could not check"));
        assert_eq!(get(&f, "trust").status, Status::Fail);
        // The store does not exist but its parent is writable: it can be created.
        assert_eq!(get(&f, "store-writable").status, Status::Warn);
    }

    #[test]
    fn policy_max_bundle_raises_the_free_space_threshold() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("trust")).unwrap();
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        let signer = sluice_common::bundle::keys::SecretKey::from_seed(&[7; 32]);
        std::fs::write(
            dir.path().join("trust/alice.pub"),
            signer.public().to_sluice_text("alice"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("trust/policy.toml"),
            "[defaults]\nmax_bundle_bytes = 1000\n[channels.big]\nmax_bundle_bytes = 1000000000000000\n",
        )
        .unwrap();
        let f = run_checks(&env(dir.path(), SystemTime::now()));
        assert_eq!(
            get(&f, "trust").status,
            Status::Ok,
            "{:?}",
            get(&f, "trust")
        );
        // No filesystem here has a petabyte free: one maximum bundle does not fit.
        assert_eq!(get(&f, "store-free-space").status, Status::Fail);
        assert_eq!(get(&f, "store-writable").status, Status::Ok);
    }
}
