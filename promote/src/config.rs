//! `promote.toml`: the reviewer trust directory and one pipeline per channel (docs/promotion.md
//! lists every key). Unknown keys are errors, so a typo never silently weakens a pipeline.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub reviewers: Reviewers,
    #[serde(default)]
    pub pipeline: Vec<Pipeline>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reviewers {
    /// Directory of `*.pub` reviewer keys (Sluice or OpenSSH ed25519), separate from the bundle
    /// signers' trust directory.
    pub trust: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub channel: String,
    /// M: distinct trusted reviewers whose approvals are required (at least 1).
    pub approvals: u32,
    #[serde(default)]
    pub scan: Vec<Scanner>,
    #[serde(default)]
    pub publish: Vec<Target>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scanner {
    /// argv; `{files}` in any argument becomes the entry's `files/` directory.
    pub run: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The exit code that means "clean".
    #[serde(default)]
    pub ok_exit: i32,
}

fn default_timeout() -> u64 {
    600
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Target {
    /// `PATH/<bundle-id>/…`: the entry's files, appearing at once (staged, then renamed).
    Dir { path: PathBuf },
    /// Every `*.deb` in the entry into an apt repository signed with the site's OpenPGP key.
    Apt {
        repo: PathBuf,
        suite: String,
        component: String,
        /// Armored OpenPGP secret key without passphrase.
        signing_key: PathBuf,
        /// Versions kept per (package, architecture); 0 keeps every version.
        #[serde(default)]
        keep_versions: u32,
        /// Architectures listed in Release (`binary-<arch>/Packages` each).
        #[serde(default = "default_architectures")]
        architectures: Vec<String>,
        #[serde(default)]
        origin: Option<String>,
        #[serde(default)]
        label: Option<String>,
    },
    /// Every OCI image layout in the entry to `REGISTRY/PREFIX/NAME:TAG` with skopeo.
    Oci {
        registry: String,
        #[serde(default)]
        prefix: String,
        #[serde(default = "default_true")]
        tls_verify: bool,
    },
}

fn default_architectures() -> Vec<String> {
    vec!["amd64".into()]
}

impl Target {
    /// A stable name of the target, used in state, audit records and status.
    pub fn id(&self) -> String {
        match self {
            Target::Dir { path } => format!("dir:{}", path.display()),
            Target::Apt {
                repo,
                suite,
                component,
                ..
            } => format!("apt:{}:{suite}/{component}", repo.display()),
            Target::Oci {
                registry, prefix, ..
            } => {
                if prefix.is_empty() {
                    format!("oci:{registry}")
                } else {
                    format!("oci:{registry}/{prefix}")
                }
            }
        }
    }
}

fn apt_word_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !s.starts_with('.')
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let c: Config = toml::from_str(text)?;
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> anyhow::Result<()> {
        let mut seen = BTreeSet::new();
        for p in &self.pipeline {
            sluice_common::bundle::trust::check_channel(&p.channel)
                .map_err(|e| anyhow::anyhow!("pipeline: {e}"))?;
            if !seen.insert(p.channel.clone()) {
                anyhow::bail!("channel {:?} has two pipelines", p.channel);
            }
            if p.approvals == 0 {
                anyhow::bail!(
                    "pipeline {:?}: approvals must be at least 1 (nothing is published unapproved)",
                    p.channel
                );
            }
            if p.publish.is_empty() {
                anyhow::bail!("pipeline {:?}: no [[pipeline.publish]] target", p.channel);
            }
            for s in &p.scan {
                if s.run.is_empty() {
                    anyhow::bail!("pipeline {:?}: a scanner has an empty `run`", p.channel);
                }
                if s.timeout_secs == 0 {
                    anyhow::bail!("pipeline {:?}: scanner timeout_secs must be > 0", p.channel);
                }
            }
            let mut ids = BTreeSet::new();
            for t in &p.publish {
                if !ids.insert(t.id()) {
                    anyhow::bail!("pipeline {:?}: target {} listed twice", p.channel, t.id());
                }
                match t {
                    Target::Dir { path } | Target::Apt { repo: path, .. }
                        if !path.is_absolute() =>
                    {
                        anyhow::bail!(
                            "pipeline {:?}: {} must be an absolute path",
                            p.channel,
                            path.display()
                        )
                    }
                    Target::Apt {
                        suite,
                        component,
                        architectures,
                        ..
                    } => {
                        for w in [suite, component].into_iter().chain(architectures) {
                            if !apt_word_ok(w) {
                                anyhow::bail!(
                                    "pipeline {:?}: apt suite/component/architecture {w:?} must be 1-64 of A-Z a-z 0-9 . _ -",
                                    p.channel
                                );
                            }
                        }
                        if architectures.is_empty() {
                            anyhow::bail!("pipeline {:?}: apt architectures is empty", p.channel);
                        }
                    }
                    Target::Oci {
                        registry, prefix, ..
                    } => {
                        if registry.is_empty() || registry.contains('/') || registry.contains("://")
                        {
                            anyhow::bail!(
                                "pipeline {:?}: oci registry must be HOST[:PORT], got {registry:?}",
                                p.channel
                            );
                        }
                        if !prefix.is_empty() && !repo_name_ok(prefix) {
                            anyhow::bail!(
                                "pipeline {:?}: oci prefix {prefix:?} is not a valid repository path",
                                p.channel
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    pub fn pipeline(&self, channel: &str) -> Option<&Pipeline> {
        self.pipeline.iter().find(|p| p.channel == channel)
    }
}

/// A repository path: lowercase components `[a-z0-9]+([._-][a-z0-9]+)*` joined by `/`.
pub fn repo_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        })
}

/// An image tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn tag_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && (s.as_bytes()[0].is_ascii_alphanumeric() || s.as_bytes()[0] == b'_')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in docs/promotion.md and the task, verbatim.
    pub const EXAMPLE: &str = r#"
[reviewers]
trust = "/etc/sluice/reviewers"        # *.pub: ed25519 reviewer keys (OpenSSH accepted)

[[pipeline]]
channel = "updates"
approvals = 2
scan = [{ run = ["clamscan", "--no-summary", "-d", "/var/lib/clamav/site.hdb", "-r", "{files}"], timeout_secs = 600 }]

[[pipeline.publish]]
kind = "apt"
repo = "/srv/mirror/debian"
suite = "internal"
component = "main"
signing_key = "/etc/sluice/repo-signing.asc"

[[pipeline.publish]]
kind = "oci"
registry = "127.0.0.1:5000"
prefix = "mirror"
tls_verify = false

[[pipeline.publish]]
kind = "dir"
path = "/srv/share/updates"
"#;

    #[test]
    fn the_documented_example_parses() {
        let c = Config::parse(EXAMPLE).unwrap();
        let p = c.pipeline("updates").unwrap();
        assert_eq!(p.approvals, 2);
        assert_eq!(p.scan[0].timeout_secs, 600);
        assert_eq!(p.scan[0].ok_exit, 0);
        assert_eq!(p.publish.len(), 3);
        assert!(matches!(
            p.publish[1],
            Target::Oci {
                tls_verify: false,
                ..
            }
        ));
        assert_eq!(p.publish[0].id(), "apt:/srv/mirror/debian:internal/main");
    }

    #[test]
    fn typos_and_unsafe_values_are_refused() {
        assert!(Config::parse(&EXAMPLE.replace("approvals = 2", "aprovals = 2")).is_err());
        assert!(Config::parse(&EXAMPLE.replace("approvals = 2", "approvals = 0")).is_err());
        assert!(Config::parse(&EXAMPLE.replace("\"internal\"", "\"../x\"")).is_err());
        assert!(Config::parse(&EXAMPLE.replace("/srv/share/updates", "share")).is_err());
        assert!(Config::parse(&EXAMPLE.replace("kind = \"dir\"", "kind = \"ftp\"")).is_err());
    }
}
