//! HMAC-SHA256 signatures over raw bytes, compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `body` under `key`.
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> [u8; 32] {
    // new_from_slice accepts keys of any length for HMAC; the error case cannot happen.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// `sha256=<lowercase hex>` of the HMAC, the form Meta and Balie's own webhooks use.
pub fn sha256_header(key: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(key, body)))
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Checks a `sha256=<hex>` header against the body. An empty key never verifies.
pub fn verify_sha256_header(key: &[u8], body: &[u8], header: &str) -> bool {
    if key.is_empty() {
        return false;
    }
    let expected = sha256_header(key, body);
    constant_time_eq(
        expected.as_bytes(),
        header.trim().to_ascii_lowercase().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_vector_from_shared_reference_verifies() {
        let h = sha256_header(b"secret", b"test");
        assert_eq!(
            h,
            "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
        );
        assert!(verify_sha256_header(b"secret", b"test", &h));
        assert!(!verify_sha256_header(b"secret", b"test2", &h));
        assert!(!verify_sha256_header(b"", b"test", &h));
    }
}
