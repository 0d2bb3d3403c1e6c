//! The PostgreSQL wire protocol, on the same sessions, guard and limits as HTTP: psql (the
//! simple query protocol) and JDBC and other drivers (the extended protocol: Parse, Bind,
//! Describe, Execute, so Metabase, Grafana and DBeaver). A user logs in with the name and
//! token of a `[[query.principals]]` entry (cleartext password, so TLS beyond loopback); each
//! query runs through `QueryService::answer_sql` in a session scoped to that
//! principal, with `pg_catalog` for `\d` and drivers' metadata. Drivers' own `BEGIN`, `SET
//! application_name` and the like are answered by `client_statements`. With a certificate,
//! connections may (or must) use TLS (`tls`).

mod client_statements;
mod extended;
mod postgres_sql;
mod tls;

pub use tls::TlsError;

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::pgwire;
use futures::{Sink, SinkExt as _};
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::Format;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;

use crate::access::Principal;
use crate::error::QueryError;
use crate::service::{QueryService, Surface};
use crate::session::QueryOutput;
use client_statements::ClientStatement;
use postgres_sql::PostgresSql;

/// Passwords are the principals' tokens.
#[derive(Debug, Clone)]
struct Principals(Arc<QueryService>);

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
        QueryError::Refused(_) | QueryError::Forbidden(_) => "42501",
        QueryError::Invalid(_) => "42601",
        QueryError::Timeout(_) => "57014",
        QueryError::Memory(_) => "53200",
        // too_many_connections: the client may retry.
        QueryError::Busy(_) => "53300",
        QueryError::Lake(_) => "58030",
        QueryError::Internal(_) => "XX000",
    };
    user_error(code, error.to_string())
}

/// The logged-in principal of a connection (authenticated at startup).
fn principal_of(service: &QueryService, client: &impl ClientInfo) -> PgWireResult<Principal> {
    let user = client.metadata().get("user").cloned().unwrap_or_default();
    match service.access.named(&user) {
        Some((_, principal)) => Ok(principal.clone()),
        None => Err(user_error("28000", format!("unknown user {user}"))),
    }
}

/// Tells the client, as a PostgreSQL NOTICE (psql prints it), that `output` stopped at the
/// service's row limit: over HTTP the answer says `truncated`.
async fn notice_truncation<C>(client: &mut C, cut_at: Option<usize>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if let Some(rows) = cut_at {
        let notice = ErrorInfo::new(
            "NOTICE".into(),
            "01000".into(),
            format!(
                "the result was cut at {rows} rows (query.max_rows, or its size over the query's memory limit): narrow the query or aggregate"
            ),
        );
        client
            .feed(PgWireBackendMessage::NoticeResponse(notice.into()))
            .await?;
    }
    Ok(())
}

/// Runs `sql` for `principal` with `params` bound, and answers its rows as the client asked
/// them (`format`), a NOTICE first when they were cut: both protocols' queries end here.
async fn answer<C>(
    service: &Arc<QueryService>,
    client: &mut C,
    principal: &Principal,
    sql: String,
    params: Option<datafusion::common::ParamValues>,
    format: &Format,
) -> PgWireResult<Response>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    // The rows are encoded while the query's slot is held.
    let (response, cut_at) = service
        .answer_sql_then(principal, sql, params, Surface::Pgwire, |output| {
            let cut_at = output.truncated.then_some(output.rows);
            rows_response(output, format, options)
                .map(|response| (response, cut_at))
                .map_err(|e| QueryError::Internal(e.to_string()))
        })
        .await
        .map_err(sql_error)?;
    notice_truncation(client, cut_at).await?;
    Ok(response)
}

/// The rows of `output` as the client asked them (text or binary, per column).
fn rows_response(
    output: QueryOutput,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<Response> {
    if output.schema.fields().is_empty() {
        return Ok(Response::Execution(Tag::new("SELECT").with_rows(0)));
    }
    let fields = Arc::new(arrow_schema_to_pg_fields(
        &output.schema,
        format,
        Some(options),
    )?);
    let rows: Vec<_> = output
        .batches
        .into_iter()
        .flat_map(|batch| encode_recordbatch(fields.clone(), batch))
        .collect();
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures::stream::iter(rows),
    )))
}

/// The column a `SHOW` answers with.
fn show_field(name: &str, format: &Format) -> FieldInfo {
    FieldInfo::new(name.into(), None, None, Type::TEXT, format.format_for(0))
}

/// PostgreSQL's answer to a driver's statement.
fn client_response(statement: &ClientStatement, format: &Format) -> PgWireResult<Response> {
    Ok(match statement {
        ClientStatement::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        ClientStatement::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
        ClientStatement::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
        ClientStatement::Acknowledged(tag) => Response::Execution(Tag::new(tag)),
        ClientStatement::Show { name, value } => {
            let field = show_field(name, format);
            let fields = Arc::new(vec![field]);
            let mut row = DataRowEncoder::new(fields.clone());
            row.encode_field(&value.to_string())?;
            Response::Query(QueryResponse::new(
                fields,
                futures::stream::iter([Ok(row.take_row())]),
            ))
        }
    })
}

struct ScopedQueries {
    service: Arc<QueryService>,
    parser: PostgresSql,
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
        let principal = principal_of(&self.service, client)?;
        let statements = self
            .parser
            .parse(query)
            .map_err(|e| user_error("42601", e.to_string()))?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::new();
        for statement in statements {
            let response = match ClientStatement::recognize(&statement) {
                Some(known) => client_response(&known, &Format::UnifiedText)?,
                None => {
                    let sql = statement.to_string();
                    answer(
                        &self.service,
                        client,
                        &principal,
                        sql,
                        None,
                        &Format::UnifiedText,
                    )
                    .await?
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }
}

/// Password authentication, after refusing a connection without TLS when TLS is required,
/// with the token compared in constant time first (pgwire's own comparison, which then runs
/// only on the right token, stops at the first differing byte).
struct Startup {
    password: CleartextPasswordAuthStartupHandler<Principals, DefaultServerParameterProvider>,
    service: Arc<QueryService>,
    tls_required: bool,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls_required && !client.is_secure() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "this server accepts TLS connections only (sslmode=require)".into(),
            ))));
        }
        let message = match message {
            PgWireFrontendMessage::PasswordMessageFamily(family) => {
                let given = family.into_password()?;
                let user = client.metadata().get("user").cloned().unwrap_or_default();
                if self
                    .service
                    .access
                    .by_token(&given.password)
                    .map(|p| p.name)
                    != Some(user.clone())
                {
                    return Err(PgWireError::InvalidPassword(user));
                }
                PgWireFrontendMessage::PasswordMessageFamily(PasswordMessageFamily::Password(given))
            }
            other => other,
        };
        self.password.on_startup(client, message).await
    }
}

/// TLS for the PostgreSQL endpoint.
#[derive(Clone)]
pub struct PgwireTls {
    acceptor: tokio_rustls::TlsAcceptor,
    /// Connections without TLS are refused.
    required: bool,
}

impl PgwireTls {
    /// From PEM files: the certificate (chain) and its private key.
    pub fn from_pem_files(
        cert: &std::path::Path,
        key: &std::path::Path,
        required: bool,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            acceptor: tls::acceptor(cert, key)?,
            required,
        })
    }
}

struct Handlers {
    queries: Arc<ScopedQueries>,
    prepared: Arc<extended::PreparedQueries>,
    startup: Arc<Startup>,
    /// Cancel requests (psql's Ctrl-C, JDBC's `Statement.cancel`) find their connection's
    /// running query through the connections registered at startup.
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.prepared.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// Listens on `address` and serves every connection until the task is dropped, with TLS when
/// `tls` is given.
pub async fn serve(
    address: SocketAddr,
    service: Arc<QueryService>,
    tls: Option<PgwireTls>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let connections = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        queries: Arc::new(ScopedQueries {
            service: service.clone(),
            parser: PostgresSql::new(),
        }),
        prepared: Arc::new(extended::PreparedQueries::new(service.clone())),
        startup: Arc::new(Startup {
            service: service.clone(),
            password: CleartextPasswordAuthStartupHandler::new(
                Principals(service),
                DefaultServerParameterProvider::default(),
            )
            .with_connection_manager(connections.clone()),
            tls_required: tls.as_ref().is_some_and(|tls| tls.required),
        }),
        cancel: Arc::new(DefaultCancelHandler::new(connections)),
    });
    let acceptor = tls.map(|tls| tls.acceptor);
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((socket, _)) => {
                    let handlers = handlers.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Err(error) =
                            pgwire::tokio::process_socket(socket, acceptor, handlers).await
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
