//! The extended query protocol (Parse, Bind, Describe, Execute), which JDBC and most drivers
//! speak. Parse checks and plans the statement for the connection's principal (the guard
//! refuses there already, and Describe gets the parameter and column types from the plan);
//! Execute plans it again on the newest lake snapshot with the bound values and runs it
//! through `QueryService::answer_sql`, like every other query, so a prepared statement held by
//! a connection pool sees new commits and the same scope, limits and log.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, into_pg_type};
use datafusion_postgres::pgwire;
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::client_statements::ClientStatement;
use super::postgres_sql::PostgresSql;
use super::{answer, client_response, principal_of, show_field, sql_error, user_error};
use crate::error::QueryError;
use crate::service::{PreparedShape, QueryService, Surface};

/// A statement as Parse left it.
#[derive(Clone, Debug)]
pub enum PreparedStatement {
    /// A query that passed the guard, in DataFusion's SQL, with its shape at Parse time.
    Query { sql: String, shape: PreparedShape },
    /// A driver's own statement.
    Client(ClientStatement),
}

pub struct StatementParser {
    service: Arc<QueryService>,
    sql: PostgresSql,
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = PreparedStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<PreparedStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self
            .sql
            .parse(sql)
            .map_err(|e| user_error("42601", e.to_string()))?;
        if statements.len() > 1 {
            return Err(sql_error(QueryError::Refused(format!(
                "one statement per request, got {}",
                statements.len()
            ))));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        if let Some(known) = ClientStatement::recognize(&statement) {
            return Ok(Some(PreparedStatement::Client(known)));
        }
        let principal = principal_of(&self.service, client)?;
        let sql = statement.to_string();
        let shape = self
            .service
            .prepare_sql(&principal, sql.clone(), Surface::Pgwire)
            .await
            .map_err(sql_error)?;
        Ok(Some(PreparedStatement::Query { sql, shape }))
    }

    fn get_parameter_types(&self, statement: &PreparedStatement) -> PgWireResult<Vec<Type>> {
        match statement {
            PreparedStatement::Query { shape, .. } => shape
                .parameters
                .iter()
                .map(|parameter| parameter.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
                .collect(),
            PreparedStatement::Client(_) => Ok(Vec::new()),
        }
    }

    fn get_result_schema(
        &self,
        statement: &PreparedStatement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match statement {
            PreparedStatement::Query { shape, .. } => {
                arrow_schema_to_pg_fields(&shape.schema, format, None)
            }
            PreparedStatement::Client(ClientStatement::Show { name, .. }) => {
                Ok(vec![show_field(name, format)])
            }
            PreparedStatement::Client(_) => Ok(Vec::new()),
        }
    }
}

pub struct PreparedQueries {
    service: Arc<QueryService>,
    parser: Arc<StatementParser>,
}

impl PreparedQueries {
    pub fn new(service: Arc<QueryService>) -> Self {
        Self {
            parser: Arc::new(StatementParser {
                service: service.clone(),
                sql: PostgresSql::new(),
            }),
            service,
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for PreparedQueries {
    type Statement = PreparedStatement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PreparedStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PreparedStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (sql, shape) = match &portal.statement.statement {
            PreparedStatement::Client(known) => {
                return client_response(known, &portal.result_column_format);
            }
            PreparedStatement::Query { sql, shape } => (sql, shape),
        };
        let principal = principal_of(&self.service, client)?;
        // Values are decoded with the type the client sent, or else the one planning inferred.
        let inferred: Vec<Option<&DataType>> =
            shape.parameters.iter().map(Option::as_ref).collect();
        let params = (portal.parameter_len() > 0)
            .then(|| deserialize_parameters(portal, &inferred))
            .transpose()?;
        let format = &portal.result_column_format;
        answer(
            &self.service,
            client,
            &principal,
            sql.clone(),
            params,
            format,
        )
        .await
    }
}
