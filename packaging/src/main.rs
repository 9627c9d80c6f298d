//! `sluice-packaging OUT_DIR`: man pages and shell completions for both binaries, generated
//! from the same clap definitions the binaries parse with, so they cannot drift from `--help`.
//!
//! Layout under OUT_DIR (what scripts/build-debs.sh copies into each package):
//!
//! ```text
//! sluice-recv/man/sluice-recv.1, sluice-recv-listen.1, ...   (one page per subcommand)
//! sluice-recv/completions/sluice-recv.bash, _sluice-recv, sluice-recv.fish
//! sluice-send/...                                            (the same for the low side)
//! ```

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: sluice-packaging OUT_DIR");
        return std::process::ExitCode::from(2);
    };
    match generate(Path::new(&out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes everything for both binaries under `out`; returns the files written.
pub fn generate(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for cmd in [
        sluice_recv::cli::Cli::command(),
        sluice_send::cli::Cli::command(),
    ] {
        written.extend(for_command(cmd, out)?);
    }
    Ok(written)
}

fn for_command(cmd: clap::Command, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let name = cmd.get_name().to_owned();
    let man = out.join(&name).join("man");
    let completions = out.join(&name).join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut written = Vec::new();
    // One page for the command and one per subcommand (`sluice-recv-listen.1`, ...).
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for entry in std::fs::read_dir(&man)? {
        written.push(entry?.path());
    }
    let mut cmd = cmd;
    for (shell, file) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut text);
        let path = completions.join(file);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pages_for_every_subcommand_and_three_shells() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        for expect in [
            "sluice-recv/man/sluice-recv.1",
            "sluice-recv/man/sluice-recv-listen.1",
            "sluice-recv/man/sluice-recv-doctor.1",
            "sluice-send/man/sluice-send.1",
            "sluice-recv/completions/sluice-recv.bash",
            "sluice-recv/completions/_sluice-recv",
            "sluice-send/completions/sluice-send.fish",
        ] {
            assert!(
                dir.path().join(expect).is_file(),
                "{expect} missing: {files:?}"
            );
        }
        let page = std::fs::read_to_string(dir.path().join("sluice-recv/man/sluice-recv-listen.1"))
            .unwrap();
        assert!(page.contains("\\-\\-metrics"), "{page}");
        let bash =
            std::fs::read_to_string(dir.path().join("sluice-recv/completions/sluice-recv.bash"))
                .unwrap();
        assert!(bash.contains("listen"));
    }
}
