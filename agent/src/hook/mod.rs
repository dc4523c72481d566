//! User code that does the target's part of a rotation: the `script` strategy runs a program, the
//! `webhook` strategy calls an HTTPS endpoint. Both speak one JSON contract (`docs/rotation.md`):
//!
//! Request: `{"version": 1, "step": "apply"|"verify"|"retire"|"rollback"|"check",
//! "checked_step": "apply"|... (check only), "run_id", "generation", "attempt", "env", "key",
//! "value": the run's new value, "current": the current value or null}`.
//! Answer: `{"outcome": "succeeded"|"not_applied"|"retryable"|"indeterminate", "detail": "..."}`.
//!
//! Only a hook named in the agent's own configuration is ever called: the control plane names a
//! service, never a command or an address. A hook that cannot be reached before the request is
//! sent is retryable; one that fails to answer after it was sent is *indeterminate* for steps that
//! change things (the control plane then checks) and retryable for those that only look. Every
//! form of a value in a detail (exact, base64, hex, URL-encoded) is replaced by `***`.

pub mod script;
pub mod webhook;

use dsops_proto::domain::StepOutcome;
use zeroize::Zeroizing;

use crate::secret::SecretValue;

pub use script::ScriptSpec;
pub use webhook::WebhookSpec;

/// A hook service, as the agent's configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookSpec {
    /// A program run once per step.
    Script(ScriptSpec),
    /// An HTTPS endpoint called once per step.
    Webhook(WebhookSpec),
}

/// One call of a hook.
#[derive(Debug)]
pub struct HookCall<'a> {
    /// The step.
    pub step: &'a str,
    /// For a check: the step checked.
    pub checked_step: Option<&'a str>,
    /// The run.
    pub run_id: &'a str,
    /// Its generation.
    pub generation: u64,
    /// The attempt of this step, from 1 (a retry has the next one).
    pub attempt: u32,
    /// The environment.
    pub env: &'a str,
    /// The variable.
    pub key: &'a str,
    /// The run's new value.
    pub value: &'a SecretValue,
    /// The current value, if any.
    pub current: Option<&'a SecretValue>,
    /// Whether the step changes things (a failure to answer is then indeterminate).
    pub changes: bool,
}

impl HookCall<'_> {
    /// The outcome when the hook took the request and gave no usable answer.
    pub fn unknown(&self) -> StepOutcome {
        if self.changes { StepOutcome::Indeterminate } else { StepOutcome::Retryable }
    }

    /// The request document, in memory that is wiped when dropped.
    pub fn request(&self) -> Zeroizing<String> {
        let request = serde_json::json!({
            "version": 1,
            "step": self.step,
            "checked_step": self.checked_step,
            "run_id": self.run_id,
            "generation": self.generation,
            "attempt": self.attempt,
            "env": self.env,
            "key": self.key,
            "value": self.value.expose(),
            "current": self.current.map(SecretValue::expose),
        });
        Zeroizing::new(request.to_string())
    }

    /// Reads the hook's answer; `who` names the hook in details.
    pub fn answer(&self, who: &str, output: &[u8]) -> (StepOutcome, String) {
        let answer: serde_json::Value = match serde_json::from_slice(output) {
            Ok(answer) => answer,
            Err(_) => return (self.unknown(), format!("{who} did not answer a JSON object")),
        };
        let detail = answer.get("detail").and_then(|d| d.as_str()).unwrap_or_default();
        let detail = self.redact(detail);
        match answer.get("outcome").and_then(|o| o.as_str()).and_then(outcome) {
            Some(outcome) => (outcome, detail),
            None => (self.unknown(), format!("{who} answered no known outcome")),
        }
    }

    /// `text` with every form of the call's values replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        crate::redact::redact(text, [Some(self.value), self.current].into_iter().flatten())
    }
}

fn outcome(text: &str) -> Option<StepOutcome> {
    Some(match text {
        "succeeded" => StepOutcome::Succeeded,
        "not_applied" => StepOutcome::NotApplied,
        "retryable" => StepOutcome::Retryable,
        "indeterminate" => StepOutcome::Indeterminate,
        _ => return None,
    })
}

/// Calls `spec` for `call`: its outcome and a detail safe to report. `auth` is the webhook's
/// signing secret, read from the agent's store.
pub async fn call(
    spec: &HookSpec,
    call: &HookCall<'_>,
    auth: Option<&SecretValue>,
) -> (StepOutcome, String) {
    match spec {
        HookSpec::Script(spec) => script::run(spec, call).await,
        HookSpec::Webhook(spec) => webhook::post(spec, call, auth).await,
    }
}

/// An `apply` call of run `run-1` for `value` (unit tests).
#[cfg(test)]
pub(crate) fn test_call(value: &SecretValue, changes: bool) -> HookCall<'_> {
    HookCall {
        step: "apply",
        checked_step: None,
        run_id: "run-1",
        generation: 1,
        attempt: 1,
        env: "dev",
        key: "K",
        value,
        current: None,
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_and_values_redacted() {
        let value = SecretValue::new("s3cret-value".to_owned());
        let c = test_call(&value, true);
        assert_eq!(
            c.answer("hook", br#"{"outcome":"succeeded","detail":"ok"}"#),
            (StepOutcome::Succeeded, "ok".to_owned())
        );
        assert_eq!(
            c.answer("hook", br#"{"outcome":"not_applied","detail":"saw s3cret-value"}"#),
            (StepOutcome::NotApplied, "saw ***".to_owned())
        );
        // Encoded forms too: base64 of the value.
        assert_eq!(
            c.answer("hook", br#"{"outcome":"not_applied","detail":"saw czNjcmV0LXZhbHVl"}"#),
            (StepOutcome::NotApplied, "saw ***".to_owned())
        );
        assert_eq!(c.answer("hook", b"nope").0, StepOutcome::Indeterminate);
        assert_eq!(c.answer("hook", br#"{"outcome":"maybe"}"#).0, StepOutcome::Indeterminate);
        assert_eq!(test_call(&value, false).answer("hook", b"[]").0, StepOutcome::Retryable);
        let request: serde_json::Value = serde_json::from_str(&c.request()).unwrap();
        assert_eq!(request["value"], "s3cret-value");
        assert_eq!(request["current"], serde_json::Value::Null);
    }
}
