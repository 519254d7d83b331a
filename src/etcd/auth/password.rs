//! Password hashing as etcd 3.5 does it.
//!
//! Since etcd 3.5 the member that receives `UserAdd`/`UserChangePassword` hashes the
//! password with bcrypt *before* proposing, and puts the hash, standard-base64 encoded,
//! into the request's `hashedPassword` field (clearing `password`). Every member then
//! stores the decoded hash bytes in `authpb.User.password`. The `$2a$` prefix Go's
//! bcrypt writes is used so stored users look like etcd's.

use super::error::AuthError;

/// Hashes `password` with bcrypt at `cost` and returns it base64-encoded, ready for the
/// `hashedPassword` field of `AuthUserAddRequest` / `AuthUserChangePasswordRequest`.
///
/// CPU-heavy at production costs (etcd's default is 10): call it before proposing,
/// never on the apply path.
pub fn hash_password(password: &str, cost: u32) -> Result<String, AuthError> {
    let parts = bcrypt::hash_with_result(password, cost).map_err(|e| AuthError::Hash(e.to_string()))?;
    let hash = parts.format_for_version(bcrypt::Version::TwoA);
    Ok(base64_encode(hash.as_bytes()))
}

/// Checks `password` against a stored bcrypt hash (raw bytes, as in `authpb.User`).
/// A malformed or empty hash never matches.
pub fn verify_password(stored_hash: &[u8], password: &str) -> bool {
    match std::str::from_utf8(stored_hash) {
        Ok(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        Err(_) => false,
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (Go's `base64.StdEncoding`).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// Strict standard base64 decoding with padding (Go's `base64.StdEncoding.DecodeString`,
/// except that Go also skips `\r` and `\n`, which are skipped here too).
/// Returns `None` for malformed input.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = text.bytes().filter(|b| *b != b'\r' && *b != b'\n').collect();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        ALPHABET
            .iter()
            .position(|a| *a == c)
            .and_then(|p| u32::try_from(p).ok())
    };
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.len() / 4;
    for (i, quad) in bytes.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != quads) {
            return None;
        }
        let mut n: u32 = 0;
        for (j, c) in quad.iter().enumerate() {
            let v = if j >= 4 - pad { 0 } else { value(*c)? };
            n = (n << 6) | v;
        }
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Go rejects non-zero trailing bits in the last, padded group.
        if (pad == 1 && decoded[2] != 0) || (pad == 2 && decoded[1] != 0) {
            return None;
        }
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn base64_known_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).as_deref(), Some(plain.as_bytes()));
        }
        assert_eq!(base64_decode("Zg="), None);
        assert_eq!(base64_decode("Zg=a"), None);
        assert_eq!(base64_decode("Z!=="), None);
        assert_eq!(base64_decode("Zh=="), None, "non-zero trailing bits");
        assert_eq!(base64_decode("Zg==Zg=="), None, "padding in the middle");
    }

    proptest! {
        #[test]
        fn base64_round_trip(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let enc = base64_encode(&data);
            prop_assert_eq!(base64_decode(&enc), Some(data));
        }
    }

    #[test]
    fn hash_and_verify() -> Result<(), AuthError> {
        let encoded = hash_password("secret", 4)?;
        let raw = base64_decode(&encoded).ok_or(AuthError::Hash("decode".into()))?;
        assert!(raw.starts_with(b"$2a$04$"), "{}", String::from_utf8_lossy(&raw));
        assert!(verify_password(&raw, "secret"));
        assert!(!verify_password(&raw, "Secret"));
        assert!(!verify_password(b"", "secret"));
        assert!(!verify_password(&[0xff, 0xfe], "secret"));
        Ok(())
    }

    #[test]
    fn verifies_both_bcrypt_prefixes() {
        // Go writes `$2a$`; the bcrypt crate defaults to `$2b$`. Both must verify.
        let parts = bcrypt::hash_with_result("x", 4).ok();
        let Some(parts) = parts else { panic!("hashing failed") };
        let a = parts.format_for_version(bcrypt::Version::TwoA);
        let b = parts.format_for_version(bcrypt::Version::TwoB);
        assert!(verify_password(a.as_bytes(), "x"));
        assert!(verify_password(b.as_bytes(), "x"));
    }
}
