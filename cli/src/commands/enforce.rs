//! `dsops rotation enforce --policy NAME [--env ENV]`: every secret in the policy's scope against
//! its rules — from the configuration (schedule, strategy, approval, length, charset, a rotation
//! at all) and from the control plane (a last rotation older than `maxAge` is overdue). A table
//! or JSON; exit 1 when anything violates it.

use chrono::Utc;
use dsops_config::config::enforce::{Violation, violations};
use serde::Serialize;

use super::rotation::time;
use crate::args::{Cli, OutputFormat};
use crate::backend::Backend;
use crate::context::require_config;
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};

/// Runs `dsops rotation enforce`.
pub async fn run(cli: &Cli, policy: &str, env: Option<&str>) -> Result<(), Failure> {
    let loaded = require_config(cli)?;
    let found = dsops_config::config::enforce::find_policy(&loaded.config, &loaded.catalog, policy);
    let Some(rules) = found.as_ref() else {
        let names = dsops_config::config::enforce::policy_names(&loaded.config, &loaded.catalog);
        let hint = dsops_config::document::suggest(policy, names.iter().copied())
            .map(|h| format!("; did you mean {h:?}?"))
            .unwrap_or_else(|| format!(" (policies: {})", names.join(", ")));
        return Err(Failure::invalid(format!(
            "no policy {policy:?} in dsops.yaml `policies` or in the catalog (a RotationPolicy with spec.requirements){hint}"
        )));
    };
    if let Some(env) = env
        && !loaded.config.envs.contains_key(env)
    {
        return Err(Failure::invalid(format!("environment {env:?} is not in the configuration")));
    }
    let now = Utc::now();
    let resolved = loaded.resolved();
    let in_scope: Vec<_> = resolved
        .iter()
        .filter(|i| rules.covers(&i.secret.env) && env.is_none_or(|e| e == i.secret.env))
        .collect();
    let mut found: Vec<Violation> =
        in_scope.iter().flat_map(|item| violations(rules, item, now)).collect();
    // Ages, as the control plane recorded them.
    if let Some(max_age) = rules.max_age {
        let envs: std::collections::BTreeSet<&str> =
            in_scope.iter().map(|i| i.secret.env.as_str()).collect();
        let backend = Backend::open(cli).await?;
        let limit = chrono::TimeDelta::seconds(max_age.as_secs() as i64);
        let mut ages = Ok(());
        for env in envs {
            match backend.status(env).await {
                Ok(status) => {
                    for s in &status.secrets {
                        let key = s.secret.as_ref().map(|k| k.key.as_str()).unwrap_or_default();
                        // A secret dsops does not rotate has no age here (requireRotation
                        // says so).
                        let rotates = in_scope.iter().any(|i| {
                            i.secret.env == env && i.secret.key == key && i.strategy.is_some()
                        });
                        if !rotates {
                            continue;
                        }
                        let age = time(&s.last_rotated).map(|t| now - t);
                        let actual = match age {
                            Some(age) if age <= limit => continue,
                            Some(age) => format!("last rotated {} days ago", age.num_days()),
                            None => "never rotated by dsops".to_owned(),
                        };
                        found.push(Violation {
                            secret: format!("{env}/{key}"),
                            rule: "maxAge",
                            required: format!("rotated within {} days", limit.num_days()),
                            actual,
                        });
                    }
                }
                Err(error) => {
                    ages = Err(error);
                    break;
                }
            }
        }
        backend.close().await;
        ages?;
    }
    found.sort_by(|a, b| (&a.secret, a.rule).cmp(&(&b.secret, b.rule)));
    if cli.output == OutputFormat::Json {
        #[derive(Serialize)]
        struct Report<'a> {
            policy: &'a str,
            checked: usize,
            violations: &'a [Violation],
        }
        print_json(&Report { policy, checked: in_scope.len(), violations: &found })?;
    } else if found.is_empty() {
        out!("{} secret(s) checked against policy {policy}: no violation", in_scope.len());
    } else {
        let mut t = table(&["SECRET", "RULE", "REQUIRED", "ACTUAL"]);
        for v in &found {
            t.add_row(vec![
                v.secret.clone(),
                v.rule.to_owned(),
                v.required.clone(),
                v.actual.clone(),
            ]);
        }
        print_table(&t);
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "{} violation(s) of policy {policy} in {} secret(s) checked",
            found.len(),
            in_scope.len()
        )))
    }
}
