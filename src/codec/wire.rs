//! The Confluent wire format: magic byte `0`, a 4-byte big-endian schema id,
//! then the Avro binary body.

/// The magic byte that starts every Confluent-framed message.
pub const MAGIC: u8 = 0;
/// Header length: magic byte + schema id.
pub const HEADER_LEN: usize = 5;

/// Whether `bytes` look Confluent-framed. JSON never starts with a NUL byte,
/// so the first byte alone tells the two input formats apart.
pub fn is_framed(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[0] == MAGIC
}

/// Splits a framed message into its schema id and Avro body.
pub fn unframe(bytes: &[u8]) -> Option<(u32, &[u8])> {
    if !is_framed(bytes) {
        return None;
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Some((id, &bytes[HEADER_LEN..]))
}

/// Prefixes an Avro body with the header for `schema_id`.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let f = frame(0x01020304, b"body");
        assert_eq!(&f[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(unframe(&f), Some((0x01020304, &b"body"[..])));
        assert_eq!(unframe(b"{\"a\":1}"), None);
        assert_eq!(unframe(&[0, 1, 2]), None);
    }
}
