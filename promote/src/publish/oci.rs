//! `oci` target: every directory of the entry that holds an `oci-layout` file is an OCI image
//! layout; each manifest in its `index.json` with an `org.opencontainers.image.ref.name`
//! annotation is pushed to `REGISTRY/PREFIX/NAME:TAG` with
//! `skopeo --policy <own policy.json> copy --preserve-digests --all --dest-tls-verify=… oci:DIR:REF docker://…`.
//! The ref name is `TAG` (NAME is the layout directory's name) or `NAME:TAG`. Afterwards the
//! registry's manifest digest is compared with the layout's: digests are never changed.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Entry, PubError, have_tool, registry, tool};
use crate::config::{Target, repo_name_ok, tag_ok};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The source policy skopeo is given: images are only ever read from a local OCI layout that
/// already passed Sluice's signature check, scan and approvals; anything else is rejected.
pub const POLICY_JSON: &str = r#"{
  "default": [{ "type": "reject" }],
  "transports": { "oci": { "": [{ "type": "insecureAcceptAnything" }] } }
}
"#;

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// One image to push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The layout directory (absolute).
    pub layout: PathBuf,
    /// The ref name in index.json (`oci:DIR:REF`).
    pub reference: String,
    pub name: String,
    pub tag: String,
    /// Manifest digest from index.json (`sha256:…`).
    pub digest: String,
}

/// Every image of every layout in the entry.
pub fn images(e: &Entry) -> Result<Vec<Image>, String> {
    let mut out = Vec::new();
    for rel in e.files_ending("oci-layout") {
        let (dir_rel, file) = rel.rsplit_once('/').unwrap_or(("", rel));
        if file != "oci-layout" {
            continue;
        }
        let layout = e.files.join(dir_rel);
        let idx_bytes = std::fs::read(layout.join("index.json"))
            .map_err(|err| format!("OCI layout {dir_rel:?}: index.json: {err}"))?;
        let idx: Index = serde_json::from_slice(&idx_bytes)
            .map_err(|err| format!("OCI layout {dir_rel:?}: index.json: {err}"))?;
        let dir_name = Path::new(dir_rel)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut found = false;
        for m in idx.manifests {
            let Some(r) = m.annotations.get(REF_NAME) else {
                continue;
            };
            found = true;
            let (name, tag) = match r.rsplit_once(':') {
                Some((n, t)) if !t.contains('/') => (n.to_string(), t.to_string()),
                _ => (dir_name.clone(), r.clone()),
            };
            if !repo_name_ok(&name) || !tag_ok(&tag) {
                return Err(format!(
                    "OCI layout {dir_rel:?}: ref {r:?} gives name {name:?} tag {tag:?}, not a valid repository:tag (name the layout directory in lowercase, or use NAME:TAG)"
                ));
            }
            if !m.digest.starts_with("sha256:") || m.digest.len() != 71 {
                return Err(format!(
                    "OCI layout {dir_rel:?}: manifest digest {:?} is not sha256",
                    m.digest
                ));
            }
            if layout.to_string_lossy().contains(':') {
                return Err(format!(
                    "OCI layout {dir_rel:?}: a ':' in the path cannot be passed to skopeo"
                ));
            }
            out.push(Image {
                layout: layout.clone(),
                reference: r.clone(),
                name,
                tag,
                digest: m.digest,
            });
        }
        if !found {
            return Err(format!(
                "OCI layout {dir_rel:?}: no manifest in index.json has an {REF_NAME} annotation"
            ));
        }
    }
    Ok(out)
}

fn parts(t: &Target) -> (&str, &str, bool) {
    match t {
        Target::Oci {
            registry,
            prefix,
            tls_verify,
        } => (registry, prefix, *tls_verify),
        _ => unreachable!("oci::parts on a non-oci target"),
    }
}

fn dest(registry: &str, prefix: &str, img: &Image) -> String {
    if prefix.is_empty() {
        format!("{registry}/{}:{}", img.name, img.tag)
    } else {
        format!("{registry}/{prefix}/{}:{}", img.name, img.tag)
    }
}

/// A private `HOME`/`TMPDIR` for skopeo below `work` (removed on drop), so no user's
/// registry credentials or policy are picked up.
fn skopeo_home(work: &Path) -> Result<tempfile::TempDir, PubError> {
    tempfile::Builder::new()
        .prefix("sluice-skopeo-")
        .tempdir_in(work)
        .map_err(|err| PubError::Retry(format!("temporary skopeo home: {err}")))
}

/// The registry must answer the distribution API check (`registry.rs`) before anything of the
/// bundle is published anywhere.
pub fn preflight(t: &Target, e: &Entry, work: &Path) -> Result<(), PubError> {
    let imgs = images(e).map_err(PubError::Fatal)?;
    let Some(first) = imgs.first() else {
        return Ok(());
    };
    if !have_tool("skopeo") {
        return Err(PubError::Retry("oci target needs `skopeo`".into()));
    }
    let (registry, prefix, tls) = parts(t);
    let home = skopeo_home(work)?;
    let env: [(&str, &Path); 2] = [("HOME", home.path()), ("TMPDIR", home.path())];
    registry::check(registry, tls, &dest(registry, prefix, first), &env).map_err(PubError::Retry)
}

/// The manifest digest the registry serves for `reference` (None if it has none).
fn remote_digest(reference: &str, tls: bool, env: &[(&str, &Path)], work: &Path) -> Option<String> {
    let raw = tool(
        &[
            "skopeo",
            "inspect",
            "--raw",
            &format!("--tls-verify={tls}"),
            &format!("docker://{reference}"),
        ],
        env,
        None,
    )
    .ok()?;
    let f = work.join("manifest.raw");
    std::fs::write(&f, raw).ok()?;
    let d = tool(
        &["skopeo", "manifest-digest", &f.to_string_lossy()],
        env,
        None,
    )
    .ok()?;
    Some(String::from_utf8_lossy(&d).trim().to_string())
}

pub fn publish(t: &Target, e: &Entry, work: &Path) -> Result<String, PubError> {
    let (registry, prefix, tls) = parts(t);
    let imgs = images(e).map_err(PubError::Fatal)?;
    if imgs.is_empty() {
        return Ok("no OCI layouts in the bundle".into());
    }
    let home = skopeo_home(work)?;
    let policy = home.path().join("policy.json");
    std::fs::File::create(&policy)
        .and_then(|mut f| f.write_all(POLICY_JSON.as_bytes()))
        .map_err(|err| PubError::Retry(format!("policy.json: {err}")))?;
    let env: [(&str, &Path); 2] = [("HOME", home.path()), ("TMPDIR", home.path())];
    // Checked again: earlier targets of this pass may have taken long enough for it to go away.
    registry::check(registry, tls, &dest(registry, prefix, &imgs[0]), &env)
        .map_err(PubError::Retry)?;
    let policy_s = policy.to_string_lossy().into_owned();
    let mut done = Vec::new();
    for img in &imgs {
        let to = dest(registry, prefix, img);
        if remote_digest(&to, tls, &env, home.path()).as_deref() == Some(img.digest.as_str()) {
            done.push(format!("{to}@{} (already there)", img.digest));
            continue;
        }
        let src = format!("oci:{}:{}", img.layout.to_string_lossy(), img.reference);
        tool(
            &[
                "skopeo",
                "--policy",
                &policy_s,
                "copy",
                "--quiet",
                "--all",
                "--preserve-digests",
                &format!("--dest-tls-verify={tls}"),
                &src,
                &format!("docker://{to}"),
            ],
            &env,
            None,
        )
        .map_err(PubError::Retry)?;
        match remote_digest(&to, tls, &env, home.path()) {
            Some(d) if d == img.digest => done.push(format!("{to}@{d}")),
            other => {
                return Err(PubError::Retry(format!(
                    "{to}: registry serves digest {other:?} after the push, expected {}",
                    img.digest
                )));
            }
        }
    }
    Ok(done.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags() {
        assert!(repo_name_ok("mirror"));
        assert!(repo_name_ok("mirror/base-image"));
        assert!(!repo_name_ok("Mirror"));
        assert!(!repo_name_ok("a//b"));
        assert!(!repo_name_ok("-a"));
        assert!(tag_ok("1.0"));
        assert!(!tag_ok(".x"));
        assert!(!tag_ok("a/b"));
    }
}
