//! What `EXPLAIN` may tell. All servers' rows share the lake's files, and a ministry's scope is
//! a filter pushed into the shared scan: `EXPLAIN ANALYZE` counts the rows that filter removed
//! (other servers' activity), `EXPLAIN VERBOSE` and the statistics option show the files' row
//! counts and the minimum and maximum of `server`. A scoped principal gets the plain plan
//! only. Nobody gets the lake's paths (where it is stored, how its files are named): they are
//! replaced in every plan.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use regex::Regex;

use crate::access::Principal;
use crate::error::QueryError;
use crate::session::QueryOutput;

/// Whether `sql` is an `EXPLAIN` (`None` if not), and whether it asks more than the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExplainAsk {
    /// `ANALYZE`, `VERBOSE`, statistics or metric options.
    pub beyond_plan: bool,
}

pub fn ask_of(sql: &str) -> Option<ExplainAsk> {
    let statements = DFParser::parse_sql(sql).ok()?;
    match statements.front()? {
        DfStatement::Explain(explain) => {
            let o = &explain.options;
            Some(ExplainAsk {
                beyond_plan: o.analyze
                    || o.verbose
                    || o.show_statistics.is_some()
                    || o.analyze_level.is_some()
                    || o.analyze_categories.is_some(),
            })
        }
        DfStatement::Statement(inner) => match inner.as_ref() {
            Statement::Explain {
                analyze,
                verbose,
                options,
                ..
            } => Some(ExplainAsk {
                beyond_plan: *analyze || *verbose || options.is_some(),
            }),
            _ => None,
        },
        _ => None,
    }
}

/// Refuses `who` an `EXPLAIN` that would show other servers' rows or files.
pub fn check(who: &Principal, ask: Option<ExplainAsk>) -> Result<(), QueryError> {
    match (ask, &who.server) {
        (Some(ExplainAsk { beyond_plan: true }), Some(server)) => {
            Err(QueryError::Refused(format!(
                "EXPLAIN ANALYZE, VERBOSE and statistics count rows of every server's shared files; {} may see {server} only: use plain EXPLAIN",
                who.name
            )))
        }
        _ => Ok(()),
    }
}

/// Paths and URLs of files (`file:///...`, `s3://...`, `/var/lib/.../x.parquet`) and the
/// file groups of a scan.
static PATHS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"[a-z][a-z0-9+.-]*://[^\s,\]\)\}"']*|(?:/|\b)[\w.=-]+(?:/[\w.=%-]+)+\.(?:parquet|json|checkpoint\.parquet)|/[\w.-]+(?:/[\w.=%-]+){2,}"#,
    )
    .unwrap_or_else(|e| panic!("the paths pattern: {e}"))
});

/// `output` (an `EXPLAIN`'s plan) with every path replaced by `<lake>`.
pub fn without_paths(output: QueryOutput) -> Result<QueryOutput, QueryError> {
    let batches = output
        .batches
        .iter()
        .map(|batch| {
            let columns: Vec<ArrayRef> = batch
                .columns()
                .iter()
                .map(|column| match column.data_type() {
                    DataType::Utf8 => {
                        let texts = column.as_string::<i32>();
                        Arc::new(
                            texts
                                .iter()
                                .map(|t| t.map(|t| PATHS.replace_all(t, "<lake>").into_owned()))
                                .collect::<StringArray>(),
                        ) as ArrayRef
                    }
                    _ => column.clone(),
                })
                .collect();
            RecordBatch::try_new(batch.schema(), columns)
                .map_err(|e| QueryError::Internal(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    Ok(QueryOutput { batches, ..output })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_beyond_the_plan_are_told_apart() {
        assert_eq!(ask_of("SELECT 1"), None);
        assert_eq!(
            ask_of("EXPLAIN SELECT 1"),
            Some(ExplainAsk { beyond_plan: false })
        );
        for sql in [
            "EXPLAIN ANALYZE SELECT 1",
            "EXPLAIN VERBOSE SELECT 1",
            "explain analyze verbose select 1",
            "EXPLAIN (ANALYZE) SELECT 1",
            "EXPLAIN (costs true) SELECT 1",
            "EXPLAIN (level dev) SELECT 1",
        ] {
            assert_eq!(ask_of(sql), Some(ExplainAsk { beyond_plan: true }), "{sql}");
        }
    }

    #[test]
    fn paths_are_replaced() {
        for (plan, path) in [
            (
                "DataSourceExec: file_groups={1 group: [[srv/lake/events/date=2024-05-01/part-00000-1b2c.c000.snappy.parquet]]}",
                "part-00000",
            ),
            (
                "DeltaScan: url=file:///var/lib/mxpulse/lake/events/",
                "/var/lib",
            ),
            ("s3://mxpulse-lake/events/x", "mxpulse-lake"),
            ("table at /home/ops/lake/visits/_delta_log", "/home/ops"),
        ] {
            let replaced = PATHS.replace_all(plan, "<lake>");
            assert!(!replaced.contains(path), "{plan} -> {replaced}");
            assert!(replaced.contains("<lake>"), "{replaced}");
        }
        assert_eq!(
            PATHS.replace_all("Filter: server = Utf8(\"b.example\")", "<lake>"),
            "Filter: server = Utf8(\"b.example\")"
        );
    }
}
