//! The exit-code contract of `sluice-send` and `sluice-recv` (documented in docs/operations.md).
//!
//! Automation (cron, systemd, CI pipelines) branches on these numbers, so they never change
//! meaning once released. Every command maps its outcome to exactly one of them.

/// Everything asked for was done (sent, verified, accepted, or already present).
pub const OK: i32 = 0;
/// An internal error or an unexpected failure that fits no other class.
pub const FAILURE: i32 = 1;
/// The command line or a configuration file is invalid (clap also uses 2 for usage errors).
pub const USAGE: i32 = 2;
/// An input could not be read: missing file, permission denied, not a regular file.
pub const INPUT: i32 = 3;
/// A bundle or frame stream failed verification: bad signature, tampered, malformed, truncated.
pub const INVALID: i32 = 4;
/// The bundle is validly signed but not by a signer the trust store allows for its channel.
pub const UNTRUSTED: i32 = 5;
/// Trust is fine but policy refused it: expired, rollback, too large, too many files.
pub const POLICY: i32 = 6;
/// Not enough data yet: a media import waits for more volumes, or a transfer ended with blocks
/// that could not be recovered (progress is kept; another pass or volume may finish it), or
/// `status` found a channel overdue or a bundle the sender reported missing.
pub const INCOMPLETE: i32 = 7;
/// The local store failed: disk full, read-only, permissions, fsync error.
pub const STORAGE: i32 = 8;
/// A network operation failed (bind, send).
pub const NETWORK: i32 = 9;
/// Stopped by SIGINT/SIGTERM before finishing; nothing half-written was left visible.
pub const INTERRUPTED: i32 = 130;
