//! The protobuf wire format: keys, varints and length-delimited values, read without panicking.

/// One field value as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wire<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: strings, bytes, messages, packed repeated scalars.
    Len(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

impl Wire<'_> {
    /// The wire type number.
    pub(super) fn wire_type(&self) -> u8 {
        match self {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Len(_) => 2,
            Wire::Fixed32(_) => 5,
        }
    }
}

/// Why the wire could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WireError {
    /// The bytes end inside a key or a value.
    Truncated,
    /// A varint longer than ten bytes or beyond 64 bits.
    BadVarint,
    /// A field number of 0 or beyond 2^29-1, read at this key.
    BadTag(u64),
    /// Wire type 3, 4 (groups), 6 or 7, of this field number.
    BadWireType(u64, u8),
}

/// Reads the fields of one message.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over the encoded fields of one message.
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Whether every byte has been read.
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next field: its number and its value.
    pub(super) fn field(&mut self) -> Result<(u64, Wire<'a>), WireError> {
        let key = self.varint()?;
        let tag = key >> 3;
        if tag == 0 || tag > (1 << 29) - 1 {
            return Err(WireError::BadTag(key));
        }
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.array()?)),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
                Wire::Len(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(self.array()?)),
            other => return Err(WireError::BadWireType(tag, other as u8)),
        };
        Ok((tag, value))
    }

    /// The next varint.
    pub(super) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&byte, rest)) = self.buf.split_first() else {
                return Err(WireError::Truncated);
            };
            self.buf = rest;
            if i == 9 && byte > 1 {
                return Err(WireError::BadVarint);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError::BadVarint)
    }

    /// The next eight bytes (a fixed64 or a packed double).
    pub(super) fn fixed64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if len > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8], expected: Result<Vec<(u64, Wire<'_>)>, WireError>) {
        let mut r = Reader::new(bytes);
        let mut got = Vec::new();
        let result = loop {
            if r.is_empty() {
                break Ok(got);
            }
            match r.field() {
                Ok(f) => got.push(f),
                Err(e) => break Err(e),
            }
        };
        assert_eq!(result, expected, "{bytes:02x?}");
    }

    #[test]
    fn every_wire_type_is_read() {
        check(&[0x08, 0x96, 0x01], Ok(vec![(1, Wire::Varint(150))]));
        check(
            &[0x11, 1, 0, 0, 0, 0, 0, 0, 0],
            Ok(vec![(2, Wire::Fixed64(1))]),
        );
        check(&[0x1a, 2, b'h', b'i'], Ok(vec![(3, Wire::Len(b"hi"))]));
        check(&[0x25, 1, 0, 0, 0], Ok(vec![(4, Wire::Fixed32(1))]));
        check(&[0x2a, 0], Ok(vec![(5, Wire::Len(b""))]));
        check(
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            Ok(vec![(1, Wire::Varint(u64::MAX))]),
        );
        check(
            &[0xf8, 0xff, 0xff, 0xff, 0x0f, 0],
            Ok(vec![((1 << 29) - 1, Wire::Varint(0))]),
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        check(&[0x08], Err(WireError::Truncated));
        check(&[0x08, 0x80], Err(WireError::Truncated));
        check(&[0x1a, 5, b'h'], Err(WireError::Truncated));
        check(
            &[
                0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            Err(WireError::Truncated),
        );
        check(&[0x11, 1, 2, 3], Err(WireError::Truncated));
        check(&[0x25, 1], Err(WireError::Truncated));
        check(&[0x00, 0x00], Err(WireError::BadTag(0)));
        check(
            &[0x80, 0x80, 0x80, 0x80, 0x10],
            Err(WireError::BadTag(1 << 32)),
        );
        check(&[0x0b], Err(WireError::BadWireType(1, 3)));
        check(&[0x0c], Err(WireError::BadWireType(1, 4)));
        check(&[0x0e], Err(WireError::BadWireType(1, 6)));
        check(
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ],
            Err(WireError::BadVarint),
        );
        check(
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            Err(WireError::BadVarint),
        );
    }
}
