//! PostgreSQL's SQL as clients send it, made into statements DataFusion plans:
//! datafusion-pg-catalog's parser (PostgreSQL operators, casts, `pg_catalog` names), then
//! PostgreSQL's `information_schema` where DataFusion's differs:
//! - `columns` with PostgreSQL's columns and type names (`udt_name` `int8`, `data_type`
//!   `bigint`, not DataFusion's `Int64`), read from `pg_catalog`: BI tools pick time and
//!   number columns by them, and Metabase reads `udt_name`, `is_identity` at every sync;
//! - the constraint tables DataFusion does not have (`table_constraints`,
//!   `key_column_usage`...) as empty tables of PostgreSQL's columns: empty in truth, views
//!   have no keys. Metabase reads them to find primary keys;
//! - `CAST(expression AS regclass)` of a computed name (a function's or a concatenation's) as
//!   `to_regclass(expression)`: datafusion-pg-catalog resolves literal names only, and
//!   Metabase asks column comments of `format('%I.%I', schema, table)::regclass`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    ObjectNamePart, SetExpr, Statement, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

/// PostgreSQL's `information_schema.columns`, from `pg_catalog` (the columns clients read).
const COLUMNS: &str = "SELECT CAST(current_database() AS VARCHAR) AS table_catalog,
  n.nspname AS table_schema, c.relname AS table_name, a.attname AS column_name,
  CAST(a.attnum AS INTEGER) AS ordinal_position, CAST(NULL AS VARCHAR) AS column_default,
  CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable,
  format_type(a.atttypid, a.atttypmod) AS data_type,
  CAST(NULL AS INTEGER) AS character_maximum_length, CAST(NULL AS INTEGER) AS numeric_precision,
  CAST(NULL AS INTEGER) AS numeric_scale, CAST(NULL AS INTEGER) AS datetime_precision,
  CAST(current_database() AS VARCHAR) AS udt_catalog, 'pg_catalog' AS udt_schema,
  t.typname AS udt_name, 'NO' AS is_identity, 'NEVER' AS is_generated, 'NO' AS is_updatable
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON a.attrelid = c.oid
JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid
JOIN pg_catalog.pg_type t ON a.atttypid = t.oid
WHERE a.attnum > 0 AND c.relkind IN ('r', 'v', 'm', 'p', 'f')";

/// The constraint tables of PostgreSQL's `information_schema` and their columns.
const CONSTRAINT_TABLES: &[(&str, &[(&str, &str)])] = &[
    (
        "table_constraints",
        &[
            ("constraint_catalog", "VARCHAR"),
            ("constraint_schema", "VARCHAR"),
            ("constraint_name", "VARCHAR"),
            ("table_catalog", "VARCHAR"),
            ("table_schema", "VARCHAR"),
            ("table_name", "VARCHAR"),
            ("constraint_type", "VARCHAR"),
            ("is_deferrable", "VARCHAR"),
            ("initially_deferred", "VARCHAR"),
            ("enforced", "VARCHAR"),
            ("nulls_distinct", "VARCHAR"),
        ],
    ),
    (
        "key_column_usage",
        &[
            ("constraint_catalog", "VARCHAR"),
            ("constraint_schema", "VARCHAR"),
            ("constraint_name", "VARCHAR"),
            ("table_catalog", "VARCHAR"),
            ("table_schema", "VARCHAR"),
            ("table_name", "VARCHAR"),
            ("column_name", "VARCHAR"),
            ("ordinal_position", "INTEGER"),
            ("position_in_unique_constraint", "INTEGER"),
        ],
    ),
    (
        "referential_constraints",
        &[
            ("constraint_catalog", "VARCHAR"),
            ("constraint_schema", "VARCHAR"),
            ("constraint_name", "VARCHAR"),
            ("unique_constraint_catalog", "VARCHAR"),
            ("unique_constraint_schema", "VARCHAR"),
            ("unique_constraint_name", "VARCHAR"),
            ("match_option", "VARCHAR"),
            ("update_rule", "VARCHAR"),
            ("delete_rule", "VARCHAR"),
        ],
    ),
    (
        "constraint_column_usage",
        &[
            ("table_catalog", "VARCHAR"),
            ("table_schema", "VARCHAR"),
            ("table_name", "VARCHAR"),
            ("column_name", "VARCHAR"),
            ("constraint_catalog", "VARCHAR"),
            ("constraint_schema", "VARCHAR"),
            ("constraint_name", "VARCHAR"),
        ],
    ),
];

pub struct PostgresSql {
    parser: PostgresCompatibilityParser,
}

impl PostgresSql {
    pub fn new() -> Self {
        Self {
            parser: PostgresCompatibilityParser::new(),
        }
    }

    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, ParserError> {
        let mut statements = self.parser.parse(sql)?;
        for statement in &mut statements {
            let _ = statement.visit(&mut PostgresInformationSchema);
        }
        Ok(statements)
    }
}

struct PostgresInformationSchema;

impl VisitorMut for PostgresInformationSchema {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Cast {
            expr: name,
            data_type,
            ..
        } = expr
        else {
            return ControlFlow::Continue(());
        };
        let regclass = match data_type {
            DataType::Regclass => true,
            DataType::Custom(type_name, _) => {
                type_name.to_string().eq_ignore_ascii_case("regclass")
            }
            _ => false,
        };
        // A name computed by a function or a concatenation; a column cast to regclass is the
        // other direction (an OID shown as a name) and is left alone.
        let computed_name = matches!(
            name.as_ref(),
            Expr::Function(_)
                | Expr::BinaryOp {
                    op: BinaryOperator::StringConcat,
                    ..
                }
        );
        if !regclass || !computed_name {
            return ControlFlow::Continue(());
        }
        if let Some(call) = to_regclass(name.as_ref().clone()) {
            *expr = call;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, alias, .. } = factor else {
            return ControlFlow::Continue(());
        };
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|part| match part {
                ObjectNamePart::Identifier(ident) => ident.value.to_ascii_lowercase(),
                other => other.to_string(),
            })
            .collect();
        let [.., schema, table] = parts.as_slice() else {
            return ControlFlow::Continue(());
        };
        if schema != "information_schema" {
            return ControlFlow::Continue(());
        }
        let replacement = if table == "columns" {
            COLUMNS.to_owned()
        } else if let Some((_, columns)) = CONSTRAINT_TABLES.iter().find(|(t, _)| t == table) {
            empty_table(columns)
        } else {
            return ControlFlow::Continue(());
        };
        if let Some(mut derived) = derived_table(&replacement, table) {
            if let (TableFactor::Derived { alias: named, .. }, Some(given)) =
                (&mut derived, alias.take())
            {
                *named = Some(given);
            }
            *factor = derived;
        }
        ControlFlow::Continue(())
    }
}

/// `to_regclass(name)`.
fn to_regclass(name: Expr) -> Option<Expr> {
    let mut call = Parser::new(&PostgreSqlDialect {})
        .try_with_sql("to_regclass(NULL)")
        .ok()?
        .parse_expr()
        .ok()?;
    let Expr::Function(function) = &mut call else {
        return None;
    };
    let FunctionArguments::List(list) = &mut function.args else {
        return None;
    };
    *list.args.first_mut()? = FunctionArg::Unnamed(FunctionArgExpr::Expr(name));
    Some(call)
}

/// `SELECT CAST(NULL AS type) AS column, ... WHERE false`.
fn empty_table(columns: &[(&str, &str)]) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|(column, ty)| format!("CAST(NULL AS {ty}) AS {column}"))
        .collect();
    format!("SELECT {} WHERE false", columns.join(", "))
}

/// `(query) AS table`, as a table factor.
fn derived_table(query: &str, table: &str) -> Option<TableFactor> {
    let sql = format!("SELECT * FROM ({query}) AS {table}");
    let Statement::Query(query) = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?.pop()?
    else {
        return None;
    };
    let SetExpr::Select(select) = *query.body else {
        return None;
    };
    select.from.into_iter().next().map(|from| from.relation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_tables_become_empty_tables_under_the_same_name() {
        let sql = PostgresSql::new();
        let rewrite = |query: &str| sql.parse(query).unwrap()[0].to_string();
        let rewritten = rewrite(
            "SELECT kc.column_name FROM information_schema.table_constraints AS tc \
             JOIN \"information_schema\".\"key_column_usage\" kc ON tc.constraint_name = kc.constraint_name",
        );
        assert!(!rewritten.contains("information_schema"), "{rewritten}");
        assert!(rewritten.contains("WHERE false) AS tc"), "{rewritten}");
        assert!(rewritten.contains("AS ordinal_position"), "{rewritten}");
        assert!(rewritten.contains("WHERE false) kc ON"), "{rewritten}");
        // `columns` is read from pg_catalog, with PostgreSQL's columns; what DataFusion has
        // right is left alone.
        let columns = rewrite("SELECT udt_name FROM information_schema.columns c");
        assert!(columns.contains("pg_catalog.pg_attribute"), "{columns}");
        assert!(columns.contains(") AS c"), "{columns}");
        let comment = rewrite(
            "SELECT col_description(CAST(CAST(format('%I.%I', s, t) AS REGCLASS) AS OID), 1), 'events'::regclass",
        );
        assert!(comment.contains("to_regclass(format("), "{comment}");
        let shown = rewrite("SELECT c.oid::regclass FROM pg_catalog.pg_class c");
        assert!(!shown.contains("to_regclass"), "{shown}");
        let tables = rewrite("SELECT * FROM information_schema.tables");
        assert!(tables.contains("information_schema.tables"), "{tables}");
    }
}
