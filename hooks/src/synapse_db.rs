//! Read-only access to a Synapse database (SQLite or PostgreSQL, one `sqlx::AnyPool`): the
//! few queries the tap and the backfill need, over the tables Synapse itself maintains
//! (`user_daily_visits`, `users`, `events` + `event_json`).
//!
//! Read-only is enforced by the connection, not by trust: SQLite files are opened with
//! `mode=ro`, PostgreSQL sessions with `default_transaction_read_only = on`.

use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor as _, Row as _};

use crate::anonymizer::{UserRow, VisitRow};

#[derive(Debug, thiserror::Error)]
pub enum SynapseDbError {
    #[error("cannot connect to the Synapse database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("query on the Synapse database failed ({what}): {source}")]
    Query {
        what: &'static str,
        source: sqlx::Error,
    },
}

/// A pool on one homeserver's database.
#[derive(Clone, Debug)]
pub struct SynapseDb {
    pool: AnyPool,
    /// PostgreSQL (else SQLite): the few statements whose SQL differs.
    postgres: bool,
}

/// A room of the public room directory, as Synapse holds it: what every user of the
/// directory sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicRoom {
    pub room_id: String,
    pub name: Option<String>,
    pub topic: Option<String>,
}

/// One event as the backfill reads it: its place in the stream and the client-format JSON
/// rebuilt from `event_json` (which holds neither the event ID nor, since room version 12,
/// always the room ID).
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub stream_ordering: i64,
    pub event: Value,
}

/// A `sqlite:` URL opened read-only; a bare path is a SQLite file.
fn read_only_url(url: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return without_unsupported_secrets(url);
    }
    let url = if url.starts_with("sqlite:") {
        url.to_owned()
    } else {
        format!("sqlite://{url}")
    };
    if url.contains("mode=") {
        url
    } else if url.contains('?') {
        format!("{url}&mode=ro")
    } else {
        format!("{url}?mode=ro")
    }
}

/// The URL without the secret parameters sqlx does not support: it would ignore them, and log
/// their value while saying so.
fn without_unsupported_secrets(url: &str) -> String {
    const UNSUPPORTED: [&str; 2] = ["sslpassword", "passfile"];
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            let unsupported = UNSUPPORTED.contains(&name);
            if unsupported {
                tracing::warn!(
                    parameter = name,
                    "a database URL parameter is not supported: ignored"
                );
            }
            !unsupported
        })
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// A database URL as it may be shown (`/health`, logs, `mxpulse config`): the user and
/// password of its authority and every parameter that may hold a secret (`password`,
/// `sslpassword`, `passfile`...) replaced by `***`.
pub fn display_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &base[..scheme], &base[at + 1..])
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_name(name) => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&params.join("&"));
    }
    shown
}

/// Whether a setting's name says it holds a secret (a password, a key, a token).
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "pass",
        "secret",
        "token",
        "key",
        "jaas",
        "credential",
        "oauthbearer.config",
    ]
    .iter()
    .any(|word| name.contains(word))
}

fn query_error(what: &'static str) -> impl FnOnce(sqlx::Error) -> SynapseDbError {
    move |source| SynapseDbError::Query { what, source }
}

impl SynapseDb {
    pub async fn connect(url: &str) -> Result<Self, SynapseDbError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .after_connect(|connection, _meta| {
                Box::pin(async move {
                    if connection.backend_name() == "PostgreSQL" {
                        connection
                            .execute("SET default_transaction_read_only = on")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&read_only_url(url))
            .await
            .map_err(|source| SynapseDbError::Connect {
                url: display_url(url),
                source,
            })?;
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        Ok(Self { pool, postgres })
    }

    /// Every account's Matrix ID (for learning the server's e-mail domains; never published).
    pub async fn user_names(&self) -> Result<Vec<String>, SynapseDbError> {
        let rows = sqlx::query("SELECT name FROM users")
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("users"))?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(query_error("users"))
    }

    /// The database's own clock (milliseconds since the epoch): Synapse dates its rows with
    /// it, so it bounds how far the tap's watermark may move, whatever a row's date says.
    pub async fn now_ms(&self) -> Result<i64, SynapseDbError> {
        let sql = if self.postgres {
            "SELECT CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)"
        } else {
            "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
        };
        let row = sqlx::query(sql)
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("clock"))?;
        row.try_get(0).map_err(query_error("clock"))
    }

    /// The last time Synapse recorded `user` doing anything: its last membership event (a
    /// deactivation makes the user leave every room, so for a deactivated user this is usually
    /// the deactivation itself), its last visit day, or its creation. What a deactivation is
    /// dated with: Synapse keeps no date of it, and this one is the same whoever asks, when.
    pub async fn last_trace_ms(&self, user: &str, created_s: i64) -> Result<i64, SynapseDbError> {
        let visit: Option<i64> =
            sqlx::query("SELECT MAX(timestamp) FROM user_daily_visits WHERE user_id = $1")
                .bind(user)
                .fetch_one(&self.pool)
                .await
                .and_then(|row| row.try_get(0))
                .map_err(query_error("user_daily_visits"))?;
        // Not every database has the membership tables (a database of visits and accounts
        // only): then the visits and the creation say it.
        let membership: Option<i64> = sqlx::query(
            "SELECT MAX(e.origin_server_ts) FROM room_memberships AS m \
             JOIN events AS e ON e.event_id = m.event_id WHERE m.user_id = $1",
        )
        .bind(user)
        .fetch_one(&self.pool)
        .await
        .and_then(|row| row.try_get(0))
        .unwrap_or_else(|error| {
            tracing::debug!(%error, "no membership events to date a deactivation with");
            None
        });
        Ok([visit, membership, Some(created_s.saturating_mul(1000))]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0))
    }

    /// Visits of the days from `from_day_ms` (a UTC midnight) on.
    pub async fn visits_since(&self, from_day_ms: i64) -> Result<Vec<VisitRow>, SynapseDbError> {
        self.visits_where("timestamp >= $1", from_day_ms).await
    }

    /// Visits of one UTC day.
    pub async fn visits_of_day(&self, day_ms: i64) -> Result<Vec<VisitRow>, SynapseDbError> {
        self.visits_where("timestamp = $1", day_ms).await
    }

    async fn visits_where(&self, filter: &str, ms: i64) -> Result<Vec<VisitRow>, SynapseDbError> {
        let sql = format!(
            "SELECT user_id, device_id, timestamp, user_agent FROM user_daily_visits \
             WHERE {filter} ORDER BY timestamp, user_id, device_id"
        );
        let rows = sqlx::query(&sql)
            .bind(ms)
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("user_daily_visits"))?;
        rows.iter()
            .map(|row| {
                Ok(VisitRow {
                    user_id: row.try_get(0)?,
                    device_id: row.try_get(1)?,
                    timestamp_ms: row.try_get(2)?,
                    user_agent: row.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error("user_daily_visits"))
    }

    /// The first and last day in `user_daily_visits` at or after `from_day_ms`.
    pub async fn visit_day_range(
        &self,
        from_day_ms: i64,
    ) -> Result<Option<(i64, i64)>, SynapseDbError> {
        let row = sqlx::query(
            "SELECT MIN(timestamp), MAX(timestamp) FROM user_daily_visits WHERE timestamp >= $1",
        )
        .bind(from_day_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("user_daily_visits"))?;
        let first: Option<i64> = row.try_get(0).map_err(query_error("user_daily_visits"))?;
        let last: Option<i64> = row.try_get(1).map_err(query_error("user_daily_visits"))?;
        Ok(first.zip(last))
    }

    /// Accounts created at or after `from_s` (seconds, as Synapse stores `creation_ts`).
    pub async fn users_created_since(&self, from_s: i64) -> Result<Vec<UserRow>, SynapseDbError> {
        self.users_where(
            "creation_ts IS NOT NULL AND creation_ts >= $1 ORDER BY creation_ts, name",
            Some(from_s),
        )
        .await
    }

    /// Every deactivated account.
    pub async fn deactivated_users(&self) -> Result<Vec<UserRow>, SynapseDbError> {
        self.users_where("deactivated = 1 ORDER BY name", None)
            .await
    }

    async fn users_where(
        &self,
        filter: &str,
        bind: Option<i64>,
    ) -> Result<Vec<UserRow>, SynapseDbError> {
        let sql = format!(
            "SELECT name, COALESCE(creation_ts, 0), user_type, CAST(is_guest AS BIGINT), \
             appservice_id, CAST(deactivated AS BIGINT) FROM users WHERE {filter}"
        );
        let mut query = sqlx::query(&sql);
        if let Some(value) = bind {
            query = query.bind(value);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("users"))?;
        rows.iter()
            .map(user_row)
            .collect::<Result<_, _>>()
            .map_err(query_error("users"))
    }

    /// The rooms of the homeserver's public room directory (`rooms.is_public`) with the
    /// name and topic Synapse's room statistics hold for them.
    pub async fn public_rooms(&self) -> Result<Vec<PublicRoom>, SynapseDbError> {
        let rows = sqlx::query(
            "SELECT r.room_id, s.name, s.topic FROM rooms AS r \
             LEFT JOIN room_stats_state AS s ON s.room_id = r.room_id \
             WHERE r.is_public = TRUE ORDER BY r.room_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("rooms"))?;
        rows.iter()
            .map(|row| {
                Ok(PublicRoom {
                    room_id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    topic: row.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error("rooms"))
    }

    fn event_filter() -> &'static str {
        "FROM events AS e JOIN event_json AS j ON j.event_id = e.event_id \
         WHERE e.origin_server_ts >= $1 AND e.origin_server_ts < $2 \
         AND e.sender LIKE $3 ESCAPE '\\' AND NOT e.outlier"
    }

    /// How many events of local senders lie in `[from_ms, until_ms)`.
    pub async fn count_local_events(
        &self,
        server: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<i64, SynapseDbError> {
        let sql = format!("SELECT COUNT(*) {}", Self::event_filter());
        let row = sqlx::query(&sql)
            .bind(from_ms)
            .bind(until_ms)
            .bind(sender_pattern(server))
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("events"))?;
        row.try_get(0).map_err(query_error("events"))
    }

    /// The next page of local senders' events in `[from_ms, until_ms)`, in stream order,
    /// after `after_stream` (start with `i64::MIN`).
    pub async fn local_events_page(
        &self,
        server: &str,
        from_ms: i64,
        until_ms: i64,
        after_stream: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, SynapseDbError> {
        let sql = format!(
            "SELECT e.stream_ordering, e.event_id, e.room_id, j.json {} \
             AND e.stream_ordering > $4 ORDER BY e.stream_ordering LIMIT $5",
            Self::event_filter()
        );
        let rows = sqlx::query(&sql)
            .bind(from_ms)
            .bind(until_ms)
            .bind(sender_pattern(server))
            .bind(after_stream)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("events"))?;
        rows.iter()
            .map(|row| {
                let stream_ordering: i64 = row.try_get(0)?;
                let event_id: String = row.try_get(1)?;
                let room_id: String = row.try_get(2)?;
                let json: String = row.try_get(3)?;
                // An unreadable row is mapped as an empty object: the mapping skips and
                // counts it like any malformed event.
                let mut event: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
                if let Value::Object(object) = &mut event {
                    object.insert("event_id".into(), event_id.into());
                    object.entry("room_id").or_insert(room_id.into());
                }
                Ok(StoredEvent {
                    stream_ordering,
                    event,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_error("events"))
    }
}

fn user_row(row: &AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        name: row.try_get(0)?,
        creation_ts_s: row.try_get(1)?,
        user_type: row.try_get(2)?,
        is_guest: row.try_get::<i64, _>(3)? != 0,
        appservice_id: row.try_get(4)?,
        deactivated: row.try_get::<i64, _>(5)? != 0,
    })
}

/// `LIKE` pattern of the user IDs of `server`, with LIKE's wildcards escaped.
fn sender_pattern(server: &str) -> String {
    let escaped = server
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%:{escaped}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_opened_read_only_and_shown_without_password() {
        assert_eq!(
            read_only_url("/var/synapse/homeserver.db"),
            "sqlite:///var/synapse/homeserver.db?mode=ro"
        );
        assert_eq!(
            read_only_url("sqlite://x.db?cache=shared"),
            "sqlite://x.db?cache=shared&mode=ro"
        );
        assert_eq!(read_only_url("postgres://u:p@h/db"), "postgres://u:p@h/db");
        assert_eq!(
            read_only_url("postgres://h/db?sslpassword=s&sslmode=require"),
            "postgres://h/db?sslmode=require"
        );
        assert_eq!(
            display_url("postgres://u:secret@h/db"),
            "postgres://***@h/db"
        );
        assert_eq!(
            display_url("postgresql://h/db?user=ro&password=s1&sslpassword=s2&sslmode=require"),
            "postgresql://h/db?user=ro&password=***&sslpassword=***&sslmode=require"
        );
        assert_eq!(
            display_url("/var/synapse/homeserver.db"),
            "/var/synapse/homeserver.db"
        );
        for secret in [
            "sasl.password",
            "ssl.key.pem",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
        ] {
            assert!(is_secret_name(secret), "{secret}");
        }
        assert!(!is_secret_name("ssl.ca.location") && !is_secret_name("client.id"));
        assert_eq!(sender_pattern("a_b.fr"), "%:a\\_b.fr");
    }
}
