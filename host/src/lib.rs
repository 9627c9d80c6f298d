//! `sluice-host`: the host edges both binaries share. `sluice-common` may not touch files, clocks
//! or the OS; the few OS-facing helpers that the sender and the receiver both need live here once,
//! instead of being compiled into each binary from the other's tree.
//!
//! What it owns: log setup (`logging`), the host checks of both `doctor`s (`hostcheck`), heap
//! tuning for block-sized buffers (`heap`), quiet SIGPIPE (`sigpipe`), reading a trust directory
//! (`trust_dir`) and a link-key file (`linkkey`), and wall-clock time (`time`).

pub mod heap;
pub mod hostcheck;
pub mod linkkey;
pub mod logging;
pub mod sigpipe;
pub mod time;
pub mod trust_dir;
