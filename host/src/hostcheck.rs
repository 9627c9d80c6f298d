//! Host checks both `doctor` commands share: findings and their printing, sysctl readers under
//! an injectable /proc root, profile lookup, IPv4 route parsing and the interface MTU check.
//!
//! One implementation for both binaries, no copy to drift. The parsers are pure text functions
//! so tests can feed fake /proc and /sys trees.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sluice_common::exit::Exit;
use sluice_common::profile::Profile;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub check: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

pub fn finding(check: &str, status: Status, detail: String, fix: Option<String>) -> Finding {
    Finding {
        check: check.to_string(),
        status,
        detail,
        fix,
    }
}

pub fn print_findings(findings: &[Finding], json: bool) {
    if json {
        let doc = crate::json::stamp("doctor", serde_json::json!({ "findings": findings }));
        println!("{doc}");
        return;
    }
    for f in findings {
        let tag = match f.status {
            Status::Ok => "  ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        println!("[{tag}] {}: {}", f.check, f.detail);
        if let Some(fix) = &f.fix {
            for line in fix.lines() {
                println!("       fix: {line}");
            }
        }
    }
    let fails = findings.iter().filter(|f| f.status == Status::Fail).count();
    let warns = findings.iter().filter(|f| f.status == Status::Warn).count();
    println!(
        "{} checks: {fails} failed, {warns} warnings",
        findings.len()
    );
}

pub fn fmt_rate(bps: u64) -> String {
    if bps >= 1_000_000_000 {
        format!("{:.2} Gbit/s", bps as f64 / 1e9)
    } else {
        format!("{:.0} Mbit/s", bps as f64 / 1e6)
    }
}

/// Bytes the link carries in `ms` milliseconds.
pub fn bytes_for_ms(rate_bps: u64, ms: u64) -> u64 {
    rate_bps / 8 * ms / 1000
}

pub fn read_sysctl(proc_root: &Path, name: &str) -> Result<String, String> {
    let path = proc_root.join("sys").join(name.replace('.', "/"));
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("could not read {}: {e}", path.display()))
}

pub fn read_sysctl_u64(proc_root: &Path, name: &str) -> Result<u64, String> {
    let text = read_sysctl(proc_root, name)?;
    text.parse::<u64>()
        .map_err(|_| format!("{name} is not a number: {text:?}"))
}

/// Directories searched for `NAME.toml`, in order: `$SLUICE_PROFILES`, then the site's
/// /etc/sluice/profiles, then the packaged /usr/share/sluice/profiles. The built-in copies of the
/// shipped profiles come last, so a site file of the same name always wins.
pub fn profile_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("SLUICE_PROFILES") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push("/etc/sluice/profiles".into());
    dirs.push("/usr/share/sluice/profiles".into());
    dirs
}

/// A profile found by [`find_profile`], with where it came from (for messages and `doctor`).
#[derive(Clone, Debug)]
pub struct FoundProfile {
    pub profile: Profile,
    /// A file path, or `built-in NAME`.
    pub origin: String,
}

/// Why `--profile` could not be used; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ProfileLookupError {
    #[error(
        "no diode profile named {name:?} in {searched} or built in ({builtin}); give a path \
         to a .toml file or put {name}.toml in one of those directories"
    )]
    NotFound {
        name: String,
        searched: String,
        builtin: String,
    },
    #[error("cannot read profile {path}: {reason}; check the path and its permissions")]
    Unreadable { path: String, reason: String },
    #[error("profile {origin}: {reason}; fix it (field meanings: hardware/README.md)")]
    Invalid { origin: String, reason: String },
}

/// Resolves `--profile`: a spec containing `/` or ending in `.toml` is a file; anything else is a
/// name looked up in [`profile_dirs`] and then among the built-in profiles.
pub fn find_profile(spec: &str) -> Result<FoundProfile, ProfileLookupError> {
    let is_path = spec.contains('/') || spec.ends_with(".toml");
    let file = if is_path {
        Some(PathBuf::from(spec))
    } else {
        profile_dirs()
            .into_iter()
            .map(|d| d.join(format!("{spec}.toml")))
            .find(|p| p.is_file())
    };
    let (text, origin) = match (file, sluice_common::profile::builtin(spec)) {
        (Some(path), _) => (read_profile_file(&path)?, path.display().to_string()),
        (None, Some(text)) if !is_path => (text.to_string(), format!("built-in {spec}")),
        (None, _) => {
            return Err(ProfileLookupError::NotFound {
                name: spec.to_string(),
                searched: profile_dirs()
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                builtin: sluice_common::profile::BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    };
    let profile = Profile::parse(&text).map_err(|e| ProfileLookupError::Invalid {
        origin: origin.clone(),
        reason: e.to_string(),
    })?;
    Ok(FoundProfile { profile, origin })
}

/// Reads a profile file without trusting its size: at most one byte past the limit is read, so
/// `--profile /dev/zero` is an error, not an allocation.
fn read_profile_file(path: &Path) -> Result<String, ProfileLookupError> {
    use std::io::Read;
    let unreadable = |reason: String| ProfileLookupError::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let limit = sluice_common::profile::MAX_PROFILE_BYTES as u64 + 1;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_string(&mut text))
        .map_err(|e| unreadable(e.to_string()))?;
    Ok(text)
}

/// Line rate assumed when no profile is given (GbE, the common diode).
pub const DEFAULT_LINE_RATE_BPS: u64 = 1_000_000_000;
/// The sysctl file both doctors point at in their fixes.
pub const SYSCTL_CONF: &str = "hardware/sysctl/90-sluice.conf";

/// The profile and line rate both doctors size buffers against: with `--profile`, its finding
/// is pushed to `out` and its line rate used; without, [`DEFAULT_LINE_RATE_BPS`]. Also returns
/// the phrase naming where the rate came from, for the findings' text.
pub fn profile_and_rate(
    spec: Option<&str>,
    out: &mut Vec<Finding>,
) -> (Option<Profile>, u64, String) {
    let profile = spec.and_then(|spec| {
        let (found, profile) = profile_finding(spec);
        out.push(found);
        profile
    });
    let rate = profile
        .as_ref()
        .map_or(DEFAULT_LINE_RATE_BPS, |p| p.line_rate_bps);
    let note = if profile.is_some() {
        format!("the profile's line rate {}", fmt_rate(rate))
    } else {
        format!("an assumed line rate {} (no --profile)", fmt_rate(rate))
    };
    (profile, rate, note)
}

/// Prints the findings and maps them onto the exit contract ([`EXIT_CODES`]): FAILURE if any
/// check failed, else OK; warnings do not change it.
pub fn report(findings: &[Finding], json: bool) -> Exit {
    print_findings(findings, json);
    if findings.iter().any(|f| f.status == Status::Fail) {
        Exit::Failure
    } else {
        Exit::Ok
    }
}

/// What each exit code means for either `doctor` (rendered into `--help` by
/// `sluice_common::exit`).
pub const EXIT_CODES: &[(Exit, &str)] = &[
    (Exit::Ok, "no check failed (warnings allowed)"),
    (Exit::Failure, "at least one check failed; apply each `fix`"),
];

/// The flags both `doctor`s take, flattened into each one's `Args`: the profile whose rate sizes
/// the buffer checks, `--json`, and the hidden roots of /proc and /sys that tests point at a
/// fake tree (`receiver/tests/doctor.rs`, `sender/tests/doctor.rs`).
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// Diode profile: a name (looked up in $SLUICE_PROFILES, /etc/sluice/profiles,
    /// /usr/share/sluice/profiles, then the built-in profiles) or a path to a .toml file.
    #[arg(long, value_name = "NAME|FILE")]
    pub profile: Option<String>,
    /// Print `{"findings":[{"check","status","detail","fix"}...]}` instead of text.
    #[arg(long)]
    pub json: bool,
    #[arg(long, hide = true, env = "SLUICE_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,
    #[arg(long, hide = true, env = "SLUICE_SYS_ROOT", default_value = "/sys")]
    pub sys_root: PathBuf,
}

impl DoctorArgs {
    /// No profile, text output, /proc and /sys under `root` (for tests of the checks).
    pub fn fake_root(root: &Path) -> Self {
        Self {
            profile: None,
            json: false,
            proc_root: root.join("proc"),
            sys_root: root.join("sys"),
        }
    }
}

/// `doctor`'s profile check: the lookup as a finding, and the profile when it is usable.
pub fn profile_finding(spec: &str) -> (Finding, Option<Profile>) {
    match find_profile(spec) {
        Ok(found) => {
            let p = found.profile;
            let detail = format!(
                "{} parses: {} (mtu {}, line rate {})",
                found.origin,
                p.name,
                p.mtu,
                fmt_rate(p.line_rate_bps)
            );
            (finding("profile", Status::Ok, detail, None), Some(p))
        }
        Err(e) => (finding("profile", Status::Fail, e.to_string(), None), None),
    }
}

/// One IPv4 route from /proc/net/route.
#[derive(Debug, Clone)]
pub struct Route {
    pub iface: String,
    pub dest: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub metric: u32,
}

/// Parses /proc/net/route (addresses are hex in host byte order, i.e. little-endian on x86).
pub fn parse_routes(text: &str) -> Vec<Route> {
    let hex = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| Ipv4Addr::from(u32::from_be(v)))
    };
    let mut routes = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let flags = u32::from_str_radix(f[3], 16).unwrap_or(0);
        if flags & 1 == 0 {
            continue; // RTF_UP not set
        }
        if let (Some(dest), Some(gateway), Some(mask)) = (hex(f[1]), hex(f[2]), hex(f[7])) {
            routes.push(Route {
                iface: f[0].to_string(),
                dest,
                gateway,
                mask,
                metric: f[6].parse().unwrap_or(0),
            });
        }
    }
    routes
}

/// Longest-prefix match, lowest metric first among equals.
pub fn route_to(routes: &[Route], ip: Ipv4Addr) -> Option<&Route> {
    let ipn = u32::from(ip);
    routes
        .iter()
        .filter(|r| ipn & u32::from(r.mask) == u32::from(r.dest))
        .max_by(|a, b| {
            u32::from(a.mask)
                .count_ones()
                .cmp(&u32::from(b.mask).count_ones())
                .then(b.metric.cmp(&a.metric))
        })
}

/// Resolves HOST:PORT to an address without DNS surprises: literal IPs are used as is.
pub fn resolve(spec: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = spec.parse::<SocketAddr>() {
        return Ok(a);
    }
    spec.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {spec:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{spec:?} resolves to no address"))
}

/// Reads the MTU of `iface` from the sys tree and compares it with the profile.
pub fn check_mtu(sys_root: &Path, iface: &str, profile: Option<&Profile>, how: &str) -> Finding {
    let path = sys_root.join("class/net").join(iface).join("mtu");
    let mtu = match std::fs::read_to_string(&path) {
        Ok(t) => match t.trim().parse::<u32>() {
            Ok(m) => m,
            Err(_) => {
                return finding(
                    "mtu",
                    Status::Warn,
                    format!("{} holds {:?}, not a number", path.display(), t.trim()),
                    None,
                );
            }
        },
        Err(e) => {
            return finding(
                "mtu",
                Status::Warn,
                format!("could not check: cannot read {}: {e}", path.display()),
                None,
            );
        }
    };
    match profile {
        None => finding(
            "mtu",
            Status::Ok,
            format!("{iface} ({how}) has MTU {mtu}; no --profile to compare against"),
            None,
        ),
        Some(p) if p.mtu == mtu => finding(
            "mtu",
            Status::Ok,
            format!(
                "{iface} ({how}) has MTU {mtu}, as profile {} expects",
                p.name
            ),
            None,
        ),
        Some(p) => finding(
            "mtu",
            if mtu < p.mtu {
                Status::Fail
            } else {
                Status::Warn
            },
            format!(
                "{iface} ({how}) has MTU {mtu} but profile {} expects {}{}",
                p.name,
                p.mtu,
                if mtu < p.mtu {
                    ": datagrams of the profile's size would be fragmented or dropped"
                } else {
                    ": the other end may drop frames larger than the profile's MTU"
                }
            ),
            Some(format!(
                "ip link set dev {iface} mtu {}  (persist it in the interface configuration; both NICs of the diode and any media converter must agree), or use the profile that matches this link",
                p.mtu
            )),
        ),
    }
}
