//! Small named values of the deployment (backend binding, sealed system keys, the test
//! clock's offset).

use crate::error::Result;

pub trait MetaStore: Send + Sync {
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Inserts a meta value; returns false (and changes nothing) if it already exists.
    fn insert_meta(&self, name: &str, value: &[u8]) -> Result<bool>;
    /// Inserts or replaces a meta value.
    fn set_meta(&self, name: &str, value: &[u8]) -> Result<()>;
}
