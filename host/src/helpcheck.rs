//! Checks that a binary's `--help` keeps the exit-code contract and its examples: each
//! subcommand's help lists the codes it returns with what they mean there, and shows at least one
//! verbatim example. Both binaries' `cli` tests call these, so the rule is written once.

use sluice_common::exit::Exit;

/// Every subcommand's exit codes with what they mean there (`commands::exit_codes()`).
pub type ExitTable = [(&'static str, &'static [(Exit, &'static str)])];

/// The long help of `cmd` or of the subcommand at `path` (`["audit", "verify"]`).
pub fn render_help(mut cmd: clap::Command, path: &[&str]) -> String {
    cmd.build();
    let mut sub = &mut cmd;
    for name in path {
        sub = sub
            .find_subcommand_mut(name)
            .unwrap_or_else(|| panic!("no subcommand {name}"));
    }
    sub.render_long_help().to_string()
}

/// What the top-level help (`top`) misses of the codes any subcommand returns.
pub fn missing_from_top_level(top: &str, table: &ExitTable) -> Vec<String> {
    let top = top.replace('\n', " ");
    let mut missing = Vec::new();
    for (command, codes) in table {
        for (code, _) in *codes {
            let item = format!("{} {}", code.code(), code.summary());
            if !top.contains(&item) {
                missing.push(format!(
                    "{command} returns {code} but --help lacks {item:?}"
                ));
            }
        }
    }
    missing
}

/// What each subcommand's help misses: a code with its meaning there, or an example line
/// (`  BIN COMMAND …`, or one of `other_examples`).
pub fn missing_from_subcommands(
    cmd: &clap::Command,
    bin: &str,
    table: &ExitTable,
    other_examples: &[&str],
) -> Vec<String> {
    let mut missing = Vec::new();
    for (command, codes) in table {
        let path: Vec<&str> = command.split(' ').collect();
        let text = render_help(cmd.clone(), &path);
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for (code, when) in *codes {
            if !(text.contains(&format!("{:>3}  {}", code.code(), code.summary()))
                && flat.contains(when))
            {
                missing.push(format!("{command} --help lacks {code}:\n{text}"));
            }
        }
        let example = format!("  {bin} {command} ");
        if !text.contains(&example) && !other_examples.iter().any(|e| text.contains(e)) {
            missing.push(format!("{command} --help has no example:\n{text}"));
        }
    }
    missing
}
