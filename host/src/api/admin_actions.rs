//! Keyward's own actions (service `keyward`, version `2026-11-01`), signed like any other
//! request. Only the root account may call them.

use super::params::{opt_u64, out, parse};
use super::{Ctx, Fields};
use crate::cam::accounts::ROOT_UIN;
use crate::error::{Error, Result};
use crate::jobs::JobReport;
use serde::Deserialize;
use serde_json::json;

fn require_root(ctx: &Ctx<'_>) -> Result<()> {
    if ctx.caller.uin != ROOT_UIN {
        return Err(Error::Unauthorized(
            "only the root account may call Keyward's operator actions".into(),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct AdvanceClockRequest {
    #[serde(deserialize_with = "opt_u64")]
    seconds: Option<u64>,
}

/// Moves the service clock forward (only with `[testing] adjustable_clock`) and runs the
/// scheduled jobs once, so a test sees their effect deterministically.
pub(super) fn advance_clock(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    require_root(ctx)?;
    let req: AdvanceClockRequest = parse(body)?;
    let secs = req
        .seconds
        .ok_or_else(|| Error::MissingParameter("Seconds is required".into()))?;
    let (now, report) = ctx.state.jobs.advance_clock(secs)?;
    ctx.state.audit.apply_retention(now, &ctx.state.cfg)?;
    report_json(now, report)
}

fn report_json(now: i64, r: JobReport) -> Result<Fields> {
    out(json!({
        "Now": now,
        "Rotated": r.rotated,
        "Reminded": r.reminded,
        "Deleted": r.deleted,
        "SecretsDeleted": r.secrets_deleted,
    }))
}

pub(super) fn run_scheduled_jobs(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    require_root(ctx)?;
    let _: serde_json::Map<String, serde_json::Value> = parse(body)?;
    ctx.state.jobs.test_clock()?;
    let report = ctx.state.jobs.run_due()?;
    let now = ctx.state.clock.now();
    ctx.state.audit.apply_retention(now, &ctx.state.cfg)?;
    report_json(now, report)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ArchiveAuditLogRequest {
    #[serde(default, deserialize_with = "opt_u64")]
    before: Option<u64>,
}

/// Moves the audit records older than `Before` (unix seconds) into a segment file in the
/// archive directory, up to the newest signed checkpoint among them (docs/audit.md).
pub(super) fn archive_audit_log(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    require_root(ctx)?;
    let req: ArchiveAuditLogRequest = parse(body)?;
    let before = req
        .before
        .ok_or_else(|| Error::MissingParameter("Before is required".into()))?;
    let before =
        i64::try_from(before).map_err(|_| Error::InvalidValue("Before is too large".into()))?;
    let dir = crate::audit::Audit::archive_dir(&ctx.state.cfg);
    match ctx.state.audit.archive_before(before, &dir)? {
        Some(r) => out(json!({
            "Archived": true,
            "FirstSeq": r.first_seq,
            "LastSeq": r.last_seq,
            "Records": r.records,
            "File": r.file.display().to_string(),
        })),
        None => out(json!({ "Archived": false, "Records": 0 })),
    }
}
