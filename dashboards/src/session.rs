//! Logins to the pages: a token given once (in a form, never in a URL) becomes a session
//! cookie, HttpOnly and SameSite=Strict, that names the principal and is signed (HMAC-SHA-256)
//! with the service's session key. The cookie carries a digest of the principal's token: a
//! token changed or removed in the configuration ends its sessions. With a key shared in the
//! configuration, any instance of the service accepts the sessions of the others.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "mxpulse_session";

/// The key sessions are signed with, and how long they last.
#[derive(Clone)]
pub struct SessionKeys {
    key: Vec<u8>,
    pub lifetime: std::time::Duration,
    /// Add `Secure` to the cookie (behind HTTPS).
    pub secure: bool,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn tag_of(token: &str) -> String {
    hex::encode(&Sha256::digest(token.as_bytes())[..8])
}

impl SessionKeys {
    pub fn new(key: Vec<u8>, lifetime: std::time::Duration, secure: bool) -> Self {
        Self {
            key,
            lifetime,
            secure,
        }
    }

    fn mac(&self, payload: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| {
            <Hmac<Sha256> as KeyInit>::new_from_slice(&[0u8; 32]).expect("a 32-byte key")
        });
        mac.update(payload.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The cookie value of a session of `name` (whose token is `token`) until `now + lifetime`.
    pub fn issue(&self, name: &str, token: &str, now: i64) -> String {
        let expires = now + self.lifetime.as_secs() as i64;
        let payload = format!("v1.{}.{expires}.{}", hex::encode(name), tag_of(token));
        let mac = self.mac(&payload);
        format!("{payload}.{mac}")
    }

    /// The principal name of a valid, unexpired session whose token is still `token_of(name)`.
    pub fn verify<'a>(
        &self,
        value: &str,
        now: i64,
        token_of: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<String> {
        let (payload, mac) = value.rsplit_once('.')?;
        if !bool::from(self.mac(payload).as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let mut parts = payload.split('.');
        let (Some("v1"), Some(name), Some(expires), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let name = String::from_utf8(hex::decode(name).ok()?).ok()?;
        if expires.parse::<i64>().ok()? < now {
            return None;
        }
        let current = token_of(&name)?;
        bool::from(tag_of(current).as_bytes().ct_eq(tag.as_bytes())).then_some(name)
    }

    /// The `Set-Cookie` value that stores `value`.
    pub fn set_cookie(&self, value: &str) -> String {
        format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.lifetime.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that ends the session.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The session cookie's value in a `Cookie` header.
pub fn from_header(cookies: &str) -> Option<&str> {
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        SessionKeys::new(vec![7; 32], std::time::Duration::from_secs(3600), false)
    }

    #[test]
    fn a_session_names_its_principal_until_it_expires_or_its_token_changes() {
        let keys = keys();
        let cookie = keys.issue("dinum-lead", "token-one", 1_000);
        let token_one = |name: &str| (name == "dinum-lead").then_some("token-one");
        assert_eq!(
            keys.verify(&cookie, 1_500, token_one).as_deref(),
            Some("dinum-lead")
        );
        assert_eq!(keys.verify(&cookie, 5_000, token_one), None, "expired");
        assert_eq!(
            keys.verify(&cookie, 1_500, |_| Some("token-two")),
            None,
            "token changed"
        );
        assert_eq!(
            keys.verify(&cookie, 1_500, |_| None),
            None,
            "principal removed"
        );
        let other = SessionKeys::new(vec![8; 32], std::time::Duration::from_secs(3600), false);
        assert_eq!(other.verify(&cookie, 1_500, token_one), None, "another key");
        let forged = cookie.replace(&hex::encode("dinum-lead"), &hex::encode("admin"));
        assert_eq!(
            keys.verify(&forged, 1_500, |_| Some("token-one")),
            None,
            "forged name"
        );
        assert!(
            keys.set_cookie(&cookie)
                .contains("HttpOnly; SameSite=Strict")
        );
        assert_eq!(from_header("a=1; mxpulse_session=xyz; b=2"), Some("xyz"));
    }
}
