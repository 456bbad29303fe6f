//! One audit record and the hash that chains it to its predecessor.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Everything the audit log keeps about one request. Never plaintext, ciphertext, secret
/// values or SecretKeys: only names, identifiers and the outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub event_id: String,
    /// Unix seconds (system clock).
    pub event_time: i64,
    pub region: String,
    /// `kms`, `ssm`, `cloudaudit`, `keyward`, or empty when the request named no known version.
    pub service: String,
    pub action: String,
    pub read_only: bool,
    /// The root account the caller belongs to (0 when authentication failed).
    pub owner_uin: u64,
    /// The calling account: the root or a sub-account (0 when authentication failed).
    pub uin: u64,
    pub username: String,
    pub secret_id: String,
    pub source_ip: String,
    pub user_agent: String,
    /// `kms_key`, `kms_datakey`, `ssm_secret`, or empty.
    pub resource_type: String,
    /// CAM resource names the request touched.
    pub resources: Vec<String>,
    pub request_id: String,
    /// `Success` or the Tencent error code returned.
    pub result_code: String,
    /// For cryptographic actions: the CMK and the key version used.
    pub key_id: String,
    pub key_version: u32,
}

impl AuditRecord {
    /// A change the service made by itself: no caller, user name `system`.
    pub fn system(service: &str, action: &str, region: &str, owner_uin: u64) -> Self {
        AuditRecord {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_time: crate::clock::Clock::now(&crate::clock::SystemClock),
            region: region.to_string(),
            service: service.to_string(),
            action: action.to_string(),
            owner_uin,
            username: "system".into(),
            request_id: uuid::Uuid::new_v4().to_string(),
            result_code: "Success".into(),
            ..Default::default()
        }
    }

    /// Names the resource the record is about.
    pub fn about(mut self, resource_type: &str, resource: String) -> Self {
        self.resource_type = resource_type.to_string();
        self.resources = vec![resource];
        self
    }
}

/// A record as stored: its place in the chain and the chain hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedRecord {
    pub seq: u64,
    pub record: AuditRecord,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0u8; 32];

const CHAIN_CONTEXT: &[u8] = b"keyward/audit-record/v1\0";
const CHECKPOINT_CONTEXT: &[u8] = b"keyward/audit-checkpoint/v1\0";

/// SHA-256 over the previous hash, the sequence number and the record's canonical JSON (serde
/// writes struct fields in declaration order, so the encoding is fixed by this file).
pub fn chain_hash(prev: &[u8; 32], seq: u64, record: &AuditRecord) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHAIN_CONTEXT);
    h.update(prev);
    h.update(seq.to_be_bytes());
    // Serialised straight into the hash: the same bytes as `serde_json::to_vec`, without
    // the buffer and its regrowth (the writer thread hashes every record of the log).
    // Serialising a struct of strings, integers and a list of strings cannot fail.
    let _ = serde_json::to_writer(HashWriter(&mut h), record);
    h.finalize().into()
}

/// `io::Write` into a running SHA-256.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A signed statement that the chain up to `seq` ends in `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: [u8; 32],
    pub create_time: i64,
    /// DER ECDSA P-256/SHA-256 signature by the audit key held in the HSM.
    pub signature: Vec<u8>,
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_message(seq: u64, hash: &[u8; 32], create_time: i64) -> Vec<u8> {
    let mut m = CHECKPOINT_CONTEXT.to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&create_time.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streamed_hash_is_the_hash_of_the_canonical_json() {
        let r = AuditRecord {
            action: "Encrypt".into(),
            user_agent: "quote \" backslash \\ newline \n unicode \u{e9}".into(),
            resources: vec!["qcs::kms:ap-guangzhou:uin/1:key/k".into()],
            key_version: 3,
            ..Default::default()
        };
        let mut h = Sha256::new();
        h.update(CHAIN_CONTEXT);
        h.update([7u8; 32]);
        h.update(9u64.to_be_bytes());
        h.update(serde_json::to_vec(&r).unwrap());
        assert_eq!(
            chain_hash(&[7u8; 32], 9, &r),
            <[u8; 32]>::from(h.finalize())
        );
    }

    #[test]
    fn every_field_and_the_position_change_the_hash() {
        let r = AuditRecord {
            action: "Encrypt".into(),
            ..Default::default()
        };
        let base = chain_hash(&GENESIS, 1, &r);
        assert_ne!(base, chain_hash(&GENESIS, 2, &r));
        assert_ne!(base, chain_hash(&[1u8; 32], 1, &r));
        let mut r2 = r.clone();
        r2.result_code = "x".into();
        assert_ne!(base, chain_hash(&GENESIS, 1, &r2));
        let mut r3 = r.clone();
        r3.resources.push("qcs::kms:r:uin/1:key/a".into());
        assert_ne!(base, chain_hash(&GENESIS, 1, &r3));
    }
}
