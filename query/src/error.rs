//! What can go wrong answering a question, each with the HTTP status it maps to.

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Not a query (DDL, DML, COPY, SET...) or more than one statement.
    #[error("refused: {0}")]
    Refused(String),
    /// The principal's role does not allow this (a viewer asking for SQL).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The query reads something the session does not have, or does not parse.
    #[error("invalid query: {0}")]
    Invalid(String),
    #[error("the query ran longer than {0:?} and was cancelled")]
    Timeout(std::time::Duration),
    #[error("the query needs more memory than its limit allows: {0}")]
    Memory(String),
    /// No query slot freed up within the queue's limit (HTTP 503 with Retry-After).
    #[error("the service is busy: no query slot freed within {0:?}; retry later")]
    Busy(std::time::Duration),
    #[error("cannot read the lake: {0}")]
    Lake(String),
    #[error("{0}")]
    Internal(String),
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(error: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as E;
        match error.find_root() {
            E::ResourcesExhausted(message) => QueryError::Memory(message.clone()),
            E::Plan(_) | E::SQL(..) | E::SchemaError(..) | E::NotImplemented(_) => {
                QueryError::Invalid(error.find_root().to_string())
            }
            _ => QueryError::Internal(error.to_string()),
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for QueryError {
    fn from(error: datafusion::arrow::error::ArrowError) -> Self {
        QueryError::Internal(error.to_string())
    }
}
