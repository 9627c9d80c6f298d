//! The named points of the commit protocol ([`Step`]), where the tests inject a crash or an I/O
//! error ([`Fault`]). A leaf: `commit` checkpoints at each step and `handle` holds the fault a
//! test armed.

/// The points of the commit protocol, in order (used by fault-injection tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Every file and directory of the extraction fsynced.
    DirsSynced,
    /// receipt.json written and fsynced, extraction dir fsynced.
    ReceiptWritten,
    /// Renamed into quarantine (not yet fsynced).
    Renamed,
    /// quarantine/ and staging/extract/ fsynced.
    QuarantineSynced,
    /// Audit record appended and fsynced (mark not yet updated).
    Audited,
}

/// A fault injected at a [`Step`] (tests only): `Crash` stops there leaving everything as a
/// killed process would; `Eio` makes the operation right after the step fail with EIO.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    Crash(Step),
    Eio(Step),
}
