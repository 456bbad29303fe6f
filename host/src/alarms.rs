//! Alarms: durable events about keys (a pending-deletion key was used; a deletion is near),
//! written to the store's outbox, counted, and POSTed as JSON to a configured webhook by a
//! background task that retries with backoff. Raising an alarm never waits for delivery.

use crate::error::{Error, Result};
use crate::leader::Leadership;
use crate::store::{Alarm, AlarmStore};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const KIND_PENDING_DELETE_USED: &str = "PendingDeleteKeyUsed";
pub const KIND_DELETION_REMINDER: &str = "PendingDeleteReminder";
pub const KIND_KEY_DELETED: &str = "KeyDeleted";

#[derive(Default)]
pub struct Counters {
    pub raised: AtomicU64,
    pub delivered: AtomicU64,
    pub delivery_failures: AtomicU64,
}

pub struct Alarms {
    store: Arc<dyn AlarmStore>,
    wake: tokio::sync::Notify,
    pub counters: Counters,
}

impl Alarms {
    pub fn new(store: Arc<dyn AlarmStore>) -> Self {
        Alarms {
            store,
            wake: tokio::sync::Notify::new(),
            counters: Counters::default(),
        }
    }

    /// Records an alarm and wakes the deliverer.
    pub fn raise(
        &self,
        time: i64,
        region: &str,
        key_id: &str,
        kind: &str,
        message: String,
    ) -> Result<()> {
        let id = self.store.insert_alarm(&Alarm {
            id: 0,
            time,
            region: region.into(),
            key_id: key_id.into(),
            kind: kind.into(),
            message: message.clone(),
        })?;
        self.counters.raised.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(alarm_id = id, %key_id, kind, %message, "alarm");
        self.wake.notify_one();
        Ok(())
    }

    /// Delivers outbox alarms to `webhook` forever: in order, each until it succeeds, backing
    /// off exponentially (1 s .. 60 s) while the receiver fails. With several daemons on one
    /// store, only the jobs lease holder delivers (the others' loops wait), so an alarm goes
    /// out once — at least once: one delivered just before its daemon died, and not yet
    /// marked, is sent again by the next holder.
    pub async fn deliver_forever(self: Arc<Self>, webhook: hyper::Uri, leader: Arc<Leadership>) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let mut backoff = Duration::from_secs(1);
        loop {
            if !leader.is_leader() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let store = self.store.clone();
            let pending = tokio::task::spawn_blocking(move || store.undelivered_alarms(100))
                .await
                .map_err(|e| Error::Internal(e.to_string()))
                .and_then(|r| r);
            let pending = match pending {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "reading the alarm outbox");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            if pending.is_empty() {
                // Woken by `raise`, or poll now and then in case a wake-up was missed.
                let _ = tokio::time::timeout(Duration::from_secs(5), self.wake.notified()).await;
                continue;
            }
            for alarm in pending {
                match post(&client, &webhook, &alarm).await {
                    Ok(()) => {
                        let store = self.store.clone();
                        let id = alarm.id;
                        let _ = tokio::task::spawn_blocking(move || store.mark_alarm_delivered(id))
                            .await;
                        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                        backoff = Duration::from_secs(1);
                    }
                    Err(e) => {
                        self.counters
                            .delivery_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(alarm_id = alarm.id, error = %e, retry_in = ?backoff, "alarm webhook failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        break;
                    }
                }
            }
        }
    }
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &hyper::Uri,
    alarm: &Alarm,
) -> Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({ "Alarm": alarm }))
        .map_err(|e| Error::Internal(e.to_string()))?;
    let req = hyper::Request::post(url.clone())
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Error::Internal(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| Error::Internal("webhook timed out".into()))?
        .map_err(|e| Error::Internal(format!("webhook: {e}")))?;
    if !resp.status().is_success() {
        return Err(Error::Internal(format!(
            "webhook answered {}",
            resp.status()
        )));
    }
    Ok(())
}
