//! The read-only guard every SQL text passes before it is planned, on every surface (HTTP and
//! pgwire): exactly one statement, and only a query (`SELECT`, `WITH`, `VALUES`), `EXPLAIN` of
//! one, or `SHOW`. Everything else (DDL, DML, `COPY`, `CREATE EXTERNAL TABLE`, `SET`,
//! transactions) is refused with a message saying what it was. DataFusion's own `SQLOptions`
//! (no DDL, no DML, no statements) are applied at planning as a second line.

use datafusion::execution::context::SQLOptions;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;

use crate::error::QueryError;

/// The planning options of every analyst query.
pub fn read_only_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Refuses anything but one read-only statement.
pub fn check(sql: &str) -> Result<(), QueryError> {
    let statements = DFParser::parse_sql(sql).map_err(|e| QueryError::Invalid(e.to_string()))?;
    if statements.len() != 1 {
        return Err(QueryError::Refused(format!(
            "one statement per request, got {}",
            statements.len()
        )));
    }
    let statement = &statements[0];
    if allowed(statement) {
        Ok(())
    } else {
        Err(QueryError::Refused(format!(
            "only queries (SELECT, WITH, EXPLAIN, SHOW) are allowed; this is {}",
            kind(statement)
        )))
    }
}

fn allowed(statement: &DfStatement) -> bool {
    match statement {
        DfStatement::Statement(inner) => {
            matches!(
                inner.as_ref(),
                Statement::Query(_)
                    | Statement::ShowTables { .. }
                    | Statement::ShowColumns { .. }
                    | Statement::ShowVariable { .. }
            ) || matches!(inner.as_ref(), Statement::Explain { statement, .. } if matches!(statement.as_ref(), Statement::Query(_)))
        }
        DfStatement::Explain(explain) => allowed(&explain.statement),
        DfStatement::CreateExternalTable(_) | DfStatement::CopyTo(_) | DfStatement::Reset(_) => {
            false
        }
    }
}

/// A few words naming the statement, for the refusal.
fn kind(statement: &DfStatement) -> String {
    match statement {
        DfStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE".into(),
        DfStatement::CopyTo(_) => "COPY".into(),
        DfStatement::Reset(_) => "RESET".into(),
        DfStatement::Explain(_) => "EXPLAIN of a statement that is not a query".into(),
        DfStatement::Statement(inner) => {
            let text = inner.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            words.join(" ").to_uppercase()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_pass_and_everything_else_is_refused_by_name() {
        for ok in [
            "SELECT 1",
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
            "EXPLAIN SELECT 1",
            "SHOW TABLES",
            "select * from events where server = 'a'",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for (sql, said) in [
            ("CREATE TABLE t (x INT)", "CREATE TABLE"),
            ("DROP TABLE events", "DROP TABLE"),
            ("INSERT INTO events VALUES (1)", "INSERT INTO"),
            ("DELETE FROM events", "DELETE FROM"),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            (
                "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("EXPLAIN CREATE TABLE t (x INT)", "EXPLAIN"),
            ("SELECT 1; SELECT 2", "one statement"),
        ] {
            let err = check(sql).unwrap_err().to_string();
            assert!(
                err.starts_with("refused") && err.contains(said),
                "{sql}: {err}"
            );
        }
    }
}
