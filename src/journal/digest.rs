//! Hex digests shared by the journal's writers and readers: the runbook's and each
//! step's sha256, an approval's plan hash, a postmortem's preserved-section hash.

use sha2::{Digest, Sha256};

/// Lower-case hex of `bytes`, two digits per byte. One allocation: the engine hashes
/// every step of a runbook at the start of a run, so this sits on the per-step path.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// sha256 of `bytes` as 64 lower-case hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// sha256 of the concatenation of `parts`, as 64 lower-case hex digits (a text held
/// in blocks is hashed without joining them).
pub fn sha256_hex_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lower_case_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn a_text_in_parts_hashes_as_the_whole_text() {
        assert_eq!(
            sha256_hex_parts([&b"a"[..], b"", b"bc"]),
            sha256_hex(b"abc")
        );
    }

    #[test]
    fn sha256_hex_matches_the_published_test_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
