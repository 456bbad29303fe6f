//! Keyward's own actions (service `keyward`, version `2026-11-01`), signed like any other
//! request. Only the root account may call them.

use super::params::{opt_u64, parse};
use super::{Ctx, Fields};
use crate::cam::accounts::ROOT_UIN;
use crate::error::{Error, Result};
use serde::Deserialize;
use serde_json::json;

fn require_root(ctx: &Ctx<'_>) -> Result<()> {
    if ctx.caller.uin != ROOT_UIN {
        return Err(Error::InvalidAction(
            "only the root account may call Keyward admin actions".into(),
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
    let clock = ctx.state.adjustable_clock.as_ref().ok_or_else(|| {
        Error::Unsupported(
            "the clock is not adjustable ([testing] adjustable_clock = false)".into(),
        )
    })?;
    let secs = req
        .seconds
        .ok_or_else(|| Error::MissingParameter("Seconds is required".into()))?;
    let now = clock.advance(
        i64::try_from(secs).map_err(|_| Error::InvalidValue("Seconds is too large".into()))?,
    );
    ctx.state.kms.store().set_meta(
        crate::server::CLOCK_OFFSET_META,
        clock.offset().to_string().as_bytes(),
    )?;
    run_jobs(ctx, now)
}

/// One pass of every scheduled job (KMS and SSM), reported by count.
fn run_jobs(ctx: &Ctx<'_>, now: i64) -> Result<Fields> {
    let (rotated, reminded, deleted) = ctx.state.kms.run_due_jobs()?;
    let secrets = ctx.state.ssm.run_due_jobs()?;
    Ok(json!({
        "Now": now,
        "Rotated": rotated,
        "Reminded": reminded,
        "Deleted": deleted,
        "SecretsDeleted": secrets,
    })
    .as_object()
    .cloned()
    .unwrap_or_default())
}

pub(super) fn run_scheduled_jobs(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    require_root(ctx)?;
    let _: serde_json::Map<String, serde_json::Value> = parse(body)?;
    run_jobs(ctx, ctx.state.clock.now())
}
