//! The exit-code contract of `sluice-send` and `sluice-recv` (documented in docs/operations.md).
//!
//! Automation (cron, systemd, CI pipelines) branches on these numbers, so they never change
//! meaning once released. Every command maps its outcome to exactly one [`Exit`].
//!
//! # Precedence
//!
//! A command that decides several things in one run (`listen` with `--max-bundles`, `import` of
//! several bundles) reports the *worst* of their codes, by [`Exit::worst`]. The order is explicit
//! ([`Exit::PRECEDENCE`]), not the numeric one, because the numbers were assigned by class, not
//! by urgency. Worst first:
//!
//! 1. `STORAGE` (8), `NETWORK` (9), `FAILURE` (1): the host or the program failed; until that is
//!    fixed, no other verdict of the run can be relied on.
//! 2. `POLICY` (6), `UNTRUSTED` (5), `INVALID` (4): a bundle needs a person. Within the class
//!    the order is the numeric one that scripts and the listener's tests already rely on
//!    (`hostile_bundles::signed_bundles_with_hostile_paths_are_rejected_with_their_reason`).
//! 3. `USAGE` (2), `INTERRUPTED` (130): the invocation itself did not run to its end.
//! 4. `INCOMPLETE` (7): retry later (more volumes, another pass).
//! 5. `INPUT` (3): an input was unreadable, but everything readable was handled.
//! 6. `OK` (0).
//!
//! The `--help` of both binaries prints its codes from [`Exit::ALL`] and [`Exit::summary`], so the
//! help text cannot drift from this table.

use std::fmt;

/// One exit code of the contract. The discriminant is the process exit status.
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Exit {
    /// Everything asked for was done (sent, verified, accepted, or already present).
    #[default]
    Ok = 0,
    /// An internal error or an unexpected failure that fits no other class.
    Failure = 1,
    /// The command line or a configuration file is invalid (clap also uses 2 for usage errors).
    Usage = 2,
    /// An input could not be read: missing file, permission denied, not a regular file.
    Input = 3,
    /// A bundle or frame stream failed verification: bad signature, tampered, malformed,
    /// truncated.
    Invalid = 4,
    /// The bundle is validly signed but not by a signer the trust store allows for its channel.
    Untrusted = 5,
    /// Trust is fine but policy refused it: expired, rollback, too large, too many files.
    Policy = 6,
    /// Not enough data yet: a media import waits for more volumes, or a transfer ended with
    /// blocks that could not be recovered (progress is kept; another pass or volume may finish
    /// it), or `status` found a channel overdue or a bundle the sender reported missing.
    Incomplete = 7,
    /// The local store failed: disk full, read-only, permissions, fsync error.
    Storage = 8,
    /// A network operation failed (bind, send).
    Network = 9,
    /// Stopped by SIGINT/SIGTERM before finishing; nothing half-written was left visible.
    Interrupted = 130,
}

impl Exit {
    /// Every code, in numeric order (the order `--help` and docs/operations.md list them).
    pub const ALL: [Exit; 11] = [
        Exit::Ok,
        Exit::Failure,
        Exit::Usage,
        Exit::Input,
        Exit::Invalid,
        Exit::Untrusted,
        Exit::Policy,
        Exit::Incomplete,
        Exit::Storage,
        Exit::Network,
        Exit::Interrupted,
    ];

    /// Every code, worst first: the order [`Exit::worst`] follows (see the module docs for why).
    pub const PRECEDENCE: [Exit; 11] = [
        Exit::Storage,
        Exit::Network,
        Exit::Failure,
        Exit::Policy,
        Exit::Untrusted,
        Exit::Invalid,
        Exit::Usage,
        Exit::Interrupted,
        Exit::Incomplete,
        Exit::Input,
        Exit::Ok,
    ];

    /// The process exit status.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The code with this exit status, if it is one of the contract's.
    pub fn from_code(code: i32) -> Option<Exit> {
        Exit::ALL.into_iter().find(|e| i32::from(e.code()) == code)
    }

    /// The name docs/operations.md uses (`OK`, `FAILURE`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Exit::Ok => "OK",
            Exit::Failure => "FAILURE",
            Exit::Usage => "USAGE",
            Exit::Input => "INPUT",
            Exit::Invalid => "INVALID",
            Exit::Untrusted => "UNTRUSTED",
            Exit::Policy => "POLICY",
            Exit::Incomplete => "INCOMPLETE",
            Exit::Storage => "STORAGE",
            Exit::Network => "NETWORK",
            Exit::Interrupted => "INTERRUPTED",
        }
    }

    /// A few words for `--help`: what the class means to the operator.
    pub const fn summary(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::Failure => "failure",
            Exit::Usage => "usage/config",
            Exit::Input => "input unreadable",
            Exit::Invalid => "invalid bundle",
            Exit::Untrusted => "untrusted signer",
            Exit::Policy => "policy refused",
            Exit::Incomplete => "incomplete",
            Exit::Storage => "storage",
            Exit::Network => "network",
            Exit::Interrupted => "interrupted",
        }
    }

    /// Position in [`Exit::PRECEDENCE`]: 0 is the worst.
    fn rank(self) -> usize {
        Exit::PRECEDENCE
            .iter()
            .position(|&e| e == self)
            .unwrap_or(Exit::PRECEDENCE.len())
    }

    /// The worse of two codes, by the documented precedence (not by number).
    #[must_use]
    pub fn worst(self, other: Exit) -> Exit {
        if other.rank() < self.rank() {
            other
        } else {
            self
        }
    }

    /// The worst of any number of codes; [`Exit::Ok`] for none.
    pub fn worst_of(codes: impl IntoIterator<Item = Exit>) -> Exit {
        codes.into_iter().fold(Exit::Ok, Exit::worst)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// A command's failure as `main` prints it: one message, an optional line of remediation, and
/// the exit code. Every subcommand of both binaries returns this as its error, so the binary
/// prints exactly one `error:` line (and one `help:` line) however deep the failure started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    pub code: Exit,
    pub message: String,
    pub remediation: Option<String>,
}

impl CommandError {
    pub fn new(code: Exit, message: impl Into<String>) -> Self {
        CommandError {
            code,
            message: message.into(),
            remediation: None,
        }
    }

    /// Adds the `help:` line: what the operator should do about it.
    #[must_use]
    pub fn help(mut self, remediation: impl Into<String>) -> Self {
        self.remediation = Some(remediation.into());
        self
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub fn input(message: impl Into<String>) -> Self {
        Self::new(Exit::Input, message)
    }

    pub fn storage(message: impl Into<String>) -> Self {
        Self::new(Exit::Storage, message)
    }

    pub fn network(message: impl Into<String>) -> Self {
        Self::new(Exit::Network, message)
    }

    /// An internal error: a bug or an impossible state, not the operator's doing.
    pub fn internal(detail: impl fmt::Display) -> Self {
        Self::new(Exit::Failure, format!("internal: {detail}"))
    }
}

/// `error: MESSAGE` and, when there is one, `help: REMEDIATION` on the next line.
impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(help) = &self.remediation {
            write!(f, "\nhelp: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandError {}

/// `Exit codes: 0 ok, 2 usage/config, …` for `--help`: the given codes in numeric order, each
/// The top-level `--help` line of a binary: every code any of its subcommands returns (`table`
/// lists each subcommand's codes with what they mean there).
pub fn commands_summary(table: &[(&str, &[(Exit, &str)])], width: usize) -> String {
    let all: Vec<Exit> = table
        .iter()
        .flat_map(|(_, codes)| codes.iter().map(|(e, _)| *e))
        .collect();
    help_summary(&all, width)
}

/// once, with its [`Exit::summary`], wrapped at `width` columns.
pub fn help_summary(codes: &[Exit], width: usize) -> String {
    let listed: Vec<Exit> = Exit::ALL
        .into_iter()
        .filter(|e| codes.contains(e))
        .collect();
    let items: Vec<String> = listed
        .iter()
        .map(|e| format!("{} {}", e.code(), e.summary()))
        .collect();
    let text = format!("Exit codes: {} (docs/operations.md).", items.join(", "));
    wrap(&text, width)
}

/// One line per code, `  N  meaning`, for a subcommand's `--help`. `when` says what the code
/// means for that command; the number and its class come from [`Exit`].
pub fn help_table(codes: &[(Exit, &str)]) -> String {
    let mut out = String::from("Exit codes (docs/operations.md):");
    for (code, when) in codes {
        out.push_str(&format!(
            "\n  {:>3}  {:<17} {when}",
            code.code(),
            code.summary()
        ));
    }
    out
}

/// [`help_table`] for a command that decides several things in one run, plus which code it
/// reports when more than one applies (from [`Exit::PRECEDENCE`]).
pub fn help_table_combined(codes: &[(Exit, &str)]) -> String {
    let order: Vec<String> = Exit::PRECEDENCE
        .into_iter()
        .filter(|e| *e != Exit::Ok && codes.iter().any(|(c, _)| c == e))
        .map(|e| e.code().to_string())
        .collect();
    format!(
        "{}\nWhen several apply, the first of: {}.",
        help_table(codes),
        order.join(", ")
    )
}

fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0usize;
    for word in text.split(' ') {
        if line > 0 && line + 1 + word.len() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.len();
    }
    out
}

// The numeric constants predate [`Exit`]; callers outside the two binaries (`RejectReason`,
// `sluice-host`) still return `i32`. New code uses [`Exit`].

/// [`Exit::Ok`] as a number.
pub const OK: i32 = Exit::Ok as i32;
/// [`Exit::Failure`] as a number.
pub const FAILURE: i32 = Exit::Failure as i32;
/// [`Exit::Usage`] as a number.
pub const USAGE: i32 = Exit::Usage as i32;
/// [`Exit::Input`] as a number.
pub const INPUT: i32 = Exit::Input as i32;
/// [`Exit::Invalid`] as a number.
pub const INVALID: i32 = Exit::Invalid as i32;
/// [`Exit::Untrusted`] as a number.
pub const UNTRUSTED: i32 = Exit::Untrusted as i32;
/// [`Exit::Policy`] as a number.
pub const POLICY: i32 = Exit::Policy as i32;
/// [`Exit::Incomplete`] as a number.
pub const INCOMPLETE: i32 = Exit::Incomplete as i32;
/// [`Exit::Storage`] as a number.
pub const STORAGE: i32 = Exit::Storage as i32;
/// [`Exit::Network`] as a number.
pub const NETWORK: i32 = Exit::Network as i32;
/// [`Exit::Interrupted`] as a number.
pub const INTERRUPTED: i32 = Exit::Interrupted as i32;

/// A number from an `i32` caller mapped onto the contract; anything unknown is
/// [`Exit::Failure`].
pub fn from_code_or_failure(code: i32) -> Exit {
    Exit::from_code(code).unwrap_or(Exit::Failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_never_change() {
        let numbers: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 130]);
        for e in Exit::ALL {
            assert_eq!(Exit::from_code(i32::from(e.code())), Some(e));
        }
        assert_eq!(Exit::from_code(10), None);
        assert_eq!(from_code_or_failure(-1), Exit::Failure);
    }

    #[test]
    fn precedence_lists_every_code_once() {
        for e in Exit::ALL {
            assert_eq!(
                Exit::PRECEDENCE.iter().filter(|&&p| p == e).count(),
                1,
                "{e}"
            );
        }
    }

    #[test]
    fn worst_follows_the_documented_order_not_the_numbers() {
        use Exit::*;
        // The store failing outranks every verdict (import: "8, then 4-6, then 7, then 3").
        assert_eq!(Storage.worst(Invalid), Storage);
        assert_eq!(Invalid.worst(Storage), Storage);
        // A rejected bundle needs a person; waiting for volumes only needs time.
        assert_eq!(Incomplete.worst(Policy), Policy);
        assert_eq!(Policy.worst(Incomplete), Policy);
        // Waiting outranks an unreadable input that did not stop the run.
        assert_eq!(Input.worst(Incomplete), Incomplete);
        // Within rejections the numeric order holds: policy, then untrusted, then invalid.
        assert_eq!(Policy.worst(Invalid), Policy);
        assert_eq!(Untrusted.worst(Invalid), Untrusted);
        assert_eq!(Policy.worst(Untrusted), Policy);
        // Network and internal failures outrank verdicts, and Interrupted outranks waiting.
        assert_eq!(Network.worst(Invalid), Network);
        assert_eq!(Failure.worst(Untrusted), Failure);
        assert_eq!(Interrupted.worst(Incomplete), Interrupted);
        // OK never wins, and a code is its own worst.
        for e in Exit::ALL {
            assert_eq!(Ok.worst(e), e);
            assert_eq!(e.worst(Ok), e);
            assert_eq!(e.worst(e), e);
        }
        assert_eq!(Exit::worst_of([]), Ok);
        assert_eq!(Exit::worst_of([Input, Incomplete, Untrusted]), Untrusted);
    }

    #[test]
    fn worst_is_symmetric_and_associative() {
        for a in Exit::ALL {
            for b in Exit::ALL {
                assert_eq!(a.worst(b), b.worst(a), "{a} {b}");
                for c in Exit::ALL {
                    assert_eq!(a.worst(b).worst(c), a.worst(b.worst(c)));
                }
            }
        }
    }

    #[test]
    fn command_errors_print_one_error_and_one_help_line() {
        let e = CommandError::usage("--to is required");
        assert_eq!(e.to_string(), "error: --to is required");
        let e = CommandError::input("cannot read k").help("check the path");
        assert_eq!(e.to_string(), "error: cannot read k\nhelp: check the path");
        assert_eq!(e.code, Exit::Input);
    }

    #[test]
    fn help_names_every_code_given() {
        let text = help_summary(&Exit::ALL, 60);
        let flat = text.replace('\n', " ");
        for e in Exit::ALL {
            assert!(
                flat.contains(&format!("{} {}", e.code(), e.summary())),
                "{e}: {text}"
            );
        }
        assert!(text.lines().all(|l| l.len() <= 60), "{text}");
        let table = help_table(&[(Exit::Ok, "sent"), (Exit::Network, "send failed")]);
        assert!(table.contains("    0  ok"), "{table}");
        assert!(table.contains("    9  network"), "{table}");
        assert!(table.contains("send failed"), "{table}");
        let combined = help_table_combined(&[
            (Exit::Ok, "done"),
            (Exit::Input, "unreadable"),
            (Exit::Incomplete, "waiting"),
            (Exit::Policy, "refused"),
            (Exit::Storage, "store failed"),
        ]);
        assert!(
            combined.ends_with("When several apply, the first of: 8, 6, 7, 3."),
            "{combined}"
        );
    }
}
