//! Checks that a binary's `--help` keeps the exit-code contract and its examples: each
//! subcommand's help lists the codes it returns with what they mean there, and shows at least one
//! verbatim example, the example session at the top stays one command per line, and the global
//! options stand under their own heading (`crate::cli::HEADING`) in every help. Both binaries'
//! `cli` tests call [`check`], so the rule is written once.

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
fn missing_from_top_level(top: &str, table: &ExitTable) -> Vec<String> {
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

/// Everything a binary's `--help` must keep, as a list of what is missing: every code any
/// subcommand returns in the top-level help; in each subcommand's help its codes with their
/// meaning there, the global options under their heading, and an example line (`  BIN COMMAND
/// …`, or one of `other_examples`); `session` (the start of a line of the top-level example
/// session) on a line of its own.
pub fn check(
    cmd: &clap::Command,
    bin: &str,
    table: &ExitTable,
    other_examples: &[&str],
    session: &str,
) -> Vec<String> {
    let top = render_help(cmd.clone(), &[]);
    let mut missing = missing_from_top_level(&top, table);
    missing.extend(missing_globals("the top level", &top));
    if !top.lines().any(|l| l.trim_start().starts_with(session)) {
        missing.push(format!("no line starts with {session:?}:\n{top}"));
    }
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
        missing.extend(missing_globals(command, &text));
        let example = format!("  {bin} {command} ");
        if !text.contains(&example) && !other_examples.iter().any(|e| text.contains(e)) {
            missing.push(format!("{command} --help has no example:\n{text}"));
        }
    }
    missing
}

/// What `text` (the help of `command`) misses of the global options under their heading.
fn missing_globals(command: &str, text: &str) -> Vec<String> {
    let heading = format!("{}:", crate::cli::HEADING);
    let globals = text.split_once(&heading).map_or("", |(_, rest)| rest);
    ["--config <FILE>", "--log-format <LOG_FORMAT>", "--verbose"]
        .into_iter()
        .filter(|flag| !globals.contains(flag))
        .map(|flag| format!("{command} --help lacks {flag} under {heading:?}:\n{text}"))
        .collect()
}
