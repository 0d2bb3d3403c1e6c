//! What the simulated homeservers' databases hold, in Synapse's schema (the columns the
//! database tap and `mxpulse backfill` read): `users`, `user_daily_visits`, `events` and
//! `event_json`, one SQLite file per server, as a homeserver running on SQLite has.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite};

use crate::{SimEvent, Simulation, Visit};

#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: sqlx::Error },
}

/// Synapse's tables, reduced to the columns mxpulse reads plus their neighbours, with the
/// indexes Synapse has on them.
const SCHEMA: &[&str] = &[
    "CREATE TABLE users(name TEXT, password_hash TEXT, creation_ts BIGINT, admin SMALLINT DEFAULT 0 NOT NULL, \
     upgrade_ts BIGINT, is_guest SMALLINT DEFAULT 0 NOT NULL, appservice_id TEXT, consent_version TEXT, \
     consent_server_notice_sent TEXT, user_type TEXT DEFAULT NULL, deactivated SMALLINT DEFAULT 0 NOT NULL, \
     shadow_banned BOOLEAN, consent_ts BIGINT, approved BOOLEAN, locked BOOLEAN NOT NULL DEFAULT false, \
     suspended BOOLEAN NOT NULL DEFAULT false, UNIQUE(name))",
    "CREATE TABLE user_daily_visits(user_id TEXT NOT NULL, device_id TEXT, timestamp BIGINT NOT NULL, user_agent TEXT)",
    "CREATE INDEX user_daily_visits_ts_idx ON user_daily_visits(timestamp)",
    "CREATE TABLE events(topological_ordering BIGINT NOT NULL, event_id TEXT NOT NULL, type TEXT NOT NULL, \
     room_id TEXT NOT NULL, content TEXT, unrecognized_keys TEXT, processed BOOL NOT NULL, outlier BOOL NOT NULL, \
     depth BIGINT DEFAULT 0 NOT NULL, origin_server_ts BIGINT, received_ts BIGINT, sender TEXT, contains_url BOOLEAN, \
     instance_name TEXT, stream_ordering BIGINT, state_key TEXT, rejection_reason TEXT, UNIQUE(event_id))",
    "CREATE INDEX events_ts ON events(origin_server_ts, stream_ordering)",
    "CREATE UNIQUE INDEX events_stream_ordering ON events(stream_ordering)",
    "CREATE TABLE event_json(event_id TEXT NOT NULL, room_id TEXT NOT NULL, internal_metadata TEXT NOT NULL, \
     json TEXT NOT NULL, format_version INTEGER, UNIQUE(event_id))",
    "CREATE TABLE rooms(room_id TEXT PRIMARY KEY NOT NULL, is_public BOOL, creator TEXT, room_version TEXT, \
     has_auth_chain_index BOOLEAN)",
    "CREATE TABLE room_stats_state(room_id TEXT NOT NULL, name TEXT, canonical_alias TEXT, join_rules TEXT, \
     history_visibility TEXT, encryption TEXT, avatar TEXT, guest_access TEXT, is_federatable BOOLEAN, \
     topic TEXT, room_type TEXT)",
    "CREATE UNIQUE INDEX room_stats_state_room ON room_stats_state(room_id)",
];

/// Rows per INSERT statement (SQLite allows 32,766 bound values).
const ROWS_PER_INSERT: usize = 500;

/// One SQLite database per simulated server.
pub struct SynapseDatabases {
    pools: Vec<SqlitePool>,
    paths: Vec<PathBuf>,
    stream_ordering: Vec<i64>,
}

impl SynapseDatabases {
    /// Fresh databases `<dir>/<server_name>.sqlite` (existing files are replaced).
    pub async fn create(dir: &Path, sim: &Simulation) -> Result<Self, SqliteError> {
        std::fs::create_dir_all(dir).map_err(|source| SqliteError::Create {
            path: dir.to_owned(),
            source,
        })?;
        let mut databases = Self {
            pools: Vec::new(),
            paths: Vec::new(),
            stream_ordering: Vec::new(),
        };
        for server in &sim.spec.federation.servers {
            let path = dir.join(format!("{}.sqlite", server.name));
            for stale in [path.clone(), path.with_extension("sqlite-journal")] {
                if let Err(source) = std::fs::remove_file(&stale)
                    && source.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(SqliteError::Create {
                        path: stale,
                        source,
                    });
                }
            }
            let write_error = |source| SqliteError::Write {
                path: path.clone(),
                source,
            };
            let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .map_err(write_error)?
                .create_if_missing(true)
                .synchronous(SqliteSynchronous::Normal);
            // One writer connection: the order of writes, and so the file, is deterministic.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .map_err(write_error)?;
            for statement in SCHEMA {
                sqlx::query(statement)
                    .execute(&pool)
                    .await
                    .map_err(write_error)?;
            }
            databases.pools.push(pool);
            databases.paths.push(path);
            databases.stream_ordering.push(0);
        }
        Ok(databases)
    }

    /// The database file of server `index`.
    pub fn path(&self, index: usize) -> &Path {
        &self.paths[index]
    }

    fn error(&self, server: usize) -> impl Fn(sqlx::Error) -> SqliteError + '_ {
        move |source| SqliteError::Write {
            path: self.paths[server].clone(),
            source,
        }
    }

    /// Rows of `users` for accounts (with their deactivation flag as it is now).
    pub async fn write_accounts(
        &self,
        sim: &Simulation,
        accounts: impl IntoIterator<Item = u32>,
    ) -> Result<(), SqliteError> {
        let per_server = sim.by_server(accounts, |a| *a);
        for (server, accounts) in per_server.iter().enumerate() {
            let mut tx = self.pools[server]
                .begin()
                .await
                .map_err(self.error(server))?;
            for chunk in accounts.chunks(ROWS_PER_INSERT) {
                let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "INSERT INTO users(name, password_hash, creation_ts, deactivated) ",
                );
                insert.push_values(chunk, |mut row, &account| {
                    let a = &sim.population.accounts[account as usize];
                    row.push_bind(sim.user_id(account))
                        .push_bind("$2b$12$simulated")
                        .push_bind(a.created_s)
                        .push_bind(i64::from(a.deactivated_s.is_some()));
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(self.error(server))?;
            }
            tx.commit().await.map_err(self.error(server))?;
        }
        Ok(())
    }

    /// Marks accounts deactivated, as Synapse does (it keeps no date).
    pub async fn write_deactivations(
        &self,
        sim: &Simulation,
        accounts: &[u32],
    ) -> Result<(), SqliteError> {
        for &account in accounts {
            let server = sim.population.accounts[account as usize].server as usize;
            sqlx::query("UPDATE users SET deactivated = 1 WHERE name = ?")
                .bind(sim.user_id(account))
                .execute(&self.pools[server])
                .await
                .map_err(self.error(server))?;
        }
        Ok(())
    }

    /// Rows of `user_daily_visits` (the day's midnight, UTC, in ms, as Synapse writes it).
    pub async fn write_visits(
        &self,
        sim: &Simulation,
        visits: &[Visit],
    ) -> Result<(), SqliteError> {
        let per_server = sim.by_server(visits.iter().copied(), |v| v.account);
        for (server, visits) in per_server.iter().enumerate() {
            let mut tx = self.pools[server]
                .begin()
                .await
                .map_err(self.error(server))?;
            for chunk in visits.chunks(ROWS_PER_INSERT) {
                let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "INSERT INTO user_daily_visits(user_id, device_id, timestamp, user_agent) ",
                );
                insert.push_values(chunk, |mut row, visit| {
                    let (user_id, device_id, day_ms, user_agent) = sim.visit_row(visit);
                    row.push_bind(user_id)
                        .push_bind(device_id)
                        .push_bind(day_ms)
                        .push_bind(user_agent);
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(self.error(server))?;
            }
            tx.commit().await.map_err(self.error(server))?;
        }
        Ok(())
    }

    /// Rows of `events` and `event_json` for events of each server's own users.
    pub async fn write_events(
        &mut self,
        sim: &Simulation,
        events: &[SimEvent],
    ) -> Result<(), SqliteError> {
        let per_server = sim.by_server(events, |e| e.sender);
        for (server, events) in per_server.iter().enumerate() {
            let mut tx = self.pools[server]
                .begin()
                .await
                .map_err(self.error(server))?;
            for chunk in events.chunks(ROWS_PER_INSERT / 2) {
                let rendered: Vec<serde_json::Value> =
                    chunk.iter().map(|e| sim.render(e)).collect();
                let first = self.stream_ordering[server] + 1;
                self.stream_ordering[server] += chunk.len() as i64;
                let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "INSERT INTO events(topological_ordering, event_id, type, room_id, processed, outlier, \
                     origin_server_ts, received_ts, sender, stream_ordering, state_key) ",
                );
                insert.push_values(rendered.iter().enumerate(), |mut row, (i, event)| {
                    let ts = event["origin_server_ts"].as_i64().unwrap_or(0);
                    row.push_bind(first + i as i64)
                        .push_bind(event["event_id"].as_str().unwrap_or_default().to_owned())
                        .push_bind(event["type"].as_str().unwrap_or_default().to_owned())
                        .push_bind(event["room_id"].as_str().unwrap_or_default().to_owned())
                        .push_bind(true)
                        .push_bind(false)
                        .push_bind(ts)
                        .push_bind(ts + 20)
                        .push_bind(event["sender"].as_str().unwrap_or_default().to_owned())
                        .push_bind(first + i as i64)
                        .push_bind(
                            event
                                .get("state_key")
                                .and_then(|k| k.as_str())
                                .map(str::to_owned),
                        );
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(self.error(server))?;
                let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "INSERT INTO event_json(event_id, room_id, internal_metadata, json, format_version) ",
                );
                insert.push_values(rendered.iter(), |mut row, event| {
                    row.push_bind(event["event_id"].as_str().unwrap_or_default().to_owned())
                        .push_bind(event["room_id"].as_str().unwrap_or_default().to_owned())
                        .push_bind("{}")
                        .push_bind(event.to_string())
                        .push_bind(3);
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(self.error(server))?;
            }
            tx.commit().await.map_err(self.error(server))?;
        }
        Ok(())
    }

    /// Rows of `rooms` and `room_stats_state` for the forums of the published directory
    /// created by `events`: in their server's public room directory, with their name and a
    /// topic.
    pub async fn write_directory(
        &mut self,
        sim: &Simulation,
        events: &[SimEvent],
    ) -> Result<(), SqliteError> {
        let per_server = sim.by_server(events, |e| e.sender);
        for (server, events) in per_server.iter().enumerate() {
            let mut tx = self.pools[server]
                .begin()
                .await
                .map_err(self.error(server))?;
            for event in events {
                let (crate::EventBody::Create { .. }, Some(name)) =
                    (&event.body, sim.rooms.rooms[event.room as usize].name)
                else {
                    continue;
                };
                let room_id = sim.render(event)["room_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                sqlx::query("INSERT INTO rooms(room_id, is_public, creator, room_version) VALUES (?, 1, ?, '10')")
                    .bind(&room_id)
                    .bind(sim.user_id(event.sender))
                    .execute(&mut *tx)
                    .await
                    .map_err(self.error(server))?;
                sqlx::query(
                    "INSERT INTO room_stats_state(room_id, name, join_rules, topic) VALUES (?, ?, 'public', ?)",
                )
                .bind(&room_id)
                .bind(name)
                .bind(format!("{name} : questions, annonces et entraide entre agents"))
                .execute(&mut *tx)
                .await
                .map_err(self.error(server))?;
            }
            tx.commit().await.map_err(self.error(server))?;
        }
        Ok(())
    }

    /// Closes every database (the files are complete after this).
    pub async fn close(self) {
        for pool in self.pools {
            pool.close().await;
        }
    }
}
