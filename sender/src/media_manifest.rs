//! Each medium's manifest: `SLUICE-MANIFEST.txt` and its JSON twin `sluice-manifest.json` list
//! every bundle with volumes on that medium, across runs (docs/media.md, "Manifests"). A run
//! reads the JSON back, keeps the earlier bundles whose volumes are still there, adds or
//! refreshes its own, and replaces both files atomically. The importer never reads them.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sluice_common::exit::CommandError;

use crate::media_out::{Action, Job, io_failure};
use crate::media_plan::survival_text;

pub const MANIFEST_TXT: &str = "SLUICE-MANIFEST.txt";
pub const MANIFEST_JSON: &str = "sluice-manifest.json";
/// The manifest's kind (`"schema": "sluice.media-manifest/1"`, docs/json.md): one manifest per
/// medium, listing only the files on it, accumulated across runs. It replaced the format
/// `sluice-media-manifest-v2`, whose entries are read back and renamed ([`upgrade_entry`]).
pub const SCHEMA_KIND: &str = "media-manifest";
/// Largest earlier manifest read back: ~1 KiB per bundle, so 16 MiB is some 16 000 bundles,
/// far more than a stick holds. A larger (or unparsable) one is set aside, not trusted.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// One bundle as a manifest (or the `--json` summary) lists it: `medium` = `Some(m)` keeps the
/// files on medium `m` only (a medium's manifest); `None` keeps all, with where each went.
pub fn bundle_entry(job: &Job, outs: &[PathBuf], medium: Option<usize>, now_ms: u64) -> Value {
    let (p, plan) = (&job.prepared, &job.plan);
    let files: Vec<Value> = (0..job.names.len())
        .filter(|&v| medium.is_none_or(|m| plan.medium_of(v) == m))
        .map(|v| {
            let mut f = json!({
                "path": format!("{}/{}", job.dir_name, job.names[v]),
                "volume": v + 1,
                "of": plan.volumes,
                "medium": plan.medium_of(v) + 1,
                "frames": plan.frames[v],
                "volume_bytes": plan.volume_bytes(v),
            });
            if medium.is_none() {
                f["out"] = outs[plan.medium_of(v)].display().to_string().into();
                f["outcome"] = match job.actions[v] {
                    Action::Create => "written",
                    Action::Verify => "verified",
                }
                .into();
            }
            f
        })
        .collect();
    let mut e = json!({
        "bundle_id": p.id.to_hex(),
        "object_id": hex::encode(p.id.object_id()),
        "source": p.path.display().to_string(),
        "channel": p.channel,
        "sequence": p.sequence,
        "bundle_bytes": p.len,
        "directory": job.dir_name,
        "volumes": plan.volumes,
        "media": plan.media,
        "overhead_percent": plan.overhead,
        "survivable_volume_losses": plan.survivable,
        "survivable_media_losses": plan.survivable_media,
        "survival": survival_text(plan),
        "frame_bytes": plan.frame_len,
    });
    if let Value::Object(m) = &mut e {
        sluice_host::json::set_time(m, "written", now_ms);
        m.insert("files".into(), Value::Array(files));
    }
    e
}

/// An entry of a manifest written before the JSON convention (format
/// `sluice-media-manifest-v2`: `bytes`, `frame_len`, `written_unix_ms` only) with its keys
/// renamed to the convention's, so one manifest never mixes the two spellings.
fn upgrade_entry(mut e: Value) -> Value {
    let Value::Object(m) = &mut e else {
        return e;
    };
    for (old, new) in [("bytes", "bundle_bytes"), ("frame_len", "frame_bytes")] {
        if let Some(x) = m.remove(old) {
            m.entry(new).or_insert(x);
        }
    }
    if !m.contains_key("written")
        && let Some(ms) = m.get("written_unix_ms").and_then(Value::as_u64)
    {
        sluice_host::json::set_time(m, "written", ms);
    }
    if let Some(Value::Array(files)) = m.get_mut("files") {
        for f in files.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(x) = f.remove("bytes") {
                f.entry("volume_bytes").or_insert(x);
            }
        }
    }
    e
}

/// Rewrites medium `out`'s manifests: earlier entries (files still present) plus `fresh`.
pub fn update(
    out: &Path,
    fresh: Vec<Value>,
    now_ms: u64,
    media: usize,
) -> Result<(), CommandError> {
    let earlier = read_earlier(out, now_ms);
    let bundles = merge(earlier, fresh, |rel| {
        std::fs::symlink_metadata(out.join(rel)).is_ok_and(|m| m.is_file())
    });
    let text = render_text(&bundles);
    let mut doc = sluice_host::json::object(SCHEMA_KIND);
    sluice_host::json::set_time(&mut doc, "written", now_ms);
    doc.insert("bundles".into(), Value::Array(bundles));
    let mut json_bytes =
        serde_json::to_vec_pretty(&Value::Object(doc)).map_err(CommandError::internal)?;
    json_bytes.push(b'\n');
    for (name, bytes) in [
        (MANIFEST_TXT, text.into_bytes()),
        (MANIFEST_JSON, json_bytes),
    ] {
        replace(out, name, &bytes)
            .map_err(|e| io_failure("cannot write manifest", &out.join(name), &e, media))?;
    }
    std::fs::File::open(out)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_failure("cannot fsync directory", out, &e, media))
}

/// The earlier manifest's bundles; an unreadable one is renamed aside with a warning (the
/// volumes themselves are untouched and still import).
fn read_earlier(out: &Path, now_ms: u64) -> Vec<Value> {
    let path = out.join(MANIFEST_JSON);
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return set_aside(&path, &e.to_string(), now_ms),
    };
    let mut bytes = Vec::new();
    let read = file
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())
        .and_then(|n| {
            if n as u64 > MAX_MANIFEST_BYTES {
                Err(format!("larger than {MAX_MANIFEST_BYTES} bytes"))
            } else {
                serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())
            }
        });
    match read {
        Ok(v) if v["bundles"].is_array() => v["bundles"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(upgrade_entry)
            .collect(),
        Ok(_) => set_aside(&path, "no \"bundles\" list", now_ms),
        Err(why) => set_aside(&path, &why, now_ms),
    }
}

fn set_aside(path: &Path, why: &str, now_ms: u64) -> Vec<Value> {
    let aside = path.with_extension(format!("json.unreadable-{now_ms}"));
    let moved = std::fs::rename(path, &aside).is_ok();
    eprintln!(
        "warning: the earlier manifest {} is unreadable ({why}); {}the new one lists only this \
         run's bundles (the volumes on the medium are untouched)",
        path.display(),
        if moved {
            format!("it was kept as {}; ", aside.display())
        } else {
            String::new()
        }
    );
    Vec::new()
}

/// Earlier entries first, in their order, then this run's; an earlier entry of a bundle this run
/// wrote too keeps its files that this run does not list (another run's volumes of the same set
/// on this medium). Files no longer on the medium, and entries left with none, are dropped.
pub fn merge(earlier: Vec<Value>, fresh: Vec<Value>, exists: impl Fn(&str) -> bool) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for mut e in earlier {
        let Some(files) = e["files"].as_array() else {
            continue;
        };
        let files: Vec<Value> = files
            .iter()
            .filter(|f| f["path"].as_str().is_some_and(&exists))
            .cloned()
            .collect();
        if files.is_empty() || !e["bundle_id"].is_string() {
            continue;
        }
        e["files"] = Value::Array(files);
        out.push(e);
    }
    for mut f in fresh {
        if let Some(i) = out.iter().position(|e| e["bundle_id"] == f["bundle_id"]) {
            let old = out.remove(i);
            let mut files = f["files"].as_array().cloned().unwrap_or_default();
            for of in old["files"].as_array().into_iter().flatten() {
                if !files.iter().any(|nf| nf["path"] == of["path"]) {
                    files.push(of.clone());
                }
            }
            files.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
            f["files"] = Value::Array(files);
        }
        out.push(f);
    }
    out
}

/// The human manifest, from the same entries as the JSON twin.
pub fn render_text(bundles: &[Value]) -> String {
    let mut s = String::from(
        "SLUICE MEDIUM — spool volumes for sluice-recv import (docs/media.md)\n\
         The importer trusts only each volume's authenticated header and frames, never this file.\n\
         Every bundle with volumes on this medium is listed, from every run that wrote here.\n\n",
    );
    let txt = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for b in bundles {
        s.push_str(&format!(
            "bundle {}\n  channel {}  sequence {}  {} bytes  from {}\n  {} volume(s) over {}, {} % \
             overhead: {}\n",
            txt(&b["bundle_id"]),
            txt(&b["channel"]),
            txt(&b["sequence"]),
            txt(&b["bundle_bytes"]),
            txt(&b["source"]),
            txt(&b["volumes"]),
            match b["media"].as_u64().unwrap_or(1) {
                1 => "1 medium".to_string(),
                n => format!("{n} media"),
            },
            txt(&b["overhead_percent"]),
            txt(&b["survival"]),
        ));
        for f in b["files"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "    {}  volume {} of {}  {} bytes\n",
                txt(&f["path"]),
                txt(&f["volume"]),
                txt(&f["of"]),
                txt(&f["volume_bytes"]),
            ));
        }
        s.push('\n');
    }
    s
}

/// Writes `dir/name` through a temporary file and a rename: a reader sees the old or the new.
fn replace(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, files: &[&str]) -> Value {
        json!({
            "bundle_id": id,
            "files": files.iter().map(|f| json!({ "path": f })).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn a_later_run_adds_to_the_manifest_and_refreshes_its_own_bundles() {
        let earlier = vec![
            entry("aa", &["aa/vol-001-of-001.sluicevol"]),
            entry(
                "bb",
                &["bb/vol-001-of-003.sluicevol", "bb/vol-002-of-003.sluicevol"],
            ),
            entry("gone", &["gone/vol-001-of-001.sluicevol"]),
        ];
        let fresh = vec![
            entry("bb", &["bb/vol-001-of-003.sluicevol"]),
            entry("cc", &["cc/vol-001-of-001.sluicevol"]),
        ];
        let merged = merge(earlier, fresh, |p| !p.starts_with("gone/"));
        let ids: Vec<&str> = merged
            .iter()
            .map(|e| e["bundle_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["aa", "bb", "cc"]);
        // bb's volume 2 from the earlier run is still on the medium, so it stays listed.
        assert_eq!(merged[1]["files"].as_array().unwrap().len(), 2);
        let text = render_text(&merged);
        assert!(
            text.contains("bundle aa") && text.contains("bundle cc"),
            "{text}"
        );
    }

    #[test]
    fn an_entry_of_the_older_v2_manifest_is_read_back_under_the_new_keys() {
        let old = json!({
            "bundle_id": "aa",
            "bytes": 10,
            "frame_len": 1024,
            "written_unix_ms": 1_795_757_075_042_u64,
            "files": [{ "path": "aa/vol-001-of-001.sluicevol", "bytes": 2048 }],
        });
        let e = upgrade_entry(old);
        assert_eq!(e["bundle_bytes"], 10);
        assert_eq!(e["frame_bytes"], 1024);
        assert_eq!(e["written"], "2026-11-27T05:24:35.042Z");
        assert_eq!(e["files"][0]["volume_bytes"], 2048);
        assert!(e.get("bytes").is_none() && e["files"][0].get("bytes").is_none());
    }
}
