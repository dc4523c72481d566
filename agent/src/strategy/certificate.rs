//! `overlap` for certificates (`internal-ca-certificate`, `acme-certificate`): stage issues a new
//! leaf and key (from the CA in the agent's store, or by an ACME order) and stages them as `cert`, `key` and `chain`;
//! there is nothing to install on a target (apply records that); verify checks the new
//! certificate by TLS handshakes (in memory for every name, and with the configured endpoint);
//! after promotion the previous certificate stays valid until it expires, so retire revokes
//! nothing; a rollback discards the new one.

use dsops_proto::domain::{Step, StepOutcome};

use super::{
    Context, Step_, Strategy, discard, new_value, not_in_place, pending, promoted, stage_fields,
    store_stage,
};
use crate::certificate::{self, CertificateSpec, Issuer, Request};
use crate::executor::StepResult;
use crate::store::{Fields, Label};

/// The longest an ACME order may take (validation and download included).
const ACME_ORDER_LIMIT: std::time::Duration = std::time::Duration::from_secs(90);

/// A failed ACME call as a step's result: retryable ones back off in the control plane.
fn acme_failure(error: crate::acme::AcmeError) -> StepResult {
    let outcome = if error.retryable { StepOutcome::Retryable } else { StepOutcome::NotApplied };
    let mut result = StepResult::failed(outcome, error.message);
    result.retry_after = error.retry_after;
    result
}

/// The certificate strategy of one variable.
#[derive(Debug)]
pub(crate) struct Certificate<'a> {
    pub(crate) spec: &'a CertificateSpec,
}

impl Certificate<'_> {
    fn request(&self, cx: &Context<'_>) -> Step_<Request> {
        Request::from_config(self.spec, &cx.config)
            .map_err(|why| StepResult::failed(StepOutcome::Refused, why))
    }

    /// The in-memory handshakes of `fields`, as a step's failure when they fail.
    async fn checked(&self, cx: &Context<'_>, fields: &Fields) -> Step_<certificate::Checked> {
        let request = self.request(cx)?;
        certificate::check(fields, &request.names).await.map_err(|why| {
            StepResult::failed(StepOutcome::NotApplied, format!("the new certificate: {why}"))
        })
    }
}

impl Strategy for Certificate<'_> {
    async fn stage(&self, cx: &Context<'_>) -> Step_<StepResult> {
        if cx.job.restore_previous {
            let fields = stage_fields(cx).await?;
            return store_stage(cx, &fields, None).await;
        }
        if let Some((_, fingerprint)) = pending(cx).await? {
            // A retried stage: the certificate issued the first time stays.
            return Ok(StepResult::ok(fingerprint, "the run's certificate is staged"));
        }
        let request = self.request(cx)?;
        let refused = |why: String| StepResult::failed(StepOutcome::Refused, why);
        let credential = self.spec.issuer.credential();
        let store = super::AsyncStore(cx.executor.store(&credential.store).map_err(refused)?);
        let held = store.read(&credential.path, Label::Current).await?;
        let mut renewal = (None, String::new());
        let fields = match &self.spec.issuer {
            Issuer::InternalCa(ca) => {
                let held = held.ok_or_else(|| {
                    refused(format!("the issuing CA {ca} is not in the agent's store"))
                })?;
                certificate::issue(&held, &request, time::OffsetDateTime::now_utc())
                    .map_err(|why| refused(format!("issuing from {ca}: {why}")))?
            }
            Issuer::Acme(acme) => {
                let stored = held.as_ref().and_then(|f| f.get(crate::acme::ACCOUNT_FIELD));
                let (account, created) =
                    crate::acme::account(acme, stored).await.map_err(acme_failure)?;
                if let Some(credentials) = created {
                    store.put(&acme.account.path, crate::acme::ACCOUNT_FIELD, credentials).await?;
                }
                let fields = crate::acme::order(acme, &account, &request, ACME_ORDER_LIMIT)
                    .await
                    .map_err(acme_failure)?;
                renewal = crate::acme::renewal_time(&account, &fields).await;
                fields
            }
        };
        let staged = store_stage(cx, &fields, None).await?;
        let about = certificate::describe(&fields).map_err(refused)?;
        let (renew_at, renewal_note) = renewal;
        let mut result = StepResult::ok(
            staged.fingerprint,
            format!(
                "{}; certificate for {} (serial {}, valid until {}){}{renewal_note}",
                staged.detail,
                request.names.join(", "),
                about.serial,
                about.not_after,
                if renewal_note.is_empty() { "" } else { "; " },
            ),
        );
        result.renew_at = renew_at;
        Ok(result)
    }

    async fn apply(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (_, fingerprint) = new_value(cx).await?;
        let issuer = match self.spec.issuer {
            Issuer::InternalCa(_) => "the internal CA",
            Issuer::Acme(_) => "the ACME CA",
        };
        Ok(StepResult::ok(
            fingerprint,
            format!("issued by {issuer}: valid from issuance, nothing to install on a target"),
        ))
    }

    async fn verify(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (fields, fingerprint) = new_value(cx).await?;
        let about = self.checked(cx, &fields).await?;
        let request = self.request(cx)?;
        let mut detail = format!(
            "TLS handshakes for {} with the new certificate and key, trusting only the chain's root, succeeded",
            request.names.join(", ")
        );
        if let Some(endpoint) = &request.endpoint {
            let served = certificate::handshake(
                endpoint,
                &fields,
                &request.names[0],
                cx.executor.config().target_timeout,
            )
            .await
            .map_err(|why| StepResult::failed(StepOutcome::Retryable, why))?;
            let which = if served == about.sha256 { "the new" } else { "another valid" };
            detail.push_str(&format!("; {endpoint} presents {which} certificate of this CA"));
        }
        Ok(StepResult::ok(fingerprint, detail))
    }

    async fn retire(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let previous = cx.store.read(&cx.entry, Label::Previous).await?;
        let detail = match previous.as_ref().map(certificate::describe) {
            Some(Ok(old)) => format!(
                "nothing revoked: the previous certificate (serial {}) stays valid until {}",
                old.serial, old.not_after
            ),
            _ => "nothing revoked: no previous certificate".to_owned(),
        };
        Ok(StepResult::ok(None, detail))
    }

    async fn rollback(&self, cx: &Context<'_>) -> Step_<StepResult> {
        discard(cx).await
    }

    async fn check(&self, cx: &Context<'_>, checked: Step) -> Step_<StepResult> {
        match checked {
            Step::Retire => Ok(StepResult::ok(None, "nothing to revoke")),
            Step::Rollback => super::check_discarded(cx).await,
            _ => {
                let found = match pending(cx).await? {
                    Some(found) => Some(found),
                    None => promoted(cx).await?,
                };
                let Some((fields, fingerprint)) = found else {
                    return Ok(not_in_place("nothing staged by this run"));
                };
                Ok(match self.checked(cx, &fields).await {
                    Ok(_) => StepResult::ok(fingerprint, "the run's certificate checks out"),
                    Err(failed) => not_in_place(failed.detail),
                })
            }
        }
    }

    async fn value_works(&self, cx: &Context<'_>, fields: &Fields) -> Step_<Result<(), String>> {
        Ok(self.checked(cx, fields).await.map(drop).map_err(|failed| failed.detail))
    }
}
