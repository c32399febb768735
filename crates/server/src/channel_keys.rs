//! Encryption of channel credentials at rest: one key file in the data directory, one
//! XChaCha20-Poly1305 seal per secret, bound to its channel and name.
//!
//! The store only ever sees [`SealedSecret`]s. The key lives in `<data_dir>/secret.key`
//! (created with mode 0600 on first use); back it up with the database, or the credentials
//! have to be entered again.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use balie_channels::Secret;
use balie_core::ChannelId;
use balie_store::SealedSecret;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "secret.key";

/// Seals and opens channel credentials with the data directory's key.
#[derive(Clone)]
pub struct ChannelKeys {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for ChannelKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelKeys([redacted])")
    }
}

impl ChannelKeys {
    /// Reads `<data_dir>/secret.key`, creating it (random, mode 0600) if it does not exist.
    pub fn open_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_hex(&path, text.trim()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&path),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn from_hex(path: &Path, text: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(text)
            .ok()
            .filter(|b| b.len() == KEY_BYTES)
            .with_context(|| {
                format!(
                    "{} does not hold a {KEY_BYTES}-byte hex key",
                    path.display()
                )
            })?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let cipher = XChaCha20Poly1305::new_from_slice(bytes)
            .map_err(|_| anyhow::anyhow!("a channel key must be {KEY_BYTES} bytes"))?;
        Ok(Self { cipher })
    }

    fn create(path: &PathBuf) -> anyhow::Result<Self> {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(format!("{}\n", hex::encode(key)).as_bytes())
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("writing {}", path.display()))?;
                Self::from_bytes(&key)
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Self::from_hex(path, text.trim())
            }
            Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }

    /// Encrypts `plaintext` for `name` on `channel`; a sealed value only opens for the same
    /// channel and name.
    pub fn seal(
        &self,
        channel: ChannelId,
        name: &str,
        plaintext: &str,
    ) -> anyhow::Result<SealedSecret> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let aad = associated_data(channel, name);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing the {name} secret failed"))?;
        Ok(SealedSecret {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Decrypts a value sealed by [`ChannelKeys::seal`] for the same channel and name.
    pub fn open(
        &self,
        channel: ChannelId,
        name: &str,
        sealed: &SealedSecret,
    ) -> anyhow::Result<Secret> {
        if sealed.nonce.len() != NONCE_BYTES {
            bail!("the stored {name} secret of channel {channel} is damaged");
        }
        let aad = associated_data(channel, name);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "the {name} secret of channel {channel} does not open with this data \
                     directory's {KEY_FILE}"
                )
            })?;
        let text = String::from_utf8(plain)
            .map_err(|_| anyhow::anyhow!("the {name} secret of channel {channel} is not text"))?;
        Ok(Secret::new(text))
    }
}

fn associated_data(channel: ChannelId, name: &str) -> String {
    format!("balie channel {channel} secret {name}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_for_its_channel_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ChannelKeys::open_or_create(dir.path()).unwrap();
        let sealed = keys.seal(ChannelId(1), "bot_token", "123:ABC").unwrap();
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"123:ABC"));
        assert_eq!(
            keys.open(ChannelId(1), "bot_token", &sealed)
                .unwrap()
                .expose(),
            "123:ABC"
        );
        assert!(keys.open(ChannelId(2), "bot_token", &sealed).is_err());
        assert!(keys.open(ChannelId(1), "access_token", &sealed).is_err());
        let again = ChannelKeys::open_or_create(dir.path()).unwrap();
        assert_eq!(
            again
                .open(ChannelId(1), "bot_token", &sealed)
                .unwrap()
                .expose(),
            "123:ABC",
            "the key file is reused"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        let stranger = ChannelKeys::open_or_create(other.path()).unwrap();
        assert!(stranger.open(ChannelId(1), "bot_token", &sealed).is_err());
    }
}
