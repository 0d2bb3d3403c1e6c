//! `QuerySlots`: how many queries of one kind run at once, and how many may wait for a turn.
//! The analysts' SQL and the viewers' figures have a `QuerySlots` each, so that fifty heavy
//! statements fill the SQL queue, never the dashboards'. A slot is an owned permit, moved into
//! the work it stands for: it frees when that work has stopped (an aborted query still
//! running until its next yield keeps its slot), not when its caller stopped waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::QueryError;

/// One held slot.
pub type Slot = OwnedSemaphorePermit;

#[derive(Debug)]
pub struct QuerySlots {
    running: Arc<Semaphore>,
    /// Requests waiting for a slot now.
    waiting: AtomicUsize,
    /// Beyond this many waiting, a request is answered "busy" at once.
    max_waiting: usize,
    /// A request waiting longer is answered "busy".
    pub queue_timeout: Duration,
}

/// Counts a waiting request for as long as it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl QuerySlots {
    pub fn new(running: usize, max_waiting: usize, queue_timeout: Duration) -> Self {
        Self {
            running: Arc::new(Semaphore::new(running.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
            queue_timeout,
        }
    }

    /// A slot, waited for at most `queue_timeout`; `Busy` when the queue is full or the time
    /// is up.
    pub async fn take(&self) -> Result<Slot, QueryError> {
        if let Ok(slot) = self.running.clone().try_acquire_owned() {
            return Ok(slot);
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(QueryError::Busy(self.queue_timeout));
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.queue_timeout, self.running.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_)) => Err(QueryError::Internal("the service is stopping".into())),
            Err(_) => Err(QueryError::Busy(self.queue_timeout)),
        }
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.running.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once_and_a_slot_frees_when_dropped() {
        let slots = QuerySlots::new(1, 1, Duration::from_secs(30));
        let held = slots.take().await.unwrap();
        let waiter = {
            let slots = &slots;
            async move { slots.take().await }
        };
        tokio::pin!(waiter);
        // The one waiter queues...
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiter)
                .await
                .is_err()
        );
        // ... a second is turned away without waiting the 30 s.
        let started = std::time::Instant::now();
        assert!(matches!(slots.take().await, Err(QueryError::Busy(_))));
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(held);
        assert!(waiter.await.is_ok());
    }
}
