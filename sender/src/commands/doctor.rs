//! `sluice-send doctor`: preflight checks of the low-side host before a transfer.
//!
//! Each check yields a [`Finding`] (ok / warn / fail, what was measured, the exact fix). The
//! checks read only from the [`Args`] (proc and sys roots, the `ip` program), so tests feed a fake
//! tree: `SLUICE_PROC_ROOT`, `SLUICE_SYS_ROOT` and `SLUICE_IP` (or the hidden `--proc-root`,
//! `--sys-root`, `--ip-cmd` flags). Exit 0 if nothing failed, 1 otherwise.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use sluice_common::exit::{self, CommandError, Exit};
use sluice_common::profile::Profile;

use sluice_host::hostcheck::*;
use sluice_host::linkkey::{Endpoint, doctor_finding};

/// What each exit code means (the same for both `doctor`s).
pub use sluice_host::hostcheck::EXIT_CODES;

/// Preflight checks of this host (socket buffers, MTU, static neighbour, link key, profile)
///
/// Check the low-side host: socket buffers, MTU, static neighbour for the diode peer, link key
/// and profile. Prints one finding per check with the exact fix to apply.
///
/// Examples:
///
///   sluice-send doctor --profile gbe-fibre-1500 --to 10.0.0.2:7000
///   sluice-send doctor --to 10.0.0.2:7000 --link-key /etc/sluice/link.key --json | jq '.findings[] | select(.status != "ok")'
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = exit::help_table(EXIT_CODES)
)]
pub struct Args {
    /// The receiver address the sender will send to; enables the MTU and neighbour checks.
    #[arg(long, value_name = "HOST:PORT")]
    pub to: Option<String>,
    /// Link key file (32 raw bytes or 64 hex digits) to check the way `udp` will read it. Without
    /// it the public default key is assumed, a failure unless --to is loopback.
    #[arg(long, value_name = "FILE")]
    pub link_key: Option<PathBuf>,
    #[command(flatten)]
    pub host: DoctorArgs,
    #[arg(long, hide = true, env = "SLUICE_IP", default_value = "ip")]
    pub ip_cmd: String,
}

/// Runs every check; failed checks are the exit code, not an error.
pub fn run(args: Args) -> Result<Exit, CommandError> {
    Ok(report(&run_checks(&args), args.host.json))
}

pub fn run_checks(env: &Args) -> Vec<Finding> {
    let mut out = Vec::new();
    let (profile, rate, rate_note) = profile_and_rate(env.host.profile.as_deref(), &mut out);
    out.push(check_wmem(env, rate, &rate_note));
    out.extend(check_path(env, profile.as_ref()));
    // The loader and the public-key rule `udp` and `watch` apply, so doctor accepts exactly what
    // they accept; without --to there is no loopback exemption to claim.
    let endpoint = env
        .to
        .as_deref()
        .and_then(|spec| resolve(spec).ok())
        .map_or(Endpoint::Media, |addr| Endpoint::Udp(addr.ip()));
    out.push(doctor_finding(env.link_key.as_deref(), endpoint));
    out
}

fn check_wmem(env: &Args, rate: u64, rate_note: &str) -> Finding {
    // The sender paces, so its buffer only has to absorb one batch while the NIC queue drains;
    // ~20 ms of line rate is ample (hardware/sysctl/90-sluice.conf sets 16 MiB).
    let need = bytes_for_ms(rate, 20).max(4 << 20);
    match read_sysctl_u64(&env.host.proc_root, "net.core.wmem_max") {
        Err(e) => finding("wmem_max", Status::Warn, e, None),
        Ok(v) if v >= need => finding(
            "wmem_max",
            Status::Ok,
            format!("net.core.wmem_max = {v} bytes, at least {need} (~20 ms of {rate_note})"),
            None,
        ),
        Ok(v) => finding(
            "wmem_max",
            Status::Warn,
            format!(
                "net.core.wmem_max = {v} bytes caps SO_SNDBUF below {need} (~20 ms of {rate_note}); batches may block and pacing becomes bursty"
            ),
            Some(format!(
                "sysctl -w net.core.wmem_max={}\npersist: install {SYSCTL_CONF} as /etc/sysctl.d/90-sluice.conf and run `sysctl --system`",
                need.max(16 << 20)
            )),
        ),
    }
}

fn check_path(env: &Args, profile: Option<&Profile>) -> Vec<Finding> {
    let Some(spec) = &env.to else {
        return vec![finding(
            "mtu",
            Status::Warn,
            "not checked: no --to HOST:PORT given (MTU and static neighbour checks need the receiver address)".into(),
            Some("rerun with --to RECEIVER_IP:PORT".into()),
        )];
    };
    let addr = match resolve(spec) {
        Ok(a) => a,
        Err(e) => {
            return vec![finding(
                "route",
                Status::Fail,
                e,
                Some("give --to as IP:PORT".into()),
            )];
        }
    };
    let std::net::IpAddr::V4(ip) = addr.ip() else {
        return vec![finding(
            "mtu",
            Status::Warn,
            format!(
                "could not check: {ip} is IPv6; only IPv4 routes are read from /proc/net/route",
                ip = addr.ip()
            ),
            Some(format!(
                "check by hand: ip -6 route get {}; ip link show <dev>",
                addr.ip()
            )),
        )];
    };
    let route_file = env.host.proc_root.join("net/route");
    let routes = match std::fs::read_to_string(&route_file) {
        Ok(t) => parse_routes(&t),
        Err(e) => {
            return vec![finding(
                "route",
                Status::Warn,
                format!("could not check: cannot read {}: {e}", route_file.display()),
                None,
            )];
        }
    };
    let mut out = Vec::new();
    // Loopback (tests, the diode emulator's smoke runs) lives in the local table only.
    let lo = Route {
        iface: "lo".into(),
        dest: Ipv4Addr::new(127, 0, 0, 0),
        gateway: Ipv4Addr::UNSPECIFIED,
        mask: Ipv4Addr::new(255, 0, 0, 0),
        metric: 0,
    };
    let route = if ip.is_loopback() {
        Some(&lo)
    } else {
        route_to(&routes, ip)
    };
    let Some(route) = route else {
        out.push(finding(
            "route",
            Status::Fail,
            format!("no route to {ip}: datagrams cannot leave this host"),
            Some(format!(
                "give the diode NIC an address on {ip}'s subnet, e.g. ip addr add <local-ip>/<prefix> dev <diode-if>"
            )),
        ));
        return out;
    };
    if route.gateway.is_unspecified() {
        out.push(finding(
            "route",
            Status::Ok,
            format!("{ip} is directly connected via {}", route.iface),
            None,
        ));
    } else {
        out.push(finding(
            "route",
            Status::Warn,
            format!(
                "{ip} is reached through gateway {} on {}; a diode link is normally one directly connected subnet",
                route.gateway, route.iface
            ),
            Some(format!(
                "put the diode NIC on {ip}'s subnet (ip addr add <local-ip>/<prefix> dev <diode-if>) so the route is direct"
            )),
        ));
    }
    out.push(check_mtu(
        &env.host.sys_root,
        &route.iface,
        profile,
        &format!("routes to {ip}"),
    ));
    let neigh_ip = if route.gateway.is_unspecified() {
        ip
    } else {
        route.gateway
    };
    if ip.is_loopback() {
        out.push(finding(
            "static-neighbour",
            Status::Ok,
            format!("{ip} is loopback: no neighbour entry needed"),
            None,
        ));
    } else {
        out.push(check_neighbour(&env.ip_cmd, neigh_ip, &route.iface));
    }
    out
}

/// No ARP reply crosses a diode: the sender needs a PERMANENT neighbour entry for the peer.
fn check_neighbour(ip_cmd: &str, ip: Ipv4Addr, iface: &str) -> Finding {
    let fix = format!(
        "ip neigh replace {ip} lladdr <receiver-NIC-MAC> dev {iface} nud permanent  (persist it, e.g. in systemd-networkd [Neighbor] or an ifupdown post-up line)"
    );
    let output = match Command::new(ip_cmd)
        .args(["-j", "neigh", "show", &ip.to_string()])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            return finding(
                "static-neighbour",
                Status::Warn,
                format!("could not check: {ip_cmd} not runnable ({e}); install iproute2"),
                Some(fix),
            );
        }
    };
    if !output.status.success() {
        return finding(
            "static-neighbour",
            Status::Warn,
            format!(
                "could not check: `{ip_cmd} -j neigh show {ip}` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Some(fix),
        );
    }
    let entries: Vec<serde_json::Value> = match serde_json::from_slice(&output.stdout) {
        Ok(v) => v,
        Err(e) => {
            return finding(
                "static-neighbour",
                Status::Warn,
                format!("could not check: unexpected output of `ip -j neigh`: {e}"),
                Some(fix),
            );
        }
    };
    let permanent = entries.iter().find(|e| {
        e.get("state")
            .and_then(|s| s.as_array())
            .is_some_and(|s| s.iter().any(|x| x == "PERMANENT"))
    });
    match permanent {
        Some(e) => finding(
            "static-neighbour",
            Status::Ok,
            format!(
                "{ip} has a PERMANENT neighbour entry ({} on {})",
                e.get("lladdr").and_then(|v| v.as_str()).unwrap_or("?"),
                e.get("dev").and_then(|v| v.as_str()).unwrap_or(iface)
            ),
            None,
        ),
        None => finding(
            "static-neighbour",
            Status::Warn,
            format!(
                "{ip} has no PERMANENT neighbour entry ({} entries of other states); no ARP reply crosses a diode, so the sender's datagrams would never leave",
                entries.len()
            ),
            Some(fix),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
diode0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";

    #[test]
    fn longest_prefix_wins() {
        let routes = parse_routes(ROUTES);
        assert_eq!(routes.len(), 2);
        assert_eq!(
            route_to(&routes, "10.0.0.2".parse().unwrap())
                .unwrap()
                .iface,
            "diode0"
        );
        let def = route_to(&routes, "8.8.8.8".parse().unwrap()).unwrap();
        assert_eq!(def.iface, "eth0");
        assert_eq!(def.gateway, Ipv4Addr::new(192, 168, 1, 1));
    }

    #[test]
    fn buffer_sizes() {
        assert_eq!(bytes_for_ms(1_000_000_000, 100), 12_500_000);
    }
}
