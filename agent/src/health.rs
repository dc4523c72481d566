//! Health checks (promotion gates): what an agent of the check's segment does with a
//! `HealthCheck` from the control plane, and the signed result it returns.
//!
//! | kind | pass | fail | inconclusive |
//! |---|---|---|---|
//! | `http` | `GET` answers the expected status (and the body holds the expected text) | another status, no connection, no answer in time | — |
//! | `sql` | the query runs (read-only, as admin) and, when a value is expected, returns it | the query fails or returns something else | this agent does not reach the service |
//! | `script` | the program answers `succeeded` to `{"step": "health", ...}` | `not_applied` or `retryable` | `indeterminate`, no usable answer, no such service here |
//!
//! A detail names statuses and errors; it never carries what a query returned or a body held.

use std::time::{Duration, SystemTime};

use dsops_proto::domain::StepOutcome;
use dsops_proto::wire::agent as wire;
use serde_json::json;

use crate::executor::Executor;
use crate::hook::{HookCall, HookSpec, WebhookSpec};
use crate::secret::SecretValue;

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy.
    Pass,
    /// Unhealthy.
    Fail,
    /// Could not tell.
    Inconclusive,
}

impl Verdict {
    /// As the result body names it.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The longest detail reported.
const MAX_DETAIL: usize = 300;

/// Runs `check` and signs the result with the agent's key.
pub async fn perform(executor: &Executor, check: &wire::HealthCheck) -> wire::HealthResult {
    let timeout = Duration::from_millis(u64::from(check.timeout_ms.clamp(1_000, 300_000)));
    let (verdict, detail) = match tokio::time::timeout(
        timeout + Duration::from_secs(1),
        probe(executor, check, timeout),
    )
    .await
    {
        Ok(found) => found,
        Err(_) => (Verdict::Fail, format!("no answer within {timeout:?}")),
    };
    let at_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = json!({
        "id": check.id,
        "check": check.check,
        "outcome": verdict.name(),
        "detail": detail.chars().take(MAX_DETAIL).collect::<String>(),
        "at_ms": at_ms,
    })
    .to_string()
    .into_bytes();
    let signature = ed25519_dalek::Signer::sign(&executor.identity().signing_key, &body);
    wire::HealthResult { body, signature: signature.to_bytes().to_vec() }
}

async fn probe(
    executor: &Executor,
    check: &wire::HealthCheck,
    timeout: Duration,
) -> (Verdict, String) {
    match check.kind.as_str() {
        "http" => http(check, timeout).await,
        "sql" => sql(executor, check).await,
        "script" => script(executor, check, timeout).await,
        other => (Verdict::Inconclusive, format!("this agent has no {other:?} health check")),
    }
}

async fn http(check: &wire::HealthCheck, timeout: Duration) -> (Verdict, String) {
    let spec = match WebhookSpec::probe(&check.url, timeout) {
        Ok(spec) => spec,
        Err(error) => return (Verdict::Inconclusive, error),
    };
    match crate::hook::webhook::get(&spec).await {
        Ok((status, body)) => {
            let expected = u16::try_from(check.expect_status).unwrap_or(200);
            if status.as_u16() != expected {
                return (
                    Verdict::Fail,
                    format!("status {} (expected {expected})", status.as_u16()),
                );
            }
            if !check.body_contains.is_empty()
                && !String::from_utf8_lossy(&body).contains(&check.body_contains)
            {
                return (
                    Verdict::Fail,
                    format!("status {expected}, but the body lacks the expected text"),
                );
            }
            (Verdict::Pass, format!("status {expected}"))
        }
        Err(error) => (Verdict::Fail, error.message),
    }
}

async fn sql(executor: &Executor, check: &wire::HealthCheck) -> (Verdict, String) {
    let target = match executor.probe_target(&check.service) {
        Ok(target) => target,
        Err(why) => return (Verdict::Inconclusive, why),
    };
    match target.probe(&check.query).await {
        Ok(value) if check.expect_value.is_empty() => {
            let rows = if value.is_some() { "a row" } else { "no row" };
            (Verdict::Pass, format!("the query ran ({rows})"))
        }
        Ok(Some(value)) if value == check.expect_value => {
            (Verdict::Pass, "the query returned the expected value".to_owned())
        }
        Ok(_) => (Verdict::Fail, "the query did not return the expected value".to_owned()),
        Err(error) => (Verdict::Fail, error.message),
    }
}

async fn script(
    executor: &Executor,
    check: &wire::HealthCheck,
    timeout: Duration,
) -> (Verdict, String) {
    let Some(HookSpec::Script(spec)) = executor.config().hooks.get(&check.service) else {
        return (
            Verdict::Inconclusive,
            format!("this agent has no script service {:?}", check.service),
        );
    };
    let spec = crate::hook::ScriptSpec { timeout: spec.timeout.min(timeout), ..spec.clone() };
    let nothing = SecretValue::new(String::new());
    let call = HookCall {
        step: "health",
        checked_step: None,
        run_id: &check.id,
        generation: 0,
        attempt: 1,
        env: "",
        key: &check.check,
        value: &nothing,
        current: None,
        changes: true,
    };
    let (outcome, detail) = crate::hook::script::run(&spec, &call).await;
    let verdict = match outcome {
        StepOutcome::Succeeded => Verdict::Pass,
        StepOutcome::NotApplied | StepOutcome::Retryable => Verdict::Fail,
        _ => Verdict::Inconclusive,
    };
    (verdict, detail)
}
