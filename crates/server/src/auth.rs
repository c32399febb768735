//! Passwords (argon2), random tokens, and the hashes under which tokens are stored.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the system's random source failed: {0}")]
    Random(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// `n` random bytes, hex-encoded.
pub fn random_hex(n: usize) -> Result<String, AuthError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(hex::encode(buf))
}

/// A new API or session token: 32 random bytes, prefixed so it is recognisable in a leak scan.
pub fn new_token(prefix: &str) -> Result<String, AuthError> {
    Ok(format!("{prefix}_{}", random_hex(32)?))
}

/// How a token is stored: only its SHA-256, so a database copy does not grant access.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Argon2 working memory a stored hash may ask for at most (in 1 KiB blocks): 256 MiB.
const MAX_BLOCKS: usize = 1 << 18;

/// Checks `password` against a stored PHC hash like [`verify_password`], but in `memory`,
/// grown once to the hash's memory cost and reused by the next check. Each fresh 19 MiB
/// allocation would otherwise stay with the allocator of the thread that made it.
pub fn verify_password_in(password: &str, stored: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        && bool::from(out.ct_eq(expected.as_bytes()))
}

pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Characters a new password needs at least.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Bytes a password may have at most.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a new password is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("a password of only spaces is no password")]
    OnlyWhitespace,
    #[error("a password may have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
}

/// Checks a password someone chose: long enough, not only whitespace, not absurdly long.
/// (Whitespace inside or around a password is kept: it is the person's choice.)
pub fn check_new_password(password: &str) -> Result<(), WeakPassword> {
    if password.trim().is_empty() {
        return Err(WeakPassword::OnlyWhitespace);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(WeakPassword::TooLong);
    }
    Ok(())
}

/// A readable generated password (for `balie user add` without one).
pub fn generate_password() -> Result<String, AuthError> {
    random_hex(12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip_and_wrong_password_fails() {
        let h = hash_password("correct horse").expect("hash");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        let mut memory = Vec::new();
        assert!(verify_password_in("correct horse", &h, &mut memory));
        assert!(!verify_password_in("wrong horse", &h, &mut memory));
        assert!(!verify_password_in(
            "correct horse",
            "not a hash",
            &mut memory
        ));
        assert_eq!(
            memory.len(),
            19 * 1024,
            "the default cost, kept for the next check"
        );
        assert!(verify_password_in("correct horse", &h, &mut memory));
    }

    #[test]
    fn weak_new_passwords_are_refused() {
        let cases = [
            ("          ", Err(WeakPassword::OnlyWhitespace)),
            ("\t\n  \u{3000}", Err(WeakPassword::OnlyWhitespace)),
            ("", Err(WeakPassword::OnlyWhitespace)),
            ("short", Err(WeakPassword::TooShort)),
            ("nine char", Err(WeakPassword::TooShort)),
            ("ten chars!", Ok(())),
            ("correct horse battery", Ok(())),
            (" padded password ", Ok(())),
        ];
        for (password, expected) in cases {
            assert_eq!(check_new_password(password), expected, "{password:?}");
        }
        assert_eq!(
            check_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(WeakPassword::TooLong)
        );
        let generated = generate_password().expect("password");
        assert_eq!(check_new_password(&generated), Ok(()));
    }

    #[test]
    fn tokens_are_unique_and_stored_hashed() {
        let a = new_token("balie").expect("token");
        let b = new_token("balie").expect("token");
        assert_ne!(a, b);
        assert!(a.starts_with("balie_"));
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), a);
    }
}
