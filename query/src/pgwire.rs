//! The PostgreSQL wire protocol (psql, and clients that use the simple query protocol), on
//! the same sessions, guard and limits as HTTP: a user logs in with the name and token of a
//! `[[query.principals]]` entry (cleartext password, so put TLS in front outside loopback);
//! each query runs in a session scoped to that principal, with `pg_catalog` for `\d`, through
//! `session::run_sql` on the query executor. Rows come back as text.
//!
//! The extended query protocol (JDBC: Metabase, Grafana, DBeaver) is not served yet.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::pgwire;
use futures::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password};
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use crate::error::QueryError;
use crate::http::QueryService;
use crate::session;

/// Passwords are the principals' tokens.
#[derive(Debug, Clone)]
struct Principals(Arc<QueryService>);

impl Debug for QueryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryService")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthSource for Principals {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        match self.0.access.named(user) {
            Some((secret, _)) => Ok(Password::new(None, secret.as_bytes().to_vec())),
            None => Err(PgWireError::InvalidPassword(user.to_owned())),
        }
    }
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message,
    )))
}

/// SQLSTATE of each kind of failure.
fn sql_error(error: QueryError) -> PgWireError {
    let code = match &error {
        QueryError::Refused(_) => "42501",
        QueryError::Invalid(_) => "42601",
        QueryError::Timeout(_) => "57014",
        QueryError::Memory(_) => "53200",
        QueryError::Lake(_) => "58030",
        QueryError::Internal(_) => "XX000",
    };
    user_error(code, error.to_string())
}

struct ScopedQueries {
    service: Arc<QueryService>,
    parser: PostgresCompatibilityParser,
}

#[async_trait]
impl SimpleQueryHandler for ScopedQueries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        let Some((_, principal)) = self.service.access.named(&user) else {
            return Err(user_error("28000", format!("unknown user {user}")));
        };
        let principal = principal.clone();
        if !principal.role.may_query_sql() {
            return Err(user_error("42501", format!("{user} may read figures only")));
        }
        // psql's catalog queries use PostgreSQL forms that DataFusion reads once rewritten.
        let statements = self
            .parser
            .parse(query)
            .map_err(|e| user_error("42601", e.to_string()))?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::new();
        for statement in statements {
            let sql = statement.to_string();
            tracing::info!(user = %principal.name, scope = ?principal.server, sql = %sql, "pgwire query");
            let output = async {
                let _permit = self
                    .service
                    .running
                    .acquire()
                    .await
                    .map_err(|_| QueryError::Internal("the service is stopping".into()))?;
                let snapshot = self.service.lake.snapshot().await?;
                let publication = self.service.publication();
                let ctx = session::session(
                    &snapshot,
                    &principal.scope(),
                    &self.service.limits,
                    publication.wanted_by(&sql),
                )
                .await?;
                setup_pg_catalog(&ctx, "mxpulse", EmptyContextProvider)
                    .map_err(|e| QueryError::Internal(e.to_string()))?;
                session::run_sql(&self.service.executor, ctx, sql, self.service.limits).await
            }
            .await
            .map_err(sql_error)?;
            if output.schema.fields().is_empty() {
                responses.push(Response::Execution(Tag::new("SELECT").with_rows(0)));
                continue;
            }
            let rows = SessionContext::new()
                .read_table(Arc::new(
                    MemTable::try_new(output.schema.clone(), vec![output.batches])
                        .map_err(|e| sql_error(e.into()))?,
                ))
                .map_err(|e| sql_error(e.into()))?;
            let response =
                encode_dataframe(rows, &pgwire::api::portal::Format::UnifiedText, None).await?;
            responses.push(Response::Query(response));
        }
        Ok(responses)
    }
}

struct Handlers {
    queries: Arc<ScopedQueries>,
    startup: Arc<CleartextPasswordAuthStartupHandler<Principals, DefaultServerParameterProvider>>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }
}

/// Listens on `address` and serves every connection until the task is dropped.
pub async fn serve(
    address: SocketAddr,
    service: Arc<QueryService>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let handlers = Arc::new(Handlers {
        queries: Arc::new(ScopedQueries {
            service: service.clone(),
            parser: PostgresCompatibilityParser::new(),
        }),
        startup: Arc::new(CleartextPasswordAuthStartupHandler::new(
            Principals(service),
            DefaultServerParameterProvider::default(),
        )),
    });
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((socket, _)) => {
                    let handlers = handlers.clone();
                    tokio::spawn(async move {
                        if let Err(error) =
                            pgwire::tokio::process_socket(socket, None, handlers).await
                        {
                            tracing::debug!(%error, "pgwire connection ended");
                        }
                    });
                }
                Err(error) => tracing::warn!(%error, "pgwire accept failed"),
            }
        }
    });
    Ok((bound, task))
}
