//! Access control: who may call which action on which resource.
//!
//! The root account may do everything. A sub-account may do what the CAM-syntax policies
//! attached to it, or to a group it belongs to, allow, unless one of them denies it
//! (docs/access-control.md).

pub mod access;
pub mod policy;

pub use access::Access;

use crate::error::Result;
use crate::store::Store;
use policy::Policy;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub struct Iam {
    store: Arc<dyn Store>,
    /// Parsed effective policies per sub-account; any change to users, groups, policies or
    /// attachments clears it.
    cache: RwLock<HashMap<u64, Arc<Vec<Policy>>>>,
}

impl Iam {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Iam {
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The policies that apply to a sub-account.
    pub fn policies_for(&self, uin: u64) -> Result<Arc<Vec<Policy>>> {
        if let Some(p) = self.cache.read().ok().and_then(|c| c.get(&uin).cloned()) {
            return Ok(p);
        }
        let mut parsed = Vec::new();
        for rec in self.store.effective_policies(uin)? {
            match Policy::parse(&rec.document) {
                Ok(p) => parsed.push(p),
                // Documents are validated when stored; one that no longer parses (a newer
                // grammar, a damaged row) grants nothing rather than failing every request.
                Err(e) => tracing::error!(policy_id = rec.policy_id, error = %e,
                    "stored policy does not parse; ignoring it"),
            }
        }
        let parsed = Arc::new(parsed);
        if let Ok(mut c) = self.cache.write() {
            c.insert(uin, parsed.clone());
        }
        Ok(parsed)
    }

    pub fn invalidate(&self) {
        if let Ok(mut c) = self.cache.write() {
            c.clear();
        }
    }
}
