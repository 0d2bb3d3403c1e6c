//! The session's catalog as PostgreSQL clients read it. `OrderedCatalog` lists schemas and
//! tables in name order. Every query gets a
//! new session, and `pg_catalog` numbers tables (their OIDs) in the order the catalog lists
//! them: DataFusion's in-memory catalog lists them in hash order, which differs from one
//! session to the next, so psql's `\d events` found the OID of `events` in one query and read
//! the columns of another table under that OID in the next. In name order, and numbered by
//! `pg_class` first (`number_tables`: it numbers catalogs, schemas and tables, where
//! `pg_attribute` alone would number tables only), the same tables get the same OIDs in every
//! session.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::Int32Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::cast::as_string_array;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::pgwire::api::Type;

/// What `version()` answers PostgreSQL clients: drivers and SQLAlchemy read the major version
/// from it (DataFusion's own answer names no PostgreSQL version, and SQLAlchemy refuses it).
/// It is the protocol version pgwire announces as `server_version`.
pub const POSTGRES_VERSION: &str =
    "PostgreSQL 16.6 (mxpulse, Apache DataFusion) on x86_64-pc-linux-gnu";

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
    match args {
        [ColumnarValue::Scalar(ScalarValue::Utf8(name))] => Ok(ColumnarValue::Scalar(
            ScalarValue::Int32(name.as_deref().and_then(oid)),
        )),
        [ColumnarValue::Array(names)] => {
            let names = as_string_array(names)?;
            let oids: Int32Array = names.iter().map(|name| name.and_then(oid)).collect();
            Ok(ColumnarValue::Array(Arc::new(oids)))
        }
        _ => Err(DataFusionError::Plan(
            "to_regtype takes one type name".into(),
        )),
    }
}

/// Adds what PostgreSQL clients read to the session: `pg_catalog`, `version()`,
/// `to_regtype()`, and stable OIDs when `sql` reads the catalog.
pub async fn for_postgres_clients(ctx: &SessionContext, sql: &str) -> Result<()> {
    setup_pg_catalog(ctx, "mxpulse", EmptyContextProvider).map_err(|e| *e)?;
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
    if sql.to_ascii_lowercase().contains("pg_catalog") {
        number_tables(ctx).await?;
    }
    Ok(())
}

/// Numbers the session's catalogs, schemas and tables the way every session numbers them,
/// before the statement reads `pg_catalog`.
async fn number_tables(ctx: &SessionContext) -> Result<()> {
    ctx.sql("SELECT count(*) FROM pg_catalog.pg_class")
        .await?
        .collect()
        .await?;
    Ok(())
}

#[derive(Debug, Default)]
pub struct OrderedCatalog {
    schemas: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl OrderedCatalog {
    /// A catalog holding one empty schema, `schema`.
    pub fn with_schema(schema: &str) -> Self {
        let catalog = Self::default();
        write(&catalog.schemas).insert(schema.to_owned(), Arc::new(OrderedSchema::default()));
        catalog
    }
}

impl CatalogProvider for OrderedCatalog {
    fn schema_names(&self) -> Vec<String> {
        read(&self.schemas).keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        read(&self.schemas).get(name).cloned()
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        Ok(write(&self.schemas).insert(name.to_owned(), schema))
    }
}

#[derive(Debug, Default)]
pub struct OrderedSchema {
    tables: RwLock<BTreeMap<String, Arc<dyn TableProvider>>>,
}

#[async_trait]
impl SchemaProvider for OrderedSchema {
    fn table_names(&self) -> Vec<String> {
        read(&self.tables).keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(read(&self.tables).get(name).cloned())
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        let mut tables = write(&self.tables);
        if tables.contains_key(&name) {
            return Err(DataFusionError::Plan(format!(
                "table {name} already exists"
            )));
        }
        Ok(tables.insert(name, table))
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(write(&self.tables).remove(name))
    }

    fn table_exist(&self, name: &str) -> bool {
        read(&self.tables).contains_key(name)
    }
}

/// The maps hold no invariant a panicking writer could break, so a poisoned lock is used as is.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
