//! Who is calling and where: the account that owns the resources, the user that acts, the
//! region, the request's authority and its unit of work (the audit trail). Services take a
//! `Caller` and decide on each resource through it.

use super::access::tag_pairs;
use super::{policy, Access};
use crate::error::Result;
use crate::store::{KeyRecord, Tag, Trail};
use std::sync::Arc;

/// Who is calling and where: the account that owns the keys, the user that acts, the region.
#[derive(Debug, Clone)]
pub struct Caller {
    pub owner_uin: u64,
    pub uin: u64,
    pub region: String,
    /// The request's authority; `None` for the service's own calls (Secrets Manager using
    /// its CMK, background jobs), which act with the service's rights.
    pub access: Option<Arc<Access>>,
    /// The audit record of the work this caller does; every store write carries it.
    pub trail: Arc<Trail>,
}

impl Caller {
    pub fn new(owner_uin: u64, uin: u64, region: impl Into<String>) -> Self {
        Caller {
            owner_uin,
            uin,
            region: region.into(),
            access: None,
            trail: Arc::new(Trail::off()),
        }
    }

    /// The same account and region, acting as the service itself (within the same unit of
    /// work, so its changes land in the same audit record).
    pub fn internal(&self) -> Caller {
        Caller {
            access: None,
            ..self.clone()
        }
    }

    /// The same caller, deciding as `cam_action` (`kms:GenerateDataKey`) instead of the
    /// request's action, in the same unit of work. The service's own calls stay unrestricted.
    pub fn acting_as(&self, cam_action: &str) -> Caller {
        Caller {
            access: self
                .access
                .as_ref()
                .map(|a| Arc::new(a.for_action(cam_action))),
            ..self.clone()
        }
    }

    pub fn key_resource(&self, key_id: &str) -> String {
        policy::kms_key_resource(&self.region, self.owner_uin, key_id)
    }

    /// A key's second CAM name, in the form Tencent's CAM documents for KMS
    /// (`…:key/creatorUin/<creator>/<KeyId>`), so policies written for Tencent Cloud work
    /// too. The shorter form is the one recorded.
    fn key_creator_resource(&self, key: &KeyRecord) -> String {
        self.key_resource(&format!("creatorUin/{}/{}", key.creator_uin, key.key_id))
    }

    /// Decides on an existing key and notes it in the audit record (requests only: the
    /// service's own calls decide nothing and note nothing).
    pub fn check_key(&self, key: &KeyRecord) -> Result<()> {
        let Some(a) = &self.access else {
            return Ok(());
        };
        let name = self.key_resource(&key.key_id);
        self.trail.resource("kms_key", &name);
        if a.is_restricted() {
            a.check_names(
                &[&name, &self.key_creator_resource(key)],
                &tag_pairs(&key.tags),
            )
        } else {
            a.check(&name, &[])
        }
    }

    /// Whether a list action may show this key (under either of its names).
    pub fn may_see_key(&self, key: &KeyRecord) -> bool {
        self.access.as_ref().is_none_or(|a| {
            a.visible_any(
                &[
                    &self.key_resource(&key.key_id),
                    &self.key_creator_resource(key),
                ],
                &tag_pairs(&key.tags),
            )
        })
    }

    /// Decides on a resource about to be created (`resource` is its CAM name, or a
    /// `.../key/*`-style name for resources whose id the service assigns).
    pub fn check_new(&self, resource: &str, tags: &[Tag]) -> Result<()> {
        match &self.access {
            Some(a) => a.check_create(resource, &tag_pairs(tags)),
            None => Ok(()),
        }
    }

    /// Decides on an existing resource of `kind` and notes it in the audit record.
    pub fn check(&self, kind: &str, resource: &str, tags: &[Tag]) -> Result<()> {
        let Some(a) = &self.access else {
            return Ok(());
        };
        self.trail.resource(kind, resource);
        // Tags matter only to policies: the root's checks skip copying them.
        match a.is_restricted() {
            true => a.check(resource, &tag_pairs(tags)),
            false => a.check(resource, &[]),
        }
    }

    /// Whether a list action may show this resource.
    pub fn may_see(&self, resource: &str, tags: &[Tag]) -> bool {
        self.access
            .as_ref()
            .is_none_or(|a| a.visible(resource, &tag_pairs(tags)))
    }

    /// Whether list results must be filtered one by one.
    pub fn is_restricted(&self) -> bool {
        self.access.as_ref().is_some_and(|a| a.is_restricted())
    }
}

/// One page of a listing. An unrestricted caller pages in the store; a caller limited by
/// policies sees only what they allow, so the whole match is filtered first and paged after,
/// and TotalCount counts only visible items.
pub fn visible_page<T>(
    caller: &Caller,
    offset: u64,
    limit: u64,
    fetch: impl Fn(u64, u64) -> Result<(u64, Vec<T>)>,
    visible: impl Fn(&T) -> bool,
) -> Result<(u64, Vec<T>)> {
    if !caller.is_restricted() {
        return fetch(offset, limit);
    }
    let (_, all) = fetch(0, i64::MAX as u64)?;
    let seen: Vec<T> = all.into_iter().filter(|t| visible(t)).collect();
    let total = seen.len() as u64;
    let page = seen
        .into_iter()
        .skip(offset.min(usize::MAX as u64) as usize)
        .take(limit.min(usize::MAX as u64) as usize)
        .collect();
    Ok((total, page))
}
