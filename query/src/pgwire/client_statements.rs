//! The statements PostgreSQL drivers send on their own, answered without the engine: JDBC
//! (Metabase, DBeaver) opens every connection with `SET extra_float_digits = 3` and
//! `SET application_name = ...`; drivers in manual-commit mode wrap queries in `BEGIN` ...
//! `COMMIT`, and SQLAlchemy in savepoints; DBeaver asks `SHOW TRANSACTION ISOLATION LEVEL`. On a read-only service each is a
//! no-op with PostgreSQL's answer. Only settings that change presentation are accepted: a
//! `SET` of anything else (DataFusion's own settings above all) still reaches the guard and
//! is refused there.

use datafusion::sql::sqlparser::ast::{Set, Statement};

/// A driver's statement and the answer it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientStatement {
    /// `BEGIN`, `START TRANSACTION` (any mode: writes are refused anyway).
    Begin,
    /// `COMMIT`, `END`.
    Commit,
    /// `ROLLBACK` (of the transaction).
    Rollback,
    /// `SET` of a presentation setting, `SET [SESSION CHARACTERISTICS AS] TRANSACTION ...`,
    /// `DISCARD ALL`, `SAVEPOINT`, `RELEASE`, `ROLLBACK TO`, `DEALLOCATE`: acknowledged with
    /// this tag, nothing changes (nothing is ever written to undo; a statement prepared again
    /// under its name replaces the old one).
    Acknowledged(&'static str),
    /// `SHOW` of a setting drivers read: one row with PostgreSQL's value.
    Show { name: String, value: &'static str },
}

/// The PostgreSQL settings a `SET` may name: they only shape how values are printed or which
/// application is named in logs, so ignoring them changes no answer.
const PRESENTATION_SETTINGS: &[&str] = &[
    "application_name",
    "extra_float_digits",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "client_min_messages",
    "bytea_output",
];

/// The settings a `SHOW` answers: as asked, the column PostgreSQL names, the value this
/// service behaves by.
const SHOWN_SETTINGS: &[(&str, &str, &str)] = &[
    (
        "transaction isolation level",
        "transaction_isolation",
        "read committed",
    ),
    (
        "transaction_isolation",
        "transaction_isolation",
        "read committed",
    ),
    (
        "default_transaction_read_only",
        "default_transaction_read_only",
        "on",
    ),
    ("transaction_read_only", "transaction_read_only", "on"),
    (
        "standard_conforming_strings",
        "standard_conforming_strings",
        "on",
    ),
    ("client_encoding", "client_encoding", "UTF8"),
    ("server_encoding", "server_encoding", "UTF8"),
    ("datestyle", "DateStyle", "ISO, MDY"),
    ("timezone", "TimeZone", "UTC"),
    ("search_path", "search_path", "public"),
    ("max_identifier_length", "max_identifier_length", "63"),
];

/// A `search_path` entry that changes no name's meaning: `public` (the views' only schema),
/// `pg_catalog` (searched first whatever the path) or `"$user"` (no such schema). Apache
/// Superset sets `search_path = public` before each query of a dataset in that schema.
fn names_the_one_schema(value: &datafusion::sql::sqlparser::ast::Expr) -> bool {
    let text = value
        .to_string()
        .trim_matches(['\'', '"'])
        .to_ascii_lowercase();
    ["public", "pg_catalog", "$user"].contains(&text.as_str())
}

impl ClientStatement {
    /// The driver statement `statement` is, if it is one.
    pub fn recognize(statement: &Statement) -> Option<Self> {
        match statement {
            Statement::StartTransaction {
                statements,
                exception,
                ..
            } if statements.is_empty() && exception.is_none() => Some(Self::Begin),
            Statement::Commit { chain: false, .. } => Some(Self::Commit),
            Statement::Rollback {
                chain: false,
                savepoint: None,
            } => Some(Self::Rollback),
            Statement::Rollback {
                chain: false,
                savepoint: Some(_),
            } => Some(Self::Acknowledged("ROLLBACK")),
            Statement::Savepoint { .. } => Some(Self::Acknowledged("SAVEPOINT")),
            Statement::ReleaseSavepoint { .. } => Some(Self::Acknowledged("RELEASE")),
            Statement::Deallocate { .. } => Some(Self::Acknowledged("DEALLOCATE")),
            Statement::Discard { .. } => Some(Self::Acknowledged("DISCARD ALL")),
            Statement::Set(Set::SetTransaction { .. }) => Some(Self::Acknowledged("SET")),
            Statement::Set(Set::SingleAssignment {
                hivevar: false,
                variable,
                values,
                ..
            }) => {
                let name = variable.to_string().to_ascii_lowercase();
                (PRESENTATION_SETTINGS.contains(&name.as_str())
                    || (name == "search_path" && values.iter().all(names_the_one_schema)))
                .then_some(Self::Acknowledged("SET"))
            }
            Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(|part| part.value.to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(" ");
                SHOWN_SETTINGS
                    .iter()
                    .find(|(asked, _, _)| *asked == name)
                    .map(|(_, column, value)| Self::Show {
                        name: (*column).to_owned(),
                        value,
                    })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn recognize(sql: &str) -> Option<ClientStatement> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        ClientStatement::recognize(&statements[0])
    }

    #[test]
    fn drivers_statements_are_answered_and_settings_that_matter_are_not() {
        assert_eq!(recognize("BEGIN"), Some(ClientStatement::Begin));
        assert_eq!(recognize("BEGIN READ ONLY"), Some(ClientStatement::Begin));
        assert_eq!(recognize("START TRANSACTION"), Some(ClientStatement::Begin));
        assert_eq!(recognize("COMMIT"), Some(ClientStatement::Commit));
        assert_eq!(recognize("ROLLBACK"), Some(ClientStatement::Rollback));
        for (sql, tag) in [
            ("SAVEPOINT _pg3_1", "SAVEPOINT"),
            ("RELEASE SAVEPOINT _pg3_1", "RELEASE"),
            ("ROLLBACK TO SAVEPOINT _pg3_1", "ROLLBACK"),
            ("DEALLOCATE ALL", "DEALLOCATE"),
        ] {
            assert_eq!(recognize(sql), Some(ClientStatement::Acknowledged(tag)));
        }
        for sql in [
            "SET extra_float_digits = 3",
            "SET application_name = 'PostgreSQL JDBC Driver'",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SET DateStyle TO 'ISO'",
            "SET search_path = public",
            "SET search_path TO \"$user\", public",
        ] {
            assert_eq!(
                recognize(sql),
                Some(ClientStatement::Acknowledged("SET")),
                "{sql}"
            );
        }
        assert_eq!(
            recognize("SHOW TRANSACTION ISOLATION LEVEL"),
            Some(ClientStatement::Show {
                name: "transaction_isolation".into(),
                value: "read committed"
            })
        );
        // What would change an answer, or the engine, is not a driver's statement.
        for sql in [
            "SET datafusion.execution.batch_size = 1",
            "SET TIME ZONE 'Europe/Paris'",
            "SET search_path = other",
            "SET search_path = public, other",
            "SHOW datafusion.execution.batch_size",
            "SELECT 1",
        ] {
            assert_eq!(recognize(sql), None, "{sql}");
        }
    }
}
