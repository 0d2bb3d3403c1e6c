//! `Anonymizer`: one homeserver's view of the records. It knows the server's name (to tell
//! local users from federated ones), the pseudonymizer and the e-mail domain reader, and it is
//! the only place where a Matrix ID turns into the fields of a record.

use std::sync::Arc;

use mxpulse_schemas::vocabulary::{AccountChange, UserType};
use mxpulse_schemas::{
    AccountRecord, DirectoryRecord, RoomPseudonym, SchemaVersion, UnixMillis, VisitRecord,
};

use crate::user_agent::ClientRules;
use crate::{DomainReader, Pseudonymizer};

/// An event's time as published: to the minute. Millisecond times with year-long pseudonyms
/// would let anyone in a room match their own client's timestamps to pseudonyms, and follow a
/// named person across every room; the figures need days (docs/design.md §3).
pub const EVENT_TIME_MS: i64 = 60_000;

/// An account change's time as published: to the hour (the figures need local days).
pub const ACCOUNT_TIME_MS: i64 = 3_600_000;

/// `ms` truncated to a multiple of `unit`.
pub fn coarsened(ms: i64, unit: i64) -> UnixMillis {
    UnixMillis(ms.div_euclid(unit) * unit)
}

/// Turns one homeserver's identifiers into record fields.
#[derive(Clone, Debug)]
pub struct Anonymizer {
    server: String,
    pseudonymizer: Arc<Pseudonymizer>,
    domains: Arc<DomainReader>,
    clients: ClientRules,
}

/// One row of Synapse's `user_daily_visits`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisitRow {
    pub user_id: String,
    pub device_id: Option<String>,
    /// Start of the UTC day, milliseconds.
    pub timestamp_ms: i64,
    pub user_agent: Option<String>,
}

/// One row of Synapse's `users`, the columns the account records need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    /// Seconds: Synapse stores `users.creation_ts` in seconds.
    pub creation_ts_s: i64,
    pub user_type: Option<String>,
    pub is_guest: bool,
    pub appservice_id: Option<String>,
    pub deactivated: bool,
}

impl UserRow {
    /// Synapse's notion of the account's kind, as the vocabulary spells it.
    pub fn user_type(&self) -> UserType {
        if self.is_guest {
            UserType::Guest
        } else if self.appservice_id.is_some() {
            UserType::Appservice
        } else {
            match self.user_type.as_deref() {
                Some("bot") => UserType::Bot,
                Some("support") => UserType::Support,
                _ => UserType::Regular,
            }
        }
    }
}

impl Anonymizer {
    pub fn new(
        server: impl Into<String>,
        pseudonymizer: Arc<Pseudonymizer>,
        domains: Arc<DomainReader>,
    ) -> Self {
        Self {
            server: server.into(),
            pseudonymizer,
            domains,
            clients: ClientRules::shipped(),
        }
    }

    /// Classifies visits' user agents with `clients` (the operator's rules and the shipped).
    pub fn with_client_rules(mut self, clients: ClientRules) -> Self {
        self.clients = clients;
        self
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn pseudonymizer(&self) -> &Pseudonymizer {
        &self.pseudonymizer
    }

    /// The e-mail domain hidden in a user ID, where the server encodes one: a known or learned
    /// domain, or `other` (`email_domain.rs`: never part of a name, never a domain of fewer
    /// users than the figures' threshold).
    pub fn domain_of(&self, user_id: &str) -> Option<String> {
        self.domains
            .domain_of(user_id, self.pseudonymizer.user(user_id).0)
    }

    /// The server's domain reader (what it learned, to persist it).
    pub fn domains(&self) -> &DomainReader {
        &self.domains
    }

    /// True when `user_id` (`@local:server`) belongs to this homeserver. Only local senders
    /// are reported, so that a federation's hooks never count one event twice.
    pub fn is_local(&self, user_id: &str) -> bool {
        user_id
            .split_once(':')
            .is_some_and(|(_, server)| server == self.server)
    }

    pub fn visit(&self, row: &VisitRow) -> Option<VisitRecord> {
        let day = chrono::DateTime::from_timestamp_millis(row.timestamp_ms)?.date_naive();
        let client = self.clients.classify(row.user_agent.as_deref());
        Some(VisitRecord {
            v: SchemaVersion::CURRENT,
            key_id: self.pseudonymizer.key_id(),
            day,
            server: self.server.clone(),
            user: self.pseudonymizer.user(&row.user_id),
            device: row
                .device_id
                .as_deref()
                .map(|device| self.pseudonymizer.device(&row.user_id, device)),
            domain: self.domain_of(&row.user_id),
            platform: client.platform,
            client: client.client,
            family: Some(client.family),
        })
    }

    pub fn account(
        &self,
        user_id: &str,
        ts: UnixMillis,
        change: AccountChange,
        user_type: UserType,
    ) -> AccountRecord {
        AccountRecord {
            v: SchemaVersion::CURRENT,
            key_id: self.pseudonymizer.key_id(),
            ts: coarsened(ts.0, ACCOUNT_TIME_MS),
            server: self.server.clone(),
            user: self.pseudonymizer.user(user_id),
            domain: self.domain_of(user_id),
            change,
            user_type,
        }
    }

    /// A room of the public room directory as read at `now_ms` (to the minute), or, with
    /// `listed` false, a room that left it (then nothing else is said of it).
    pub fn directory_entry(
        &self,
        room: RoomPseudonym,
        listed: bool,
        name: Option<String>,
        topic: Option<String>,
        now_ms: i64,
    ) -> DirectoryRecord {
        DirectoryRecord {
            v: SchemaVersion::CURRENT,
            key_id: self.pseudonymizer.key_id(),
            ts: coarsened(now_ms, EVENT_TIME_MS),
            server: self.server.clone(),
            room,
            listed,
            name: name.filter(|_| listed),
            topic: topic.filter(|_| listed),
        }
    }

    /// The account record of a `users` row's creation.
    pub fn account_created(&self, row: &UserRow) -> AccountRecord {
        self.account(
            &row.name,
            UnixMillis(row.creation_ts_s.saturating_mul(1000)),
            AccountChange::Created,
            row.user_type(),
        )
    }

    /// A deactivated account, dated `at_ms` (the user's last trace, `SynapseDb::last_trace_ms`).
    pub fn account_deactivated(&self, row: &UserRow, at_ms: i64) -> AccountRecord {
        self.account(
            &row.name,
            UnixMillis(at_ms),
            AccountChange::Deactivated,
            row.user_type(),
        )
    }
}
