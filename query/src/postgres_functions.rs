//! PostgreSQL functions that clients call and DataFusion lacks, registered in the sessions of
//! PostgreSQL clients: `version()` in PostgreSQL's form (SQLAlchemy reads the version from it),
//! `to_regtype` (psycopg 3), `format` (Metabase builds type names and `regclass` casts with it),
//! `to_regclass` (a relation's OID by name), `col_description` and `obj_description` (nothing
//! has a comment here: NULL, as PostgreSQL answers for an object without), and for psql's
//! `\dv+`: `pg_size_pretty`, the relation sizes (0: views have no storage, as in PostgreSQL)
//! and `pg_function_is_visible`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int32Array, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_postgres::pgwire::api::Type;

/// What `version()` answers: the PostgreSQL version pgwire announces as `server_version`.
pub const POSTGRES_VERSION: &str =
    "PostgreSQL 16.6 (mxpulse, Apache DataFusion) on x86_64-pc-linux-gnu";

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                POSTGRES_VERSION.to_owned(),
            ))))
        }),
    ));
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(to_regtype),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(Format::default()));
    ctx.register_udf(create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| match args {
            [ColumnarValue::Scalar(ScalarValue::Int64(bytes))] => Ok(ColumnarValue::Scalar(
                ScalarValue::Utf8(bytes.map(size_pretty)),
            )),
            [ColumnarValue::Array(bytes)] => {
                let bytes = datafusion::common::cast::as_int64_array(bytes)?;
                let texts: datafusion::arrow::array::StringArray =
                    bytes.iter().map(|b| b.map(size_pretty)).collect();
                Ok(ColumnarValue::Array(Arc::new(texts)))
            }
            _ => Err(DataFusionError::Plan("pg_size_pretty takes a size".into())),
        }),
    ));
    for size in [
        "pg_table_size",
        "pg_relation_size",
        "pg_total_relation_size",
        "pg_indexes_size",
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(Constant::new(
            size,
            ScalarValue::Int64(Some(0)),
        )));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(Constant::new(
        "pg_function_is_visible",
        ScalarValue::Boolean(Some(true)),
    )));
    for description in ["col_description", "obj_description", "shobj_description"] {
        ctx.register_udf(ScalarUDF::new_from_impl(Constant::new(
            description,
            ScalarValue::Utf8(None),
        )));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject::default()));
    // No column of a view is serial (SQLAlchemy's inspector asks for every column).
    // ... nor has an index (`pg_index` is empty for them), a constraint, a default or a view
    // definition to show, and no schema hides a collation or a type (SQLAlchemy 1.4, which
    // Apache Superset runs, asks for each when it reads a table).
    for (name, answer) in [
        ("pg_get_serial_sequence", ScalarValue::Utf8(None)),
        ("pg_get_indexdef", ScalarValue::Utf8(None)),
        ("pg_get_constraintdef", ScalarValue::Utf8(None)),
        ("pg_get_expr", ScalarValue::Utf8(None)),
        ("pg_get_viewdef", ScalarValue::Utf8(None)),
        ("pg_collation_is_visible", ScalarValue::Boolean(Some(true))),
        ("pg_type_is_visible", ScalarValue::Boolean(Some(true))),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(Constant::new(name, answer)));
    }
    ctx.register_udf(create_udf(
        "like_escape",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(like_escape_udf),
    ));
}

/// PostgreSQL's `like_escape(pattern, escape)`: `pattern` written with `escape` as its escape
/// character, rewritten with the backslash (the only escape DataFusion's LIKE takes);
/// `pgwire::postgres_sql` turns `LIKE p ESCAPE '/'` into `LIKE like_escape(p, '/')`.
pub fn like_escape(pattern: &str, escape: char) -> String {
    let mut out = String::with_capacity(pattern.len() + 2);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            if let Some(escaped) = chars.next() {
                out.push('\\');
                out.push(escaped);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

fn like_escape_udf(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let [patterns, escapes] = arrays.as_slice() else {
        return Err(DataFusionError::Plan(
            "like_escape takes (pattern, escape)".into(),
        ));
    };
    let (patterns, escapes) = (as_string_array(patterns)?, as_string_array(escapes)?);
    let rewritten: datafusion::arrow::array::StringArray = patterns
        .iter()
        .zip(escapes.iter())
        .map(|(pattern, escape)| {
            let pattern = pattern?;
            match escape.map(|e| e.chars().collect::<Vec<_>>()).as_deref() {
                Some([escape]) => Some(like_escape(pattern, *escape)),
                // An empty escape: none, every character as itself.
                _ => Some(pattern.replace('\\', "\\\\")),
            }
        })
        .collect();
    let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let array: ArrayRef = Arc::new(rewritten);
    if scalar {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &array, 0,
        )?));
    }
    Ok(ColumnarValue::Array(array))
}

/// The types `to_regtype` knows: the ones this service's columns map to and the usual ones
/// drivers ask about, each under PostgreSQL's names for it.
const TYPES: &[(&[&str], Type)] = &[
    (&["bool", "boolean"], Type::BOOL),
    (&["int2", "smallint"], Type::INT2),
    (&["int4", "integer", "int"], Type::INT4),
    (&["int8", "bigint"], Type::INT8),
    (&["float4", "real"], Type::FLOAT4),
    (&["float8", "double precision"], Type::FLOAT8),
    (&["numeric", "decimal"], Type::NUMERIC),
    (&["text"], Type::TEXT),
    (&["varchar", "character varying"], Type::VARCHAR),
    (&["bpchar", "character"], Type::BPCHAR),
    (&["name"], Type::NAME),
    (&["oid"], Type::OID),
    (&["bytea"], Type::BYTEA),
    (&["date"], Type::DATE),
    (&["time", "time without time zone"], Type::TIME),
    (
        &["timestamp", "timestamp without time zone"],
        Type::TIMESTAMP,
    ),
    (
        &["timestamptz", "timestamp with time zone"],
        Type::TIMESTAMPTZ,
    ),
    (&["interval"], Type::INTERVAL),
    (&["json"], Type::JSON),
    (&["jsonb"], Type::JSONB),
    (&["uuid"], Type::UUID),
];

/// PostgreSQL's `to_regtype(name)`: the type's OID, NULL for a type this server does not have
/// (psycopg 3 asks it whether `hstore` exists).
fn to_regtype(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    fn oid(name: &str) -> Option<i32> {
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        TYPES
            .iter()
            .find(|(names, _)| names.contains(&name))
            .and_then(|(_, ty)| i32::try_from(ty.oid()).ok())
    }
    oid_by_name(args, "to_regtype", oid)
}

/// `lookup` applied to a function's one text argument, a value or a column: the OID of each
/// name, NULL where there is none.
fn oid_by_name(
    args: &[ColumnarValue],
    function: &str,
    lookup: impl Fn(&str) -> Option<i32>,
) -> Result<ColumnarValue> {
    match args {
        [ColumnarValue::Scalar(ScalarValue::Utf8(name))] => Ok(ColumnarValue::Scalar(
            ScalarValue::Int32(name.as_deref().and_then(&lookup)),
        )),
        [ColumnarValue::Array(names)] => {
            let names = as_string_array(names)?;
            let oids: Int32Array = names.iter().map(|name| name.and_then(&lookup)).collect();
            Ok(ColumnarValue::Array(Arc::new(oids)))
        }
        _ => Err(DataFusionError::Plan(format!("{function} takes one name"))),
    }
}

/// PostgreSQL's `to_regclass(name)`: the OID of the relation `name` (`table`, `schema.table`,
/// double-quoted parts as PostgreSQL writes them; unqualified names looked up in `public`
/// then `pg_catalog`, the search path), NULL when there is none. `relations` are the
/// session's, by schema and name.
pub fn to_regclass(relations: HashMap<(String, String), i32>) -> ScalarUDF {
    let lookup = move |name: &str| -> Option<i32> {
        let parts = split_qualified(name)?;
        match parts.as_slice() {
            [schema, table] => relations.get(&(schema.clone(), table.clone())).copied(),
            [table] => ["public", "pg_catalog"]
                .iter()
                .find_map(|schema| relations.get(&((*schema).to_owned(), table.clone())))
                .copied(),
            _ => None,
        }
    };
    create_udf(
        "to_regclass",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| oid_by_name(args, "to_regclass", &lookup)),
    )
}

/// `a.b`, `"A"."b.c"`, `Events` as PostgreSQL reads a qualified name: parts split on dots
/// outside double quotes, unquoted parts lower-cased, `""` inside quotes a quote.
fn split_qualified(name: &str) -> Option<Vec<String>> {
    let mut parts = vec![String::new()];
    let mut chars = name.trim().chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', false) => quoted = true,
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                parts.last_mut()?.push('"');
            }
            ('"', true) => quoted = false,
            ('.', false) => parts.push(String::new()),
            (c, true) => parts.last_mut()?.push(c),
            (c, false) => parts.last_mut()?.push(c.to_ascii_lowercase()),
        }
    }
    (!quoted && parts.iter().all(|p| !p.is_empty())).then_some(parts)
}

/// PostgreSQL's `format(template, args...)`: `%s` (the value as text, NULL as nothing), `%I`
/// (an identifier, quoted when it must be), `%L` (a literal, quoted; NULL as `NULL`), `%%`,
/// and argument positions (`%2$s`). Widths and flags are refused.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl Default for Format {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let texts: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|arg| Ok(cast(&arg.to_array(rows)?, &DataType::Utf8)?))
            .collect::<Result<_>>()?;
        let texts: Vec<_> = texts
            .iter()
            .map(|array| as_string_array(array))
            .collect::<Result<_>>()?;
        let Some((template, values)) = texts.split_first() else {
            return Err(DataFusionError::Plan("format takes a template".into()));
        };
        let mut out = StringBuilder::new();
        for row in 0..rows {
            if template.is_null(row) {
                out.append_null();
                continue;
            }
            let value = |i: usize| {
                values
                    .get(i)
                    .map(|v| (!v.is_null(row)).then(|| v.value(row)))
            };
            out.append_value(format_row(template.value(row), value)?);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// One row of `format`: `value(i)` is the i-th argument (`None` past the last, `Some(None)`
/// for NULL).
fn format_row<'a>(
    template: &str,
    value: impl Fn(usize) -> Option<Option<&'a str>>,
) -> Result<String> {
    let refuse = |what: &str| DataFusionError::Execution(format!("format: {what}"));
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        let kind = loop {
            match chars.next() {
                Some(c) if c.is_ascii_digit() || c == '$' => spec.push(c),
                Some(c) => break c,
                None => return Err(refuse("unterminated format specifier")),
            }
        };
        if kind == '%' && spec.is_empty() {
            out.push('%');
            continue;
        }
        let position = match spec.strip_suffix('$') {
            Some(n) => {
                n.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| refuse("bad argument position"))?
                    - 1
            }
            None if spec.is_empty() => next,
            None => return Err(refuse("widths are not supported")),
        };
        next = position + 1;
        let arg = value(position).ok_or_else(|| refuse("too few arguments"))?;
        match (kind, arg) {
            ('s', Some(text)) => out.push_str(text),
            ('s', None) => {}
            ('I', Some(text)) => out.push_str(&quote_ident(text)),
            ('I', None) => return Err(refuse("NULL cannot be an identifier")),
            ('L', Some(text)) => out.push_str(&format!("'{}'", text.replace('\'', "''"))),
            ('L', None) => out.push_str("NULL"),
            (other, _) => return Err(refuse(&format!("unrecognized conversion %{other}"))),
        }
    }
    Ok(out)
}

/// PostgreSQL's `quote_ident`: bare when lower-case letters, digits and underscores not
/// starting with a digit, double-quoted otherwise.
fn quote_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// PostgreSQL's `pg_size_pretty`: bytes below 10 kB, then kB, MB, GB, TB, PB, each step
/// rounded half up.
fn size_pretty(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes.abs() < 10 * 1024 {
        return format!("{bytes} bytes");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size.abs() >= 10.0 * 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{} {}", size.round(), UNITS[unit])
}

/// PostgreSQL's `json_build_object(key, value, ...)`, as JSON text (SQLAlchemy's inspector
/// builds the identity and collation of each column with it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl Default for JsonBuildObject {
    fn default() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "json_build_object takes keys and values in pairs".into(),
            ));
        }
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut built = StringBuilder::new();
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                let value = ScalarValue::try_from_array(&pair[1], row)?;
                object.insert(json_key(&key), json_value(&value));
            }
            built.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(built.finish())))
    }
}

fn json_key(key: &ScalarValue) -> String {
    match key {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

fn json_value(value: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as Json;
    if value.is_null() {
        return Json::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => Json::Bool(*b),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Json::String(s.clone()),
        ScalarValue::Float32(Some(x)) => {
            serde_json::Number::from_f64(f64::from(*x)).map_or(Json::Null, Json::Number)
        }
        ScalarValue::Float64(Some(x)) => {
            serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number)
        }
        other => match other.to_string().parse::<i64>() {
            Ok(n) => Json::from(n),
            Err(_) => Json::String(other.to_string()),
        },
    }
}

/// A function of any arguments with one answer, for what has one answer here:
/// the descriptions (no object has a comment), the sizes of relations (views have no
/// storage), `pg_function_is_visible` (no schema hides a function), the serial sequence of
/// a column (none).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: &'static str,
    value: ScalarValue,
    signature: Signature,
}

impl Constant {
    fn new(name: &'static str, value: ScalarValue) -> Self {
        Self {
            name,
            value,
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escape_rewrites_another_escape_character_as_the_backslash() {
        // SQLAlchemy's `NOT LIKE 'pg/_' || '%' ESCAPE '/'`: names starting `pg_`.
        assert_eq!(like_escape("pg/_%", '/'), "pg\\_%");
        assert_eq!(like_escape("a//b", '/'), "a\\/b");
        assert_eq!(like_escape("a\\b_", '/'), "a\\\\b_");
        assert_eq!(like_escape("100/%", '/'), "100\\%");
    }

    #[test]
    fn to_regtype_knows_postgres_names_and_not_extensions() {
        let ask = |name: &str| match to_regtype(&[ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            name.into(),
        )))]) {
            Ok(ColumnarValue::Scalar(ScalarValue::Int32(oid))) => oid,
            other => panic!("{other:?}"),
        };
        assert_eq!(ask("int8"), Some(20));
        assert_eq!(ask("pg_catalog.timestamptz"), Some(1184));
        assert_eq!(ask("Double Precision"), Some(701));
        assert_eq!(ask("hstore"), None);
    }

    #[test]
    fn to_regclass_reads_names_as_postgres_does() {
        let relations = HashMap::from([
            (("public".to_owned(), "events".to_owned()), 16400),
            (("public".to_owned(), "My Table".to_owned()), 16401),
            (("pg_catalog".to_owned(), "pg_class".to_owned()), 1259),
        ]);
        let udf = to_regclass(relations);
        let ask = |name: &str| {
            let args = ScalarFunctionArgs {
                args: vec![ColumnarValue::Scalar(ScalarValue::Utf8(Some(name.into())))],
                arg_fields: vec![Arc::new(datafusion::arrow::datatypes::Field::new(
                    "name",
                    DataType::Utf8,
                    true,
                ))],
                number_rows: 1,
                return_field: Arc::new(datafusion::arrow::datatypes::Field::new(
                    "oid",
                    DataType::Int32,
                    true,
                )),
                config_options: Arc::default(),
            };
            match udf.invoke_with_args(args) {
                Ok(ColumnarValue::Scalar(ScalarValue::Int32(oid))) => oid,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(ask("events"), Some(16400));
        assert_eq!(ask("Public.EVENTS"), Some(16400));
        assert_eq!(ask("public.\"My Table\""), Some(16401));
        assert_eq!(ask("\"Events\""), None);
        assert_eq!(ask("pg_class"), Some(1259));
        assert_eq!(ask("nowhere.events"), None);
    }

    #[test]
    fn sizes_print_as_postgres_prints_them() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10 * 1024 - 1), "10239 bytes");
        assert_eq!(size_pretty(10 * 1024), "10 kB");
        assert_eq!(size_pretty(1536 * 1024 * 1024), "1536 MB");
        assert_eq!(size_pretty(20 * 1024 * 1024 * 1024), "20 GB");
    }

    #[test]
    fn format_follows_postgres() {
        let args = [Some("public"), Some("My \"Table\""), None, Some("it's")];
        let format = |template: &str| format_row(template, |i| args.get(i).copied());
        assert_eq!(format("%s.%s").unwrap(), "public.My \"Table\"");
        assert_eq!(format("%I.%I").unwrap(), "public.\"My \"\"Table\"\"\"");
        assert_eq!(
            format("%2$s|%1$s|%s").unwrap(),
            "My \"Table\"|public|My \"Table\""
        );
        assert_eq!(
            format("[%3$s] %3$L %4$L 100%%").unwrap(),
            "[] NULL 'it''s' 100%"
        );
        for bad in ["%5$s", "%10s", "%d", "%3$I", "50%"] {
            assert!(format(bad).is_err(), "{bad}");
        }
    }
}
