//! Access management (CAM): accounts and API keys, sub-accounts, groups and CAM-syntax
//! policies, the caller every service acts for, and the allow/deny decision.
//!
//! The root account may do everything. A sub-account may do what the policies attached to
//! it, or to a group it belongs to, allow, unless one of them denies it
//! (docs/access-control.md).

pub mod access;
pub mod accounts;
mod caller;
pub mod policy;
mod service;

pub use access::Access;
pub use accounts::{Accounts, ApiCredential, IssuedCredential, ROOT_UIN};
pub use caller::{visible_page, Caller};
pub use service::{ApiKeyView, Cam, PolicyChange, MAX_KEYS_PER_ACCOUNT};
