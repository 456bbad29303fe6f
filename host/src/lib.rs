//! Keyward: an on-premises KMS speaking the Tencent Cloud KMS API, with keys that stay in an HSM.

pub mod alarms;
pub mod api;
pub mod audit;
pub mod bench;
pub mod ca;
pub mod cache;
pub mod cam;
pub mod cli;
pub mod client;
pub mod clock;
pub mod coherence;
pub mod config;
pub mod console;
pub mod control;
pub mod error;
pub mod hsm;
pub mod integrity;
pub mod jobs;
pub mod kms;
pub mod leader;
pub mod pubkey;
pub mod server;
pub mod ssm;
pub mod store;

pub use error::{Error, Result};
