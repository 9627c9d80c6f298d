//! Both binaries' `--help` keep one contract (`sluice_host::helpcheck::check`): every exit code
//! at the top and in each subcommand with what it means there, a verbatim example in each
//! subcommand, the example session one command per line, and the global options under their own
//! "Global options" heading everywhere. Checked here, where both `Cli`s are at hand, as one table.

use clap::CommandFactory;
use sluice_host::helpcheck::{check, render_help};

/// One binary: its `Cli`, name, exit table, other accepted example lines, the start of a line of
/// its top-level example session, and texts particular subcommands' help must contain.
struct Binary {
    cli: clap::Command,
    bin: &'static str,
    codes: Vec<(
        &'static str,
        &'static [(sluice_common::exit::Exit, &'static str)],
    )>,
    other_examples: &'static [&'static str],
    session: &'static str,
    contains: &'static [(&'static [&'static str], &'static str)],
}

fn binaries() -> [Binary; 2] {
    [
        Binary {
            cli: sluice_recv::cli::Cli::command(),
            bin: "sluice-recv",
            codes: sluice_recv::commands::exit_codes(),
            other_examples: &["  sluice-recv --config "],
            session: "sluice-recv listen --bind",
            contains: &[
                (&[], "9 network"),
                (&["audit"], "  sluice-recv audit verify "),
                // --config is global, so every command shows it: it says which commands read it.
                (&["verify"], "read only by `listen`"),
            ],
        },
        Binary {
            cli: sluice_send::cli::Cli::command(),
            bin: "sluice-send",
            codes: sluice_send::commands::exit_codes(),
            other_examples: &[],
            session: "sluice-send bundle create",
            contains: &[
                (&["bundle"], "  sluice-send bundle inspect "),
                (&["keygen"], "read only by `udp`"),
            ],
        },
    ]
}

#[test]
fn help_keeps_codes_examples_session_and_global_heading() {
    for b in binaries() {
        let missing = check(&b.cli, b.bin, &b.codes, b.other_examples, b.session);
        assert!(missing.is_empty(), "{}: {}", b.bin, missing.join("\n"));
    }
}

#[test]
fn subcommand_help_says_what_it_must() {
    for b in binaries() {
        for (path, text) in b.contains {
            let help = render_help(b.cli.clone(), path);
            assert!(
                help.contains(text),
                "{} {path:?} lacks {text:?}:\n{help}",
                b.bin
            );
        }
    }
}
