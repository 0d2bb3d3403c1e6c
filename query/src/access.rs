//! Who is asking: bearer tokens (HTTP) and users (pgwire) from the configuration, each a
//! `Principal` with a role and an optional server scope. A ministry's principal sees only
//! its own server's rows, whatever it asks: the scope is applied to the session's views.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::session::Scope;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Figures only.
    Viewer,
    /// Figures and SQL (pseudonym columns included; every query is logged with its user).
    /// SQL answers are not suppressed, by design: the role reads the pseudonymized rows.
    Analyst,
    /// Everything an analyst has, plus operations.
    Admin,
}

impl Role {
    pub fn may_query_sql(self) -> bool {
        matches!(self, Role::Analyst | Role::Admin)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Only this server's rows.
    pub server: Option<String>,
}

impl Principal {
    /// What this principal's sessions may see.
    pub fn scope(&self) -> Scope {
        Scope {
            server: self.server.clone(),
            pseudonyms: self.role.may_query_sql(),
        }
    }
}

/// The principals and their secrets (HTTP token, pgwire password). `Debug` shows names only.
#[derive(Clone, Default)]
pub struct AccessList {
    entries: Vec<(String, Principal)>,
}

impl AccessList {
    pub fn new(entries: impl IntoIterator<Item = (String, Principal)>) -> Self {
        Self {
            entries: entries.into_iter().collect(),
        }
    }

    /// The principal whose token this is; every entry is compared, in constant time.
    pub fn by_token(&self, token: &str) -> Option<Principal> {
        let mut found = None;
        for (secret, principal) in &self.entries {
            if bool::from(secret.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(principal.clone());
            }
        }
        found
    }

    /// Every principal (the reports made ahead of time: one per scope).
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.entries.iter().map(|(_, p)| p)
    }

    /// The principal named `user` and its secret (pgwire's password check).
    pub fn named(&self, user: &str) -> Option<(&str, &Principal)> {
        self.entries
            .iter()
            .find(|(_, p)| p.name == user)
            .map(|(secret, p)| (secret.as_str(), p))
    }
}

impl std::fmt::Debug for AccessList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(_, p)| &p.name))
            .finish()
    }
}
