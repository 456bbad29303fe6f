//! The alarm outbox: alarms wait here, durably, until the webhook has them.

use crate::error::Result;
use serde::Serialize;

/// An alarm waiting in the outbox for webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alarm {
    #[serde(rename = "AlarmId")]
    pub id: i64,
    #[serde(rename = "Time")]
    pub time: i64,
    #[serde(rename = "Region")]
    pub region: String,
    #[serde(rename = "KeyId")]
    pub key_id: String,
    /// `PendingDeleteKeyUsed` or `PendingDeleteReminder`.
    #[serde(rename = "Kind")]
    pub kind: String,
    #[serde(rename = "Message")]
    pub message: String,
}

pub trait AlarmStore: Send + Sync {
    /// Appends an alarm to the outbox and returns its id.
    fn insert_alarm(&self, a: &Alarm) -> Result<i64>;
    fn undelivered_alarms(&self, limit: u32) -> Result<Vec<Alarm>>;
    fn mark_alarm_delivered(&self, id: i64) -> Result<()>;
    fn alarms_for_key(&self, key_id: &str) -> Result<Vec<Alarm>>;
}
