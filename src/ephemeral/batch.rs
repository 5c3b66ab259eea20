//! Group commit: many callers' small writes gathered into one write (one transaction, one
//! commit), each caller answered only once that write is done.
//!
//! Callers hand an item to one task over a bounded channel (a full channel makes the caller
//! wait: the queue never grows without bound) and wait for their answer. The task takes
//! everything queued, up to `max_batch` items, flushes them with one call, and answers every
//! caller from its result, in order; a failed flush answers every caller of that batch with the
//! error. While one batch is written the next one queues, so under load a batch grows to what
//! arrived during one commit.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use super::EphemeralError;

type Waiter<R> = oneshot::Sender<Result<R, EphemeralError>>;

/// A handle on a batching task. The task ends when every handle is dropped.
pub struct Batcher<T, R> {
    tx: mpsc::Sender<(T, Waiter<R>)>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Spawns the task (on the current Tokio runtime). `flush` must answer one result per item,
    /// in order. `queue` bounds the items waiting; `max_batch` bounds one flush.
    pub fn spawn<F, Fut>(queue: usize, max_batch: usize, mut flush: F) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, EphemeralError>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<(T, Waiter<R>)>(queue.max(1));
        let max_batch = max_batch.max(1);
        tokio::spawn(async move {
            let mut queued = Vec::with_capacity(max_batch);
            while rx.recv_many(&mut queued, max_batch).await > 0 {
                let (items, waiters): (Vec<T>, Vec<Waiter<R>>) = queued.drain(..).unzip();
                let n = items.len();
                match flush(items).await {
                    Ok(results) if results.len() == n => {
                        for (w, r) in waiters.into_iter().zip(results) {
                            // A caller that gave up (its request was dropped) needs no answer.
                            let _ = w.send(Ok(r));
                        }
                    }
                    Ok(results) => {
                        let e = format!("batch answered {} results for {n} items", results.len());
                        for w in waiters {
                            let _ = w.send(Err(EphemeralError(e.clone())));
                        }
                    }
                    Err(e) => {
                        for w in waiters {
                            let _ = w.send(Err(EphemeralError(e.0.clone())));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Queues `item` (waiting while the queue is full) and waits until its batch is written.
    pub async fn submit(&self, item: T) -> Result<R, EphemeralError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((item, tx))
            .await
            .map_err(|_| EphemeralError("the batch writer has stopped".into()))?;
        rx.await
            .map_err(|_| EphemeralError("the batch writer stopped before answering".into()))?
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A set-if-absent over an in-memory set, counting its flushes: the first of a key in a
    /// batch wins, as the database does it.
    fn set_batcher(
        flushes: Arc<AtomicUsize>,
        fail: bool,
        max_batch: usize,
    ) -> Batcher<String, bool> {
        let set = Arc::new(std::sync::Mutex::new(HashSet::new()));
        Batcher::spawn(8, max_batch, move |keys: Vec<String>| {
            let (set, flushes) = (set.clone(), flushes.clone());
            async move {
                flushes.fetch_add(1, Ordering::SeqCst);
                if fail {
                    return Err(EphemeralError("disk full".into()));
                }
                let mut set = set.lock().unwrap();
                Ok(keys.into_iter().map(|k| set.insert(k)).collect())
            }
        })
    }

    async fn all<R>(futs: Vec<tokio::task::JoinHandle<R>>) -> Vec<R> {
        let mut out = Vec::new();
        for f in futs {
            out.push(f.await.unwrap());
        }
        out
    }

    /// N concurrent callers with the same key: exactly one is told "newly set".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_with_one_key_get_exactly_one_true() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let b = set_batcher(flushes.clone(), false, 512);
        let n = 200;
        let calls = (0..n)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.submit("same".to_owned()).await.unwrap() })
            })
            .collect();
        let got = all(calls).await;
        assert_eq!(got.iter().filter(|x| **x).count(), 1, "{got:?}");
        assert!(flushes.load(Ordering::SeqCst) <= n);
    }

    /// Different keys are all newly set, and a queue larger than one batch is split into
    /// batches of at most `max_batch`, fewer flushes than callers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn different_keys_are_all_set_in_few_batches() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let b = set_batcher(flushes.clone(), false, 16);
        let n = 300;
        let calls = (0..n)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(format!("k{i}")).await.unwrap() })
            })
            .collect();
        assert!(all(calls).await.into_iter().all(|x| x));
        let f = flushes.load(Ordering::SeqCst);
        assert!(f >= n / 16, "{f} flushes");
    }

    /// A failed write reaches every caller of its batch as an error (they fail closed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_answers_every_caller_with_the_error() {
        let b = set_batcher(Arc::new(AtomicUsize::new(0)), true, 512);
        let calls = (0..50)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(format!("k{i}")).await })
            })
            .collect();
        for r in all(calls).await {
            let e = r.unwrap_err();
            assert!(e.to_string().contains("disk full"), "{e}");
        }
    }

    /// A flush that answers the wrong number of results is an error for everyone, never a
    /// misattributed answer.
    #[tokio::test]
    async fn a_short_answer_is_an_error() {
        let b: Batcher<u8, bool> = Batcher::spawn(4, 4, |_items: Vec<u8>| async { Ok(vec![]) });
        assert!(b.submit(1).await.is_err());
    }
}
