//! Leadership: the background jobs that act on the shared database (purges, expiry sweeps, any
//! later schedule) run on one instance at a time, the leader, and move to another instance when
//! the leader dies.
//!
//! The lease is the database's own ([`LeaderLock`]): on PostgreSQL a session advisory lock held
//! on one dedicated connection, checked every [`LEASE_PERIOD`] (`SELECT 1` on it) and tried for
//! by every other instance as often. The lock lives exactly as long as the holder's session: a
//! killed process's socket closes and PostgreSQL releases the lock at once, so another instance
//! leads within one period; a holder that loses its connection stops leading at its next check.
//! After a holder's silent network loss the lock moves only once PostgreSQL notices the dead
//! session (TCP keepalive, `tcp_keepalives_*`); the old holder stops leading at its next failed
//! check (at most one period plus a 5 s timeout), normally long before, so two leaders at once
//! need a server that drops sessions faster than that. Jobs are idempotent anyway (a purge run
//! twice deletes nothing the second time). A Redis lease was not chosen: it would need fencing
//! and clock care that the database lock gets from the session itself, and SQLite deployments
//! have no Redis. SQLite: one process owns the file, so it always leads.
//!
//! Leadership is the `agentidp_leader` gauge (0/1) and `leader` in `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::storage::LeaderLock;

/// How often the leader checks its lock and the others try for it.
pub const LEASE_PERIOD: Duration = Duration::from_secs(2);

/// Whether this instance leads now; cheap to clone, watched by the leader-only jobs.
#[derive(Clone, Debug)]
pub struct Leadership(Arc<watch::Sender<bool>>);

impl Leadership {
    /// Starts as `leads` (SQLite: leading from the start; PostgreSQL: not until the lock is taken).
    pub fn new(leads: bool) -> Self {
        metrics::gauge!("agentidp_leader").set(if leads { 1.0 } else { 0.0 });
        Leadership(Arc::new(watch::Sender::new(leads)))
    }

    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Changes of leadership, for a job that runs only while leading.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Records the current state; logs and updates the gauge on a change.
    pub fn set(&self, leads: bool) {
        let changed = self.0.send_if_modified(|l| {
            let changed = *l != leads;
            *l = leads;
            changed
        });
        metrics::gauge!("agentidp_leader").set(if leads { 1.0 } else { 0.0 });
        if changed {
            if leads {
                tracing::info!("leading: this instance runs the background jobs");
            } else {
                tracing::warn!("no longer leading: another instance runs the background jobs");
            }
        }
    }
}

/// Holds or tries for `lock` every [`LEASE_PERIOD`] (the first time at once), recording the
/// outcome in `leadership`, until `stop` changes; then gives the lock up.
pub fn spawn_lease(
    mut lock: LeaderLock,
    leadership: Leadership,
    stop: &watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut stop = stop.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(LEASE_PERIOD);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.changed() => break,
            }
            let leads = match lock.refresh().await {
                Ok(l) => {
                    failing = false;
                    l
                }
                Err(e) => {
                    // Logged once per outage, not every period.
                    if !failing {
                        tracing::warn!(error = %e, "the leader lock is unreachable");
                    }
                    failing = true;
                    false
                }
            };
            leadership.set(leads);
        }
        leadership.set(false);
        lock.release().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_always_leads_and_changes_are_watched() {
        let t = crate::storage::testing::temp_db().await;
        let leadership = Leadership::new(false);
        let mut changes = leadership.subscribe();
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = spawn_lease(t.db.leader_lock(), leadership.clone(), &stop_rx);
        changes.wait_for(|l| *l).await.unwrap();
        assert!(leadership.is_leader());
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(!leadership.is_leader(), "a stopped instance leads no more");
    }
}
