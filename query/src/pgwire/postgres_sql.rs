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
//!   Metabase asks column comments of `format('%I.%I', schema, table)::regclass`;
//! - what SQLAlchemy's inspector (so Superset, when a database is added) sends: `LIKE p
//!   ESCAPE '/'` as `LIKE like_escape(p, '/')` (DataFusion escapes with the backslash only);
//!   `pg_catalog.pg_index` as an empty table whose `indkey`, `indclass`, `indoption` are
//!   arrays (views have no index; the bundled catalog holds them as text, which `unnest`
//!   refuses); `generate_subscripts(a, d)` as `unnest(range(1, array_length(a, d) + 1))`;
//!   a column's default, identity and own collation (a `CASE` of lookups in `pg_attrdef`,
//!   `pg_sequence`, `pg_collation`) as NULL: a view's columns have none;
//!   a correlated scalar subquery over `pg_catalog` aggregated by `max` (DataFusion plans no
//!   other kind; a catalog lookup has one row); `pg_class.reloptions` as NULL;
//! - `to_date` and `to_timestamp` with a PostgreSQL format (`'YYYY-MM-DD HH24:MI:SS'`, what
//!   Superset writes for a time filter) in chrono's (`'%Y-%m-%d %H:%M:%S'`).

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

/// `pg_catalog.pg_index` with PostgreSQL's columns and types, empty.
const PG_INDEX: &[(&str, &str)] = &[
    ("indexrelid", "INTEGER"),
    ("indrelid", "INTEGER"),
    ("indnatts", "SMALLINT"),
    ("indnkeyatts", "SMALLINT"),
    ("indisunique", "BOOLEAN"),
    ("indnullsnotdistinct", "BOOLEAN"),
    ("indisprimary", "BOOLEAN"),
    ("indisexclusion", "BOOLEAN"),
    ("indimmediate", "BOOLEAN"),
    ("indisclustered", "BOOLEAN"),
    ("indisvalid", "BOOLEAN"),
    ("indcheckxmin", "BOOLEAN"),
    ("indisready", "BOOLEAN"),
    ("indislive", "BOOLEAN"),
    ("indisreplident", "BOOLEAN"),
    ("indkey", "SMALLINT[]"),
    ("indcollation", "INTEGER[]"),
    ("indclass", "INTEGER[]"),
    ("indoption", "SMALLINT[]"),
    ("indexprs", "VARCHAR"),
    ("indpred", "VARCHAR"),
];

/// `pg_catalog.pg_constraint` with PostgreSQL's columns and types, empty: the views have no
/// constraints, and the bundled table's `conkey` is text where clients take an array
/// (`a.attnum = ANY(cons.conkey)`, SQLAlchemy 1.4's unique constraints).
const PG_CONSTRAINT: &[(&str, &str)] = &[
    ("oid", "INTEGER"),
    ("conname", "VARCHAR"),
    ("connamespace", "INTEGER"),
    ("contype", "VARCHAR"),
    ("condeferrable", "BOOLEAN"),
    ("condeferred", "BOOLEAN"),
    ("convalidated", "BOOLEAN"),
    ("conrelid", "INTEGER"),
    ("contypid", "INTEGER"),
    ("conindid", "INTEGER"),
    ("conparentid", "INTEGER"),
    ("confrelid", "INTEGER"),
    ("confupdtype", "VARCHAR"),
    ("confdeltype", "VARCHAR"),
    ("confmatchtype", "VARCHAR"),
    ("conislocal", "BOOLEAN"),
    ("coninhcount", "INTEGER"),
    ("connoinherit", "BOOLEAN"),
    ("conkey", "SMALLINT[]"),
    ("confkey", "SMALLINT[]"),
    ("conpfeqop", "INTEGER[]"),
    ("conppeqop", "INTEGER[]"),
    ("conffeqop", "INTEGER[]"),
    ("conexclop", "INTEGER[]"),
    ("conbin", "VARCHAR"),
];

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
        like_with_backslash(expr);
        flag_compared_as_boolean(expr);
        if nothing_of_a_view(expr)
            && let Some(none) = parse_expr("CAST(NULL AS VARCHAR)")
        {
            *expr = none;
            return ControlFlow::Continue(());
        }
        aggregate_catalog_lookup(expr);
        if let Expr::CompoundIdentifier(parts) = expr
            && parts
                .last()
                .is_some_and(|p| p.value.eq_ignore_ascii_case("reloptions"))
            && let Some(none) = parse_expr("CAST(NULL AS VARCHAR[])")
        {
            // A relation's storage options: a view has none, and the bundled `pg_class`
            // has no such column.
            *expr = none;
            return ControlFlow::Continue(());
        }
        if let Some(rewritten) = subscripts_as_unnest(expr).or_else(|| chrono_format(expr)) {
            *expr = rewritten;
            return ControlFlow::Continue(());
        }
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
        let (schema, table) = match parts.as_slice() {
            [.., schema, table] => (schema.as_str(), table.as_str()),
            [table] => ("pg_catalog", table.as_str()),
            [] => return ControlFlow::Continue(()),
        };
        let replacement = if schema == "pg_catalog" && table == "pg_index" {
            empty_table(PG_INDEX)
        } else if schema == "pg_catalog" && table == "pg_constraint" {
            empty_table(PG_CONSTRAINT)
        } else if schema != "information_schema" {
            return ControlFlow::Continue(());
        } else if table == "columns" {
            COLUMNS.to_owned()
        } else if let Some((_, columns)) = CONSTRAINT_TABLES.iter().find(|(t, _)| *t == table) {
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

/// `a LIKE p ESCAPE 'c'` (or ILIKE) with `c` other than the backslash as
/// `a LIKE like_escape(p, 'c')`.
fn like_with_backslash(expr: &mut Expr) {
    let (Expr::Like {
        pattern,
        escape_char,
        ..
    }
    | Expr::ILike {
        pattern,
        escape_char,
        ..
    }) = expr
    else {
        return;
    };
    let Some(escape) = escape_char.as_ref() else {
        return;
    };
    let escape_text = escape.value.clone().into_string().unwrap_or_default();
    if escape_text == "\\" {
        return;
    }
    let Some(literal) = parse_expr(&format!("'{}'", escape_text.replace('\'', "''"))) else {
        return;
    };
    if let Some(call) = call("like_escape", vec![(**pattern).clone(), literal]) {
        **pattern = call;
        *escape_char = None;
    }
}

/// The boolean columns of PostgreSQL's catalogs that clients compare with a text literal.
const CATALOG_FLAGS: &[&str] = &[
    "indisprimary",
    "indisunique",
    "indisexclusion",
    "indimmediate",
    "indisclustered",
    "indisvalid",
    "indisready",
    "indislive",
    "indisreplident",
    "attnotnull",
    "atthasdef",
    "attisdropped",
    "attislocal",
    "relhasindex",
    "relisshared",
    "relhasrules",
    "relhastriggers",
    "relhassubclass",
    "relrowsecurity",
    "relispopulated",
    "relispartition",
    "typnotnull",
    "typisdefined",
    "typbyval",
    "condeferrable",
    "condeferred",
    "convalidated",
    "conislocal",
    "datistemplate",
    "datallowconn",
];

/// `ix.indisprimary = 'f'` (SQLAlchemy 1.4's index query): PostgreSQL reads a text literal
/// `t`, `f`, `true` or `false` compared with a boolean as a boolean; DataFusion refuses to
/// compare the two types. The literal becomes a boolean where the column is a catalog flag.
fn flag_compared_as_boolean(expr: &mut Expr) {
    use datafusion::sql::sqlparser::ast::Value;
    let Expr::BinaryOp { left, op, right } = expr else {
        return;
    };
    if !matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq) {
        return;
    }
    let is_flag = |e: &Expr| {
        let name = match e {
            Expr::Identifier(ident) => Some(&ident.value),
            Expr::CompoundIdentifier(parts) => parts.last().map(|p| &p.value),
            _ => None,
        };
        name.is_some_and(|n| CATALOG_FLAGS.iter().any(|f| n.eq_ignore_ascii_case(f)))
    };
    let (left_flag, right_flag) = (is_flag(left), is_flag(right));
    for (flag_beside, literal) in [(left_flag, &mut **right), (right_flag, &mut **left)] {
        if !flag_beside {
            continue;
        }
        if let Expr::Value(value) = literal
            && let Value::SingleQuotedString(text) = &value.value
        {
            let flag = match text.to_ascii_lowercase().as_str() {
                "t" | "true" => true,
                "f" | "false" => false,
                _ => continue,
            };
            value.value = Value::Boolean(flag);
        }
    }
}

/// A `CASE` whose every answer is a lookup of a column's default (`pg_attrdef`), identity
/// sequence (`pg_sequence`) or own collation (`pg_collation`), else NULL: what SQLAlchemy's
/// inspector asks of each column. A view's columns have none of these, so PostgreSQL answers
/// NULL; DataFusion cannot run a correlated subquery inside a `CASE` at all.
fn nothing_of_a_view(expr: &Expr) -> bool {
    let Expr::Case {
        conditions,
        else_result,
        ..
    } = expr
    else {
        return false;
    };
    let is_null = |e: &Expr| matches!(e, Expr::Value(v) if v.value == datafusion::sql::sqlparser::ast::Value::Null);
    let lookup = |e: &Expr| {
        let Expr::Subquery(query) = e else {
            return false;
        };
        let text = query.to_string().to_ascii_lowercase();
        ["pg_attrdef", "pg_sequence", "pg_collation"]
            .iter()
            .any(|table| text.contains(&format!("pg_catalog.{table}")))
    };
    !conditions.is_empty()
        && conditions.iter().all(|when| lookup(&when.result))
        && else_result.as_deref().is_none_or(is_null)
}

/// A correlated scalar subquery over `pg_catalog` (`(SELECT typcollation FROM pg_type WHERE
/// oid = a.atttypid)`, as SQLAlchemy's inspector writes for each column) with its one value
/// aggregated by `max`: DataFusion plans a correlated scalar subquery only when it is
/// aggregated. A catalog lookup has at most one row, so `max` changes nothing; where
/// PostgreSQL would refuse two rows, this answers the larger.
fn aggregate_catalog_lookup(expr: &mut Expr) {
    use datafusion::sql::sqlparser::ast::{GroupByExpr, SelectItem};
    let Expr::Subquery(query) = expr else {
        return;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(by, _) if by.is_empty());
    let over_catalog = select.from.iter().any(|from| {
        from.to_string()
            .to_ascii_lowercase()
            .contains("pg_catalog.")
    });
    if grouped || !over_catalog || select.projection.len() != 1 {
        return;
    }
    let (SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. }) =
        &mut select.projection[0]
    else {
        return;
    };
    if function_args(item, "max").is_some() {
        return;
    }
    if let Some(aggregated) = call("max", vec![item.clone()]) {
        *item = aggregated;
    }
}

/// `generate_subscripts(a, d)` (a set-returning function DataFusion lacks) as
/// `unnest(range(1, CAST(array_length(a, d) AS BIGINT) + 1))`: the same rows, zipped like PostgreSQL's with
/// the other `unnest` of the select list.
fn subscripts_as_unnest(expr: &Expr) -> Option<Expr> {
    let args = function_args(expr, "generate_subscripts")?;
    let [array, dimension] = args.as_slice() else {
        return None;
    };
    let mut length = parse_expr("CAST(NULL AS BIGINT)")?;
    if let Expr::Cast { expr, .. } = &mut length {
        **expr = call("array_length", vec![array.clone(), dimension.clone()])?;
    }
    let end = Expr::BinaryOp {
        left: Box::new(length),
        op: BinaryOperator::Plus,
        right: Box::new(parse_expr("1")?),
    };
    call("unnest", vec![call("range", vec![parse_expr("1")?, end])?])
}

/// `to_date(text, 'YYYY-MM-DD')` and `to_timestamp(text, format)` with a PostgreSQL format
/// literal as the same call with chrono's format.
fn chrono_format(expr: &Expr) -> Option<Expr> {
    let name = ["to_date", "to_timestamp"]
        .into_iter()
        .find(|name| function_args(expr, name).is_some())?;
    let args = function_args(expr, name)?;
    let [text, Expr::Value(format)] = args.as_slice() else {
        return None;
    };
    let format = format.value.clone().into_string()?;
    if format.contains('%') {
        return None;
    }
    let converted = postgres_to_chrono(&format);
    let literal = parse_expr(&format!("'{}'", converted.replace('\'', "''")))?;
    call(name, vec![text.clone(), literal])
}

/// PostgreSQL's date and time format patterns in chrono's.
fn postgres_to_chrono(format: &str) -> String {
    const PATTERNS: &[(&str, &str)] = &[
        ("YYYY", "%Y"),
        ("HH24", "%H"),
        ("HH12", "%I"),
        ("MONTH", "%B"),
        ("Month", "%B"),
        ("month", "%B"),
        ("YY", "%y"),
        ("MM", "%m"),
        ("DD", "%d"),
        ("HH", "%I"),
        ("MI", "%M"),
        ("SS", "%S"),
        ("MS", "%3f"),
        ("US", "%6f"),
        ("MON", "%b"),
        ("Mon", "%b"),
        ("mon", "%b"),
        ("DAY", "%A"),
        ("Day", "%A"),
        ("DY", "%a"),
        ("Dy", "%a"),
        ("AM", "%p"),
        ("PM", "%p"),
    ];
    let mut out = String::new();
    let mut rest = format;
    'next: while !rest.is_empty() {
        for (postgres, chrono) in PATTERNS {
            if let Some(after) = rest.strip_prefix(postgres) {
                out.push_str(chrono);
                rest = after;
                continue 'next;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// The arguments of `expr` if it calls `name` (case-insensitive, any schema).
fn function_args(expr: &Expr, name: &str) -> Option<Vec<Expr>> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let called = function.name.0.last()?.to_string();
    if !called.trim_matches('"').eq_ignore_ascii_case(name) {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// `name(args...)`.
fn call(name: &str, args: Vec<Expr>) -> Option<Expr> {
    let placeholders = vec!["NULL"; args.len()].join(", ");
    let mut call = parse_expr(&format!("{name}({placeholders})"))?;
    let Expr::Function(function) = &mut call else {
        return None;
    };
    let FunctionArguments::List(list) = &mut function.args else {
        return None;
    };
    for (slot, arg) in list.args.iter_mut().zip(args) {
        *slot = FunctionArg::Unnamed(FunctionArgExpr::Expr(arg));
    }
    Some(call)
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
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

    #[test]
    fn sqlalchemy_and_superset_statements_become_statements_datafusion_plans() {
        let sql = PostgresSql::new();
        let rewrite = |query: &str| sql.parse(query).unwrap()[0].to_string();
        let like = rewrite("SELECT 1 WHERE 'a' NOT LIKE 'pg/_' || '%' ESCAPE '/'");
        assert!(like.contains("like_escape('pg/_' || '%', '/')"), "{like}");
        assert!(!like.contains("ESCAPE"), "{like}");
        let index = rewrite(
            "SELECT unnest(pg_catalog.pg_index.indkey), generate_subscripts(pg_catalog.pg_index.indkey, 1) FROM pg_catalog.pg_index",
        );
        assert!(
            index.contains("CAST(NULL AS SMALLINT[]) AS indkey"),
            "{index}"
        );
        assert!(
            index.contains("unnest(range(1, CAST(array_length("),
            "{index}"
        );
        // SQLAlchemy 1.4 (Superset's): a flag against a text literal, and `pg_constraint`
        // with its keys as arrays.
        let flags = rewrite(
            "SELECT 1 FROM pg_index ix JOIN pg_constraint c ON ix.indrelid = c.conrelid \
             WHERE ix.indisprimary = 'f' AND 'true' <> ix.indisunique AND c.conname = 'f'",
        );
        assert!(flags.contains("ix.indisprimary = false"), "{flags}");
        assert!(flags.contains("true <> ix.indisunique"), "{flags}");
        assert!(flags.contains("c.conname = 'f'"), "{flags}");
        assert!(
            flags.contains("CAST(NULL AS SMALLINT[]) AS conkey"),
            "{flags}"
        );
        let date = rewrite(
            "SELECT TO_DATE('2024-01-01', 'YYYY-MM-DD'), to_timestamp(t, 'DD/MM/YYYY HH24:MI:SS.MS')",
        );
        assert!(date.contains("'%Y-%m-%d'"), "{date}");
        assert!(date.contains("'%d/%m/%Y %H:%M:%S.%3f'"), "{date}");
        // A format already in chrono's form is left alone.
        assert!(rewrite("SELECT to_date(t, '%Y')").contains("'%Y'"));
    }
}
