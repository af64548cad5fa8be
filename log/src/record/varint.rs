//! Zig-zag variable-length integers, as Kafka's record format uses them for every
//! per-record length, delta and count (the same encoding as protobuf's `sint32`/`sint64`).

use super::RecordError;

/// The most bytes a zig-zag `varint` (i32) can take.
pub const MAX_VARINT_BYTES: usize = 5;
/// The most bytes a zig-zag `varlong` (i64) can take.
pub const MAX_VARLONG_BYTES: usize = 10;

/// Appends `value` as a zig-zag varint.
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned(out, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

/// Appends `value` as a zig-zag varlong.
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_unsigned(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// How many bytes `put_varint(value)` writes.
pub fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(((value << 1) ^ (value >> 31)) as u32))
}

/// How many bytes `put_varlong(value)` writes.
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(((value << 1) ^ (value >> 63)) as u64)
}

fn unsigned_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// A cursor over a byte slice that reads Kafka's primitive record fields and reports
/// where a read ran past the end instead of panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads a zig-zag varint (at most 5 bytes).
    pub fn varint(&mut self) -> Result<i32, RecordError> {
        let raw = self.unsigned(MAX_VARINT_BYTES)?;
        let raw = u32::try_from(raw).map_err(|_| self.malformed("varint overflows 32 bits"))?;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// Reads a zig-zag varlong (at most 10 bytes).
    pub fn varlong(&mut self) -> Result<i64, RecordError> {
        let raw = self.unsigned(MAX_VARLONG_BYTES)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    fn unsigned(&mut self, max_bytes: usize) -> Result<u64, RecordError> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.malformed("truncated varint"));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed("varint longer than its maximum width"))
    }

    /// Reads one signed byte.
    pub fn i8(&mut self) -> Result<i8, RecordError> {
        Ok(self.bytes(1)?[0] as i8)
    }

    /// Reads `len` raw bytes.
    pub fn bytes(&mut self, len: usize) -> Result<&'a [u8], RecordError> {
        if self.remaining() < len {
            return Err(self.malformed("field runs past the end of the record"));
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    /// Reads a varint length followed by that many bytes; a length of -1 means null.
    pub fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, RecordError> {
        match self.varint()? {
            -1 => Ok(None),
            len if len < -1 => Err(self.malformed("negative length")),
            len => self.bytes(len as usize).map(Some),
        }
    }

    fn malformed(&self, what: &'static str) -> RecordError {
        RecordError::Malformed { position: self.pos, reason: what }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trips(v in any::<i32>()) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert_eq!(r.remaining(), 0);
        }

        #[test]
        fn varlong_round_trips(v in any::<i64>()) {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            prop_assert_eq!(out.len(), varlong_len(v));
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.varlong().unwrap(), v);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut r = Reader::new(&bytes);
            let _ = r.varlong();
            let _ = r.varint();
            let _ = r.nullable_bytes();
        }
    }

    #[test]
    fn known_encodings_match_kafka() {
        // Values from Kafka's ByteUtilsTest.
        let mut out = Vec::new();
        put_varint(&mut out, -1);
        put_varint(&mut out, 1);
        put_varint(&mut out, 300);
        assert_eq!(out, [0x01, 0x02, 0xd8, 0x04]);
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(Reader::new(&bytes).varint().is_err());
    }
}
