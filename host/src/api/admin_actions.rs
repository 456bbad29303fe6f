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
    if report.leader {
        ctx.state.audit.apply_retention(now, &ctx.state.cfg)?;
    }
    report_json(now, report)
}

fn report_json(now: i64, r: JobReport) -> Result<Fields> {
    out(json!({
        "Now": now,
        "Rotated": r.rotated,
        "Reminded": r.reminded,
        "Deleted": r.deleted,
        "SecretsDeleted": r.secrets_deleted,
        "SecretsRotated": r.secrets_rotated,
        // With several daemons only the holder of the jobs lease runs them.
        "Leader": r.leader,
    }))
}

pub(super) fn run_scheduled_jobs(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    require_root(ctx)?;
    let _: serde_json::Map<String, serde_json::Value> = parse(body)?;
    ctx.state.jobs.test_clock()?;
    let report = ctx.state.jobs.run_due()?;
    let now = ctx.state.clock.now();
    if report.leader {
        ctx.state.audit.apply_retention(now, &ctx.state.cfg)?;
    }
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

/// DescribeDeployment (`keyward status`): what an operator checks first — version, HSM
/// backend and token or device, store, readiness, the caller's key counts in its region and
/// the audit log's position.
pub(super) fn describe_deployment(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    require_root(ctx)?;
    let _: serde_json::Map<String, serde_json::Value> = parse(body)?;
    let st = ctx.state;
    let cfg = &st.cfg;
    let hsm = match &cfg.hsm {
        crate::config::HsmConfig::Embedded => json!({"Backend": "embedded"}),
        crate::config::HsmConfig::Pkcs11(p) => json!({
            "Backend": "pkcs11",
            "Module": p.module.display().to_string(),
            "Token": p.token_label,
            "TokenSerial": p.token_serial,
            "Slot": p.slot,
        }),
        crate::config::HsmConfig::Serial(s) => json!({
            "Backend": "serial",
            "Device": s.path.display().to_string(),
        }),
    };
    let store = match &cfg.store {
        crate::config::StoreConfig::Sqlite => "sqlite",
        crate::config::StoreConfig::Postgres(_) => "postgres",
    };
    let mut ready = serde_json::Map::new();
    for (name, r) in st.jobs.readiness(st.clock.now()) {
        ready.insert(name.into(), json!(r.is_ok()));
    }
    ready.insert("audit".into(), json!(st.audit.healthy()));
    let (keys, data_keys) = st.kms.usage(&ctx.caller)?;
    let (head, archived) = st.audit.positions()?;
    out(json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Hsm": hsm,
        "Store": store,
        "Regions": cfg.regions.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "Ready": ready,
        "Keys": keys,
        "DataKeys": data_keys,
        "AuditEnabled": st.audit.enabled(),
        "AuditHead": head,
        "AuditArchivedThrough": archived,
        // The jobs lease (docs/postgres.md): whether this daemon runs the scheduled work.
        "Leader": st.jobs.leader.is_leader(),
        "Holder": st.jobs.leader.holder(),
    }))
}
