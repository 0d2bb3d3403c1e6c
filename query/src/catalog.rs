//! The session's catalog as PostgreSQL clients read it. `OrderedCatalog` lists schemas and
//! tables in name order. Every query gets a new session, and `pg_catalog` numbers tables
//! (their OIDs) in the order the catalog lists them: DataFusion's in-memory catalog lists them in hash order, which differs from one
//! session to the next, so psql's `\d events` found the OID of `events` in one query and read
//! the columns of another table under that OID in the next. In name order, and numbered by
//! `pg_class` first (`number_tables`: it numbers catalogs, schemas and tables, where
//! `pg_attribute` alone would number tables only), the same tables get the same OIDs in every
//! session.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::cast::{as_int32_array, as_string_array};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;

/// Adds what PostgreSQL clients read to the session: `pg_catalog`, the functions of
/// `postgres_functions`, and, when `sql` reads the catalog, stable OIDs and `to_regclass`.
pub async fn for_postgres_clients(ctx: &SessionContext, sql: &str) -> Result<()> {
    setup_pg_catalog(ctx, "mxpulse", EmptyContextProvider).map_err(|e| *e)?;
    crate::postgres_functions::register(ctx);
    let sql = sql.to_ascii_lowercase();
    if sql.contains("pg_catalog") || sql.contains("regclass") {
        let relations = number_tables(ctx).await?;
        ctx.register_udf(crate::postgres_functions::to_regclass(relations));
    }
    Ok(())
}

/// Numbers the session's catalogs, schemas and tables the way every session numbers them
/// (`pg_class` first), and returns each relation's OID by schema and name.
async fn number_tables(ctx: &SessionContext) -> Result<HashMap<(String, String), i32>> {
    ctx.sql("SELECT count(*) FROM pg_catalog.pg_class")
        .await?
        .collect()
        .await?;
    let batches = ctx
        .sql(
            "SELECT n.nspname, c.relname, CAST(c.oid AS INT) FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid",
        )
        .await?
        .collect()
        .await?;
    let mut relations = HashMap::new();
    for batch in &batches {
        let schemas = as_string_array(batch.column(0))?;
        let names = as_string_array(batch.column(1))?;
        let oids = as_int32_array(batch.column(2))?;
        for ((schema, name), oid) in schemas.iter().zip(names).zip(oids) {
            if let (Some(schema), Some(name), Some(oid)) = (schema, name, oid) {
                relations.insert((schema.to_owned(), name.to_owned()), oid);
            }
        }
    }
    Ok(relations)
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
