//! Moving one opaque object across a lossy, reordering one-way channel (see docs/protocol.md).
