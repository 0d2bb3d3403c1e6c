//! `QueryExecutor`: a tokio runtime of its own for DataFusion work (InfluxDB 3's dedicated
//! executor pattern). A CPU-heavy plan can occupy every thread it runs on; on its own pool it
//! cannot starve the service's HTTP handlers and timers, so a query's time limit always fires
//! and the service keeps answering. DataFusion's cooperative operators yield to the pool
//! regularly, which is where an aborted query stops.

use std::future::Future;

use crate::error::QueryError;

pub struct QueryExecutor {
    handle: tokio::runtime::Handle,
    /// Dropping the sender lets the runtime's thread finish.
    _stop: std::sync::mpsc::Sender<()>,
}

impl QueryExecutor {
    pub fn new(threads: usize) -> Result<Self, QueryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("mxpulse-query")
            .enable_all()
            .build()
            .map_err(|e| QueryError::Internal(format!("cannot start the query threads: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("mxpulse-query-runtime".into())
            .spawn(move || {
                // Blocks until the executor is dropped, then shuts the pool down without
                // waiting for runaway queries.
                let _ = stopped.recv();
                runtime.shutdown_background();
            })
            .map_err(|e| QueryError::Internal(format!("cannot start the query threads: {e}")))?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// Runs `work` on the query pool; waits at most `timeout` for it from the caller's runtime,
    /// and aborts it when the time is up, or when the caller stops waiting: a client that
    /// went away or cancelled (HTTP disconnect, PostgreSQL cancel request) takes its query
    /// with it instead of leaving it to run unbounded on the pool.
    pub async fn run<T: Send + 'static>(
        &self,
        timeout: std::time::Duration,
        work: impl Future<Output = Result<T, QueryError>> + Send + 'static,
    ) -> Result<T, QueryError> {
        let task = self.handle.spawn(work);
        let abort = task.abort_handle();
        let _abort_when_dropped = AbortOnDrop(abort.clone());
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(QueryError::Internal(format!(
                "the query task failed: {join}"
            ))),
            Err(_) => {
                abort.abort();
                Err(QueryError::Timeout(timeout))
            }
        }
    }
}

/// Aborts the task when the future waiting for it is dropped (aborting a finished task does
/// nothing).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
