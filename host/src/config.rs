//! Reading a `--config` TOML file, for both binaries (`receiver/src/config.rs`,
//! `sender/src/config.rs`): the size limit, the parse with the toml crate's caret-marked error,
//! and the rule that relative paths in the file are relative to the file.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use sluice_common::exit::CommandError;

/// Largest config file read. Worst case: this many bytes held once as text while parsing; real
/// files are a few hundred bytes, and a larger one is refused before it is read into memory.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads and parses a config file. The error (a usage error) names the file and, for a typo, the
/// unknown key with a caret under it.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, CommandError> {
    let cannot = |e: &dyn std::fmt::Display| {
        CommandError::usage(format!("cannot read config file {}: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| cannot(&e))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(cannot(&format_args!(
            "larger than {MAX_CONFIG_BYTES} bytes (MAX_CONFIG_BYTES)"
        )));
    }
    toml::from_str(&text)
        .map_err(|e| CommandError::usage(format!("config file {}: {e}", path.display())))
}

/// Makes each relative path of the file relative to the file's directory, not to the working
/// directory (`base` is the config file's path).
pub fn rebase<'a>(config_file: &Path, paths: impl IntoIterator<Item = &'a mut Option<PathBuf>>) {
    let base = config_file.parent().unwrap_or(Path::new("."));
    for path in paths {
        if let Some(p) = path.as_mut()
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        dir: Option<PathBuf>,
    }

    #[test]
    fn relative_paths_are_taken_from_the_file_and_typos_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.toml");
        std::fs::write(&path, "dir = \"spool\"\n").unwrap();
        let mut f: File = load(&path).unwrap();
        rebase(&path, [&mut f.dir]);
        assert_eq!(f.dir.unwrap(), tmp.path().join("spool"));
        std::fs::write(&path, "dri = \"spool\"\n").unwrap();
        let e = load::<File>(&path).unwrap_err().to_string();
        assert!(e.contains("dri") && e.contains('^'), "{e}");
    }

    #[test]
    fn an_oversized_file_is_refused_before_it_is_read_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("big.toml");
        std::fs::write(&path, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).unwrap();
        let e = load::<File>(&path).unwrap_err().to_string();
        assert!(e.contains("MAX_CONFIG_BYTES"), "{e}");
    }
}
