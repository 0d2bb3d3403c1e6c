//! Keyed pseudonymization (docs/design.md §4): HMAC-SHA-256 under a secret key, truncated to 64 bits
//! for users, rooms and devices and to 128 bits for events.
//!
//! A plain hash would be reversible here, since Tchap Matrix IDs spell out the agent's e-mail
//! address; the key never leaves the hooks, and its public [`KeyId`] travels with every record
//! instead. Each kind of identifier is hashed under its own tag, so a user and a room with the
//! same string never share a pseudonym.

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use mxpulse_schemas::{DevicePseudonym, EventPseudonym, KeyId, RoomPseudonym, UserPseudonym};
use sha2::Sha256;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// Why a pseudonymization key could not be had. The messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no pseudonymization key: set {env_var} or pseudonym.key_file (at least {min} bytes, e.g. `openssl rand -base64 48 > key`)",
        min = PseudonymKey::MIN_LEN
    )]
    Missing { env_var: &'static str },
    #[error("the pseudonymization key from {origin} is {len} bytes; it must be at least {min} bytes", min = PseudonymKey::MIN_LEN)]
    TooShort { origin: String, len: usize },
    #[error("cannot read the pseudonymization key file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The secret key. Its bytes are wiped on drop and never shown by `Debug`.
pub struct PseudonymKey {
    bytes: Zeroizing<Vec<u8>>,
    id: KeyId,
}

impl PseudonymKey {
    /// Shorter keys are refused: 32 bytes is the HMAC-SHA-256 block security level.
    pub const MIN_LEN: usize = 32;

    /// A key from its bytes; `origin` says where they came from, for the error message.
    /// Surrounding white space (a trailing newline in a file) is not part of the key.
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>, origin: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(bytes.trim_ascii().to_vec());
        if bytes.len() < Self::MIN_LEN {
            return Err(KeyError::TooShort {
                origin: origin.to_owned(),
                len: bytes.len(),
            });
        }
        let id = Self::derive_id(&bytes);
        tracing::info!(key_id = %id, origin, "pseudonymization key loaded");
        Ok(Self { bytes, id })
    }

    /// Reads the key from a file (the whole file, trimmed).
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(Zeroizing::new(bytes), &path.display().to_string())
    }

    /// The public id: the first 4 bytes of HMAC(key, "mxpulse key id"). It identifies the
    /// key without revealing it, so a rotation is visible in the data.
    pub fn id(&self) -> KeyId {
        self.id
    }

    fn derive_id(bytes: &[u8]) -> KeyId {
        let digest = mac(bytes)
            .chain_update(b"mxpulse key id")
            .finalize()
            .into_bytes();
        KeyId([digest[0], digest[1], digest[2], digest[3]])
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PseudonymKey")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// Turns Matrix identifiers into pseudonyms under one key.
#[derive(Clone)]
pub struct Pseudonymizer {
    /// HMAC state with the key already absorbed: cloning it per identifier saves the two
    /// key-block compressions on every call.
    keyed: HmacSha256,
    key_id: KeyId,
}

impl Pseudonymizer {
    pub fn new(key: &PseudonymKey) -> Self {
        Self {
            keyed: mac(&key.bytes),
            key_id: key.id,
        }
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// `@localpart:server`.
    pub fn user(&self, user_id: &str) -> UserPseudonym {
        UserPseudonym(u64::from_be_bytes(truncate(
            self.digest(b"user", &[user_id.as_bytes()]),
        )))
    }

    /// `!opaque` (room version 12) or `!opaque:server`.
    pub fn room(&self, room_id: &str) -> RoomPseudonym {
        RoomPseudonym(u64::from_be_bytes(truncate(
            self.digest(b"room", &[room_id.as_bytes()]),
        )))
    }

    /// A device ID is only unique within its user, so both go into the pseudonym.
    pub fn device(&self, user_id: &str, device_id: &str) -> DevicePseudonym {
        let digest = self.digest(
            b"device",
            &[user_id.as_bytes(), b"\0", device_id.as_bytes()],
        );
        DevicePseudonym(u64::from_be_bytes(truncate(digest)))
    }

    /// `$event_id`.
    pub fn event(&self, event_id: &str) -> EventPseudonym {
        EventPseudonym(u128::from_be_bytes(truncate(
            self.digest(b"event", &[event_id.as_bytes()]),
        )))
    }

    /// A candidate e-mail domain, as the hooks' state keeps it until enough users share it:
    /// a domain seen for one user may be part of their name, and must not sit in a file in
    /// clear.
    pub fn candidate_domain(&self, domain: &str) -> u64 {
        u64::from_be_bytes(truncate(self.digest(b"domain", &[domain.as_bytes()])))
    }

    fn digest(&self, tag: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(tag);
        mac.update(b"\0");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// The first `N` bytes of a digest (docs/design.md §4's truncation).
fn truncate<const N: usize>(digest: [u8; 32]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&digest[..N]);
    out
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(bytes: &[u8]) -> PseudonymKey {
        PseudonymKey::from_bytes(Zeroizing::new(bytes.to_vec()), "test").unwrap()
    }

    fn test_key() -> PseudonymKey {
        key(&(0u8..32).collect::<Vec<_>>())
    }

    #[test]
    fn known_vectors_computed_independently() {
        // Expected values from Python's hmac module: HMAC-SHA-256(key = bytes 0..32,
        // tag || 0x00 || identifier), truncated.
        let p = Pseudonymizer::new(&test_key());
        assert_eq!(
            p.user("@alice:interieur.localhost").to_string(),
            "7db0e9dd7261940c"
        );
        assert_eq!(
            p.room("!hUJ1val0:interieur.localhost").to_string(),
            "a1565a59f6d351a8"
        );
        assert_eq!(
            p.event("$abc").to_string(),
            "99def8de4646e39f00798adf728f14bf"
        );
        assert_eq!(
            p.device("@alice:interieur.localhost", "ALICEDEV")
                .to_string(),
            "dc8f4e2732161eba"
        );
        assert_eq!(p.key_id().to_string(), "2dc61891");
    }

    #[test]
    fn same_key_same_pseudonym_other_key_other_pseudonym() {
        let a = Pseudonymizer::new(&test_key());
        let again = Pseudonymizer::new(&test_key());
        let other = Pseudonymizer::new(&key(&[7u8; 40]));
        let user = "@jean.dupont-interieur.gouv.fr:agent.interieur.tchap.gouv.fr";
        assert_eq!(a.user(user), again.user(user));
        assert_ne!(a.user(user), other.user(user));
        assert_ne!(a.key_id(), other.key_id());
    }

    #[test]
    fn kinds_are_separated() {
        let p = Pseudonymizer::new(&test_key());
        let same = "@x:y";
        assert_ne!(p.user(same).0, p.room(same).0);
        // The same device ID under two users is two devices.
        assert_ne!(p.device("@a:s", "PHONE"), p.device("@b:s", "PHONE"));
    }

    #[test]
    fn short_or_blank_keys_are_refused_with_a_clear_message() {
        let err = PseudonymKey::from_bytes(
            Zeroizing::new(b"short-secret\n".to_vec()),
            "MXPULSE_PSEUDONYM_KEY",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the pseudonymization key from MXPULSE_PSEUDONYM_KEY is 12 bytes; it must be at least 32 bytes"
        );
        // 31 bytes of key plus a newline is still too short: white space is not key.
        let err = PseudonymKey::from_bytes(
            Zeroizing::new([b'k'; 31].iter().chain(b"\n").copied().collect()),
            "file",
        )
        .unwrap_err();
        assert!(matches!(err, KeyError::TooShort { len: 31, .. }));
    }

    #[test]
    fn key_file_is_read_trimmed() {
        let dir = std::env::temp_dir().join(format!("mxpulse-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(
            &path,
            [b'z'; 48].iter().chain(b"\n").copied().collect::<Vec<_>>(),
        )
        .unwrap();
        let from_file = PseudonymKey::read_file(&path).unwrap();
        assert_eq!(from_file.id(), key(&[b'z'; 48]).id());
        let missing = PseudonymKey::read_file(&dir.join("absent")).unwrap_err();
        assert!(missing.to_string().contains("absent"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn logs_name_the_key_id_never_the_key() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let secret = "another-secret-pseudonymization-key-ABCDEFGHIJ";
        let key = tracing::subscriber::with_default(subscriber, || {
            let key = key(secret.as_bytes());
            tracing::info!(?key, "using");
            key
        });
        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains(&key.id().to_string()), "{logs}");
        assert!(!logs.contains(secret), "{logs}");
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let secret = "this-is-the-secret-pseudonymization-key-0123456789";
        let key = key(secret.as_bytes());
        let p = Pseudonymizer::new(&key);
        for shown in [format!("{key:?}"), format!("{key:#?}"), format!("{p:?}")] {
            assert!(
                !shown.contains(secret) && !shown.contains("secret"),
                "{shown}"
            );
            assert!(!shown.contains(&hex::encode(secret)), "{shown}");
            assert!(shown.contains(&key.id().to_string()), "{shown}");
        }
    }
}
