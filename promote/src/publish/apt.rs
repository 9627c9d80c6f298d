//! `apt` target: every `*.deb` in the entry goes into an internal apt repository whose indexes
//! are signed with the site's OpenPGP key, so stock `apt-get` with `signed-by=` accepts it.
//!
//! ```text
//! REPO/pool/<suite>/<component>/<package>/<package>_<version>_<arch>.deb
//! REPO/dists/<suite>/{Release,InRelease,Release.gpg}
//! REPO/dists/<suite>/<component>/binary-<arch>/Packages
//! ```
//!
//! One publish, under `flock(REPO/.sluice-promote.lock)`: copy the new packages into the pool
//! (temp + fsync + rename; an identical file already there is fine, a different file under the
//! same name is refused), build a complete new `dists/<suite>` beside the live one with
//! `apt-ftparchive`, sign Release with `gpg` in a throw-away GNUPGHOME (Release.gpg and
//! InRelease), swap it in with one `renameat2(RENAME_EXCHANGE)`, and only then delete pool files
//! pruned by `keep_versions`. A client therefore sees the old or the new index, each consistent
//! with the pool.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags};

use super::{Entry, PubError, hash_copy, have_tool, tool};
use crate::config::Target;

/// Control fields of one package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deb {
    pub package: String,
    pub version: String,
    pub arch: String,
}

fn field_ok(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b) || extra.contains(&b))
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

/// `dpkg-deb --field` of Package, Version, Architecture, validated to be safe in a file name.
pub fn read_deb(path: &Path) -> Result<Deb, String> {
    let p = path.to_string_lossy();
    let out = tool(
        &[
            "dpkg-deb",
            "--field",
            &p,
            "Package",
            "Version",
            "Architecture",
        ],
        &[],
        None,
    )?;
    let text = String::from_utf8_lossy(&out);
    let mut f = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            f.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    let get = |k: &str| {
        f.get(k)
            .cloned()
            .ok_or_else(|| format!("{p}: no {k} field"))
    };
    let d = Deb {
        package: get("Package")?,
        version: get("Version")?,
        arch: get("Architecture")?,
    };
    if !field_ok(&d.package, b"")
        || !field_ok(&d.version, b":~_")
        || !field_ok(&d.arch, b"")
        || d.package.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Err(format!(
            "{p}: package name, version or architecture has unsafe characters: {d:?}"
        ));
    }
    Ok(d)
}

impl Deb {
    /// Pool file name (the epoch is not part of Debian file names).
    pub fn file_name(&self) -> String {
        let v = self
            .version
            .split_once(':')
            .map_or(&*self.version, |(_, v)| v);
        format!("{}_{v}_{}.deb", self.package, self.arch)
    }
}

struct AptCfg<'a> {
    repo: &'a Path,
    suite: &'a str,
    component: &'a str,
    signing_key: &'a Path,
    keep_versions: u32,
    architectures: &'a [String],
    origin: &'a str,
    label: &'a str,
}

fn cfg(t: &Target) -> AptCfg<'_> {
    match t {
        Target::Apt {
            repo,
            suite,
            component,
            signing_key,
            keep_versions,
            architectures,
            origin,
            label,
        } => AptCfg {
            repo,
            suite,
            component,
            signing_key,
            keep_versions: *keep_versions,
            architectures,
            origin: origin.as_deref().unwrap_or("Sluice"),
            label: label.as_deref().unwrap_or("Sluice internal"),
        },
        _ => unreachable!("apt::cfg on a non-apt target"),
    }
}

pub fn preflight(t: &Target, e: &Entry, _work: &Path) -> Result<(), PubError> {
    let c = cfg(t);
    for prog in ["dpkg-deb", "dpkg", "apt-ftparchive", "gpg"] {
        if !have_tool(prog) {
            return Err(PubError::Retry(format!(
                "apt target needs `{prog}` (packages dpkg, apt-utils, gnupg)"
            )));
        }
    }
    let key = fs::read_to_string(c.signing_key).map_err(|err| {
        PubError::Retry(format!("signing_key {}: {err}", c.signing_key.display()))
    })?;
    if !key.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
        return Err(PubError::Retry(format!(
            "signing_key {} is not an armored OpenPGP secret key",
            c.signing_key.display()
        )));
    }
    for rel in e.files_ending(".deb") {
        let d = read_deb(&e.path_of(rel)).map_err(PubError::Fatal)?;
        if d.arch != "all" && !c.architectures.contains(&d.arch) {
            return Err(PubError::Fatal(format!(
                "{rel}: architecture {} is not in the target's architectures {:?}",
                d.arch, c.architectures
            )));
        }
    }
    Ok(())
}

fn retry(what: impl std::fmt::Display) -> impl Fn(io::Error) -> PubError {
    move |e| PubError::Retry(format!("{what}: {e}"))
}

fn sync_dir(d: &Path) -> io::Result<()> {
    File::open(d)?.sync_all()
}

/// Copies `from` to `dir/name` via a temp file, checking the bytes' blake3 against `want`.
fn install_file(from: &Path, dir: &Path, name: &str, want: &str) -> Result<(), PubError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut src = File::open(from).map_err(retry(from.display()))?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(retry(tmp.display()))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).map_err(retry(from.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(retry(tmp.display()))?;
    }
    if h.finalize().to_hex().as_str() != want {
        let _ = fs::remove_file(&tmp);
        return Err(PubError::Fatal(format!(
            "{}: no longer matches its receipt; not publishing",
            from.display()
        )));
    }
    out.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(retry(tmp.display()))?;
    out.sync_all().map_err(retry(tmp.display()))?;
    fs::rename(&tmp, dir.join(name)).map_err(retry(dir.display()))?;
    sync_dir(dir).map_err(retry(dir.display()))
}

/// `dpkg --compare-versions a lt b`.
fn version_lt(a: &str, b: &str) -> bool {
    tool(&["dpkg", "--compare-versions", a, "lt", b], &[], None).is_ok()
}

/// Every pool file of this suite/component with its fields (relative path from REPO).
fn pool_debs(repo: &Path, pool_rel: &str) -> Result<Vec<(String, Deb)>, PubError> {
    let mut out = Vec::new();
    let pool = repo.join(pool_rel);
    let rd = match fs::read_dir(&pool) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(PubError::Retry(format!("{}: {e}", pool.display()))),
    };
    for pkg_dir in rd {
        let pkg_dir = pkg_dir.map_err(retry(pool.display()))?;
        if !pkg_dir.file_type().map_err(retry(pool.display()))?.is_dir() {
            continue;
        }
        for f in fs::read_dir(pkg_dir.path()).map_err(retry(pool.display()))? {
            let f = f.map_err(retry(pool.display()))?;
            let name = f.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".deb") || name.starts_with('.') {
                continue;
            }
            let d = read_deb(&f.path()).map_err(PubError::Retry)?;
            let pkg = pkg_dir.file_name().to_string_lossy().into_owned();
            out.push((format!("{pool_rel}/{pkg}/{name}"), d));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Pool files beyond the newest `keep` versions of each (package, architecture).
fn pruned(debs: &[(String, Deb)], keep: u32) -> Vec<String> {
    if keep == 0 {
        return Vec::new();
    }
    let mut groups: BTreeMap<(String, String), Vec<&(String, Deb)>> = BTreeMap::new();
    for d in debs {
        groups
            .entry((d.1.package.clone(), d.1.arch.clone()))
            .or_default()
            .push(d);
    }
    let mut out = Vec::new();
    for (_, mut v) in groups {
        // Newest first.
        v.sort_by(|a, b| {
            if version_lt(&a.1.version, &b.1.version) {
                std::cmp::Ordering::Greater
            } else if version_lt(&b.1.version, &a.1.version) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Equal
            }
        });
        out.extend(v.into_iter().skip(keep as usize).map(|d| d.0.clone()));
    }
    out
}

/// Drops the stanzas whose `Filename:` is in `drop`.
fn filter_packages(text: &str, drop: &[String]) -> String {
    let mut out = String::new();
    for stanza in text.split("\n\n") {
        let s = stanza.trim_matches('\n');
        if s.is_empty() {
            continue;
        }
        let file = s
            .lines()
            .find_map(|l| l.strip_prefix("Filename: "))
            .unwrap_or("");
        if drop.iter().any(|d| d == file) {
            continue;
        }
        out.push_str(s);
        out.push_str("\n\n");
    }
    out
}

/// An flock on `REPO/.sluice-promote.lock` (two pipelines may share a repository).
fn lock_repo(repo: &Path) -> Result<File, PubError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(repo.join(".sluice-promote.lock"))
        .map_err(retry("repository lock"))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| PubError::Retry(format!("repository lock: {e}")))?;
    Ok(f)
}

fn ftp_opt(k: &str, v: &str) -> String {
    format!("APT::FTPArchive::Release::{k}={v}")
}

pub fn publish(t: &Target, e: &Entry, _work: &Path) -> Result<String, PubError> {
    let c = cfg(t);
    fs::create_dir_all(c.repo).map_err(retry(c.repo.display()))?;
    let _lock = lock_repo(c.repo)?;
    let pool_rel = format!("pool/{}/{}", c.suite, c.component);
    // 1. New packages into the pool.
    let mut added = Vec::new();
    for rel in e.files_ending(".deb") {
        let src = e.path_of(rel);
        let want = &e
            .receipt
            .entries
            .iter()
            .find(|r| r.path == rel)
            .expect("receipt entry of a listed file")
            .blake3
            .clone()
            .unwrap_or_default();
        let d = read_deb(&src).map_err(PubError::Fatal)?;
        let dir = c.repo.join(&pool_rel).join(&d.package);
        fs::create_dir_all(&dir).map_err(retry(dir.display()))?;
        let name = d.file_name();
        let dest = dir.join(&name);
        if dest.exists() {
            if &hash_copy(&dest, None).map_err(retry(dest.display()))? != want {
                return Err(PubError::Fatal(format!(
                    "{}: a different package with the same name, version and architecture is already in the repository",
                    dest.display()
                )));
            }
        } else {
            install_file(&src, &dir, &name, want)?;
        }
        added.push(format!("{} {} {}", d.package, d.version, d.arch));
    }
    // 2. Old versions beyond keep_versions (removed from the index now, from the pool after).
    let debs = pool_debs(c.repo, &pool_rel)?;
    let drop = pruned(&debs, c.keep_versions);
    // 3. A complete new dists/<suite> beside the live one.
    let dists = c.repo.join("dists");
    fs::create_dir_all(&dists).map_err(retry(dists.display()))?;
    let live = dists.join(c.suite);
    let next = dists.join(format!(".{}.new", c.suite));
    if next.exists() {
        fs::remove_dir_all(&next).map_err(retry(next.display()))?;
    }
    fs::create_dir(&next).map_err(retry(next.display()))?;
    // Other components of the same suite (another pipeline's) are carried over as they are.
    let mut components = vec![c.component.to_string()];
    if let Ok(rd) = fs::read_dir(&live) {
        for ent in rd.flatten() {
            let n = ent.file_name().to_string_lossy().into_owned();
            if n != c.component && ent.file_type().is_ok_and(|t| t.is_dir()) {
                copy_tree(&ent.path(), &next.join(&n)).map_err(retry("copy other component"))?;
                components.push(n);
            }
        }
    }
    components.sort();
    for arch in c.architectures {
        let bin = next.join(c.component).join(format!("binary-{arch}"));
        fs::create_dir_all(&bin).map_err(retry(bin.display()))?;
        let packages = if c.repo.join(&pool_rel).exists() {
            let out = tool(
                &["apt-ftparchive", "--arch", arch, "packages", &pool_rel],
                &[],
                Some(c.repo),
            )
            .map_err(PubError::Retry)?;
            filter_packages(&String::from_utf8_lossy(&out), &drop)
        } else {
            String::new()
        };
        write_synced(&bin.join("Packages"), packages.as_bytes())?;
    }
    let archs = c.architectures.join(" ");
    let comps = components.join(" ");
    let opts = [
        ftp_opt("Origin", c.origin),
        ftp_opt("Label", c.label),
        ftp_opt("Suite", c.suite),
        ftp_opt("Codename", c.suite),
        ftp_opt("Architectures", &archs),
        ftp_opt("Components", &comps),
    ];
    let mut argv: Vec<&str> = vec!["apt-ftparchive"];
    for o in &opts {
        argv.push("-o");
        argv.push(o);
    }
    argv.extend(["release", "."]);
    let release = tool(&argv, &[], Some(&next)).map_err(PubError::Retry)?;
    write_synced(&next.join("Release"), &release)?;
    sign_release(c.signing_key, &next)?;
    sync_tree_dirs(&next).map_err(retry("fsync new index"))?;
    // 4. Swap it in: one rename, clients see the old or the new index.
    if live.exists() {
        rustix::fs::renameat_with(CWD, &next, CWD, &live, RenameFlags::EXCHANGE)
            .map_err(|e| PubError::Retry(format!("swap {}: {e}", live.display())))?;
        sync_dir(&dists).map_err(retry(dists.display()))?;
        fs::remove_dir_all(&next).map_err(retry(next.display()))?;
    } else {
        rustix::fs::renameat_with(CWD, &next, CWD, &live, RenameFlags::NOREPLACE)
            .map_err(|e| PubError::Retry(format!("rename {}: {e}", live.display())))?;
    }
    sync_dir(&dists).map_err(retry(dists.display()))?;
    // 5. Pruned files leave the pool last (no index references them any more).
    for rel in &drop {
        let _ = fs::remove_file(c.repo.join(rel));
    }
    Ok(format!(
        "{} {}/{}: added {}{}",
        c.repo.display(),
        c.suite,
        c.component,
        if added.is_empty() {
            "nothing".to_string()
        } else {
            added.join(", ")
        },
        if drop.is_empty() {
            String::new()
        } else {
            format!("; pruned {}", drop.join(", "))
        }
    ))
}

fn write_synced(p: &Path, bytes: &[u8]) -> Result<(), PubError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(p)
        .map_err(retry(p.display()))?;
    f.write_all(bytes).map_err(retry(p.display()))?;
    f.sync_all().map_err(retry(p.display()))
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    for ent in fs::read_dir(from)? {
        let ent = ent?;
        let ft = ent.file_type()?;
        let dest = to.join(ent.file_name());
        if ft.is_dir() {
            copy_tree(&ent.path(), &dest)?;
        } else if ft.is_file() {
            fs::copy(ent.path(), &dest)?;
        }
    }
    Ok(())
}

fn sync_tree_dirs(d: &Path) -> io::Result<()> {
    for ent in fs::read_dir(d)? {
        let ent = ent?;
        if ent.file_type()?.is_dir() {
            sync_tree_dirs(&ent.path())?;
        }
    }
    sync_dir(d)
}

/// Signs `dir/Release` (InRelease, Release.gpg) with the armored secret key in a throw-away
/// GNUPGHOME that is removed afterwards (its agent is stopped first).
fn sign_release(key: &Path, dir: &Path) -> Result<(), PubError> {
    let home = tempfile::Builder::new()
        .prefix("sluice-gpg-")
        .tempdir_in(std::env::temp_dir())
        .map_err(retry("temporary GNUPGHOME"))?;
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o700))
        .map_err(retry("temporary GNUPGHOME"))?;
    let env: [(&str, &Path); 2] = [("GNUPGHOME", home.path()), ("HOME", home.path())];
    let keyp = key.to_string_lossy();
    let res = (|| {
        tool(
            &["gpg", "--batch", "--quiet", "--import", &keyp],
            &env,
            None,
        )
        .map_err(PubError::Retry)?;
        let rel = dir.join("Release");
        let relp = rel.to_string_lossy();
        let inrel: PathBuf = dir.join("InRelease");
        let sig: PathBuf = dir.join("Release.gpg");
        let common = [
            "gpg",
            "--batch",
            "--quiet",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--digest-algo",
            "SHA512",
        ];
        let inp = inrel.to_string_lossy();
        let mut a: Vec<&str> = common.to_vec();
        a.extend(["--clearsign", "--output", &inp, &relp]);
        tool(&a, &env, None).map_err(PubError::Retry)?;
        let sigp = sig.to_string_lossy();
        let mut b: Vec<&str> = common.to_vec();
        b.extend(["--armor", "--detach-sign", "--output", &sigp, &relp]);
        tool(&b, &env, None).map_err(PubError::Retry)?;
        for f in [&inrel, &sig] {
            File::open(f)
                .and_then(|f| f.sync_all())
                .map_err(retry(f.display()))?;
        }
        Ok(())
    })();
    let _ = tool(&["gpgconf", "--kill", "gpg-agent"], &env, None);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_filter_and_file_names() {
        let t = "Package: a\nFilename: pool/x/a_1_all.deb\n\nPackage: a\nFilename: pool/x/a_2_all.deb\n\n";
        let f = filter_packages(t, &["pool/x/a_1_all.deb".to_string()]);
        assert_eq!(f, "Package: a\nFilename: pool/x/a_2_all.deb\n\n");
        let d = Deb {
            package: "a".into(),
            version: "1:2.0-1".into(),
            arch: "amd64".into(),
        };
        assert_eq!(d.file_name(), "a_2.0-1_amd64.deb");
        assert!(!field_ok("../x", b""));
        assert!(field_ok("1:2.0~rc1-1", b":~_"));
    }
}
