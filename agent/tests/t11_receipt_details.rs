//! A receipt's detail never carries a value: text from anywhere but the agent's own code (here
//! an error quoting the job's configuration) is searched for the values the job could reach, and
//! they are replaced by `***`; the agent's own texts (literals, names and numbers) go out as
//! they are. (That the search is skipped for them shows in the profile, not here.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

mod common;

use std::time::{Duration, SystemTime};

use dsops_agent::secret::SecretValue;
use dsops_agent::store::SecretStore;
use dsops_proto::domain::{Job, StepOutcome};

const CANARY: &str = "canary-value-0123456789";

fn job(run: &str, config_json: &str) -> Job {
    common::stage_job(run, config_json, SystemTime::now() + Duration::from_secs(120))
}

#[tokio::test]
async fn foreign_text_is_searched_for_values_and_own_text_is_sent_as_it_is() {
    let common::Local { executor, store, dir: _dir } = common::local_agent();
    store.put("app/key", "value", &SecretValue::new(CANARY.to_owned())).unwrap();

    // The error quotes the configuration, which (as a hostile or careless one may) holds the
    // current value.
    let quoted = format!(r#"{{"charset": "{CANARY}"}}"#);
    let refused = executor.execute(&job("run-0123456789abcdef0123", &quoted)).await;
    assert_eq!(refused.body.outcome, StepOutcome::Refused, "{}", refused.body.detail);
    assert!(!refused.body.detail.contains(CANARY), "{}", refused.body.detail);
    assert!(refused.body.detail.contains("format \"***\""), "{}", refused.body.detail);

    let staged = executor.execute(&job("run-0123456789abcdef0124", "{}")).await;
    assert_eq!(staged.body.outcome, StepOutcome::Succeeded, "{}", staged.body.detail);
    assert_eq!(staged.body.detail, "staged version 2");
}
