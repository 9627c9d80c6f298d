//! The one byte codec every fixed binary format in this crate is read and written with: a
//! bounds-checked [`Reader`] over untrusted bytes, a [`Writer`] into an exactly-sized buffer, and
//! [`ct_eq`], the one constant-time comparison for tags.
//!
//! Owns nothing format-specific. The formats that use it (frames in
//! [`transport::wire`](crate::transport::wire), progress records in
//! [`transport::progress`](crate::transport::progress), spool volume headers in
//! [`spool`](crate::spool), the bundle prefix in [`bundle::format`](crate::bundle::format) and
//! the SSH key encoding in [`bundle::keys`](crate::bundle::keys)) own their layouts and map the
//! two codec errors onto their own error types. Byte order is explicit in every method name:
//! frames, volumes and SSH keys are big-endian, progress records and the bundle prefix are
//! little-endian.
//!
//! Crate-private on purpose: the public surface is each format's encode and decode, never the
//! cursor, so no caller outside this crate can parse half a frame.

/// Why a [`Reader`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodecError {
    /// A read asked for more bytes than remain.
    Truncated,
    /// [`Reader::expect_end`] found bytes left over.
    TrailingBytes,
}

/// A cursor over untrusted bytes: every read checks the remaining length first, so a lying or
/// truncated input is an error, never a panic or an over-read.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let Some((head, tail)) = self.rest.split_at_checked(n) else {
            return Err(CodecError::Truncated);
        };
        self.rest = tail;
        Ok(head)
    }

    /// Every byte not yet read (possibly none).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(CodecError::Truncated)?;
        self.rest = tail;
        Ok(*head)
    }

    /// One byte.
    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    /// A big-endian u16.
    pub(crate) fn u16_be(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian u32.
    pub(crate) fn u32_be(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian u64.
    pub(crate) fn u64_be(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A little-endian u16.
    pub(crate) fn u16_le(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian u32.
    pub(crate) fn u32_le(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub(crate) fn u64_le(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Refuse trailing bytes.
    pub(crate) fn expect_end(&self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes)
        }
    }
}

/// Writes fields in order into a buffer the caller sized to the exact encoded length first.
///
/// Writing past the end panics: every encoder computes its length from its own constants
/// before writing, so an overrun is a bug in this crate, never a property of the input.
/// [`Writer::finish`] checks (in debug builds) that the encoder filled what it sized.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Copy `bytes`.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        self.buf[self.pos..end].copy_from_slice(bytes);
        self.pos = end;
    }

    /// One byte.
    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }

    /// A big-endian u16.
    pub(crate) fn u16_be(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }

    /// A big-endian u32.
    pub(crate) fn u32_be(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    /// A big-endian u64.
    pub(crate) fn u64_be(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }

    /// A little-endian u16.
    pub(crate) fn u16_le(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian u32.
    pub(crate) fn u32_le(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian u64.
    pub(crate) fn u64_le(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// End of the fields: debug builds check exactly `expected` bytes were written (the caller
    /// leaves any tag region after them to be filled separately).
    pub(crate) fn finish(self, expected: usize) {
        debug_assert_eq!(self.pos, expected, "encoder wrote a different length");
    }
}

/// Whether `a == b`, in time that depends only on the lengths, never on where they differ.
///
/// For comparing a received tag with the expected one: an early exit would tell an attacker how
/// many leading bytes of a forgery were right. The accumulated difference passes through
/// [`core::hint::black_box`] so the optimiser cannot turn the loop back into an early-exit
/// compare.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| core::hint::black_box(acc | (x ^ y)));
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked_and_leave_the_cursor_alone_on_failure() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16_be(), Ok(0x0203));
        assert_eq!(r.u16_le(), Ok(0x0504));
        assert_eq!(r.u64_be(), Err(CodecError::Truncated));
        assert_eq!(r.remaining(), 6);
        assert_eq!(r.take(7), Err(CodecError::Truncated));
        assert_eq!(r.u32_be(), Ok(0x0607_0809));
        assert_eq!(r.expect_end(), Err(CodecError::TrailingBytes));
        assert_eq!(r.array::<2>(), Ok([10, 11]));
        assert_eq!(r.expect_end(), Ok(()));
        assert_eq!(r.rest(), &[] as &[u8]);
        assert_eq!(r.u8(), Err(CodecError::Truncated));
        assert_eq!(
            Reader::new(&[]).take(usize::MAX),
            Err(CodecError::Truncated)
        );
    }

    #[test]
    fn writer_and_reader_agree_in_both_byte_orders() {
        let mut buf = [0u8; 1 + 2 + 4 + 8 + 2 + 4 + 8 + 3];
        let mut w = Writer::new(&mut buf);
        w.u8(0xAB);
        w.u16_be(0x0102);
        w.u32_be(0x0304_0506);
        w.u64_be(0x0708_090A_0B0C_0D0E);
        w.u16_le(0x0102);
        w.u32_le(0x0304_0506);
        w.u64_le(0x0708_090A_0B0C_0D0E);
        w.bytes(b"xyz");
        w.finish(32);
        assert_eq!(&buf[1..3], &[1, 2]);
        assert_eq!(&buf[15..17], &[2, 1]);
        let mut r = Reader::new(&buf);
        assert_eq!(r.u8(), Ok(0xAB));
        assert_eq!(r.u16_be(), Ok(0x0102));
        assert_eq!(r.u32_be(), Ok(0x0304_0506));
        assert_eq!(r.u64_be(), Ok(0x0708_090A_0B0C_0D0E));
        assert_eq!(r.u16_le(), Ok(0x0102));
        assert_eq!(r.u32_le(), Ok(0x0304_0506));
        assert_eq!(r.u64_le(), Ok(0x0708_090A_0B0C_0D0E));
        assert_eq!(r.take(3), Ok(&b"xyz"[..]));
        assert_eq!(r.expect_end(), Ok(()));
    }

    #[test]
    #[should_panic]
    fn writing_past_the_sized_buffer_is_a_bug_not_a_silent_truncation() {
        let mut buf = [0u8; 3];
        Writer::new(&mut buf).u32_be(1);
    }

    #[test]
    fn ct_eq_is_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(&[7; 16], &[7; 16]));
        assert!(!ct_eq(&[7; 16], &[7; 15]));
        for i in 0..16 {
            let mut other = [7u8; 16];
            other[i] ^= 0x80;
            assert!(!ct_eq(&[7; 16], &other), "differs at {i}");
        }
    }
}
