//! Shared harness for Sluice's end-to-end tests: locating the built binaries, temporary stores,
//! the seeded impairment relay, the namespace diode emulator, and resource measurements.
