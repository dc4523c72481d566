//! `dsops plan` with a cluster: could each secret of an environment rotate now? The agents of
//! each secret's segment look (credential, reach, privilege, users, two-key grants; see
//! `dsops_agent::preflight`); the configuration says whether generated values are safe in a
//! URL. Nothing is changed and nothing is written to the log.

use std::time::Duration;

use dsops_config::config::{Loaded, ResolvedSecret};
use dsops_config::value_format::ValueFormat;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::common::PreflightCheck;

use super::spec;
use super::start::{RotationError, current_config, failed};
use crate::control::ControlPlane;

/// How long an agent has to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

fn finding(name: &str, ok: bool, detail: impl Into<String>) -> PreflightCheck {
    PreflightCheck { name: name.to_owned(), ok, detail: detail.into(), warning: false }
}

/// The users a rotation of `item` changes.
fn usernames(item: &ResolvedSecret<'_>) -> Vec<String> {
    let config = item.secret.rotation.as_ref().map(|r| &r.config);
    let text = |key: &str| config.and_then(|c| c.get(key));
    match (text("username"), text("usernames")) {
        (Some(user), _) => user.as_str().map(str::to_owned).into_iter().collect(),
        (None, Some(users)) => users
            .as_array()
            .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Whether generated values of `item` are safe in a URL (a warning, not a failure): the
/// catalog's format narrowed by the variable's `charset`, as the agent generates them.
fn format_check(item: &ResolvedSecret<'_>) -> Option<PreflightCheck> {
    let rotation = item.secret.rotation.as_ref()?;
    let charset = rotation.config.get("charset").and_then(serde_json::Value::as_str);
    let pattern = item.kind.and_then(|k| k.constraints.as_ref()?.format.clone());
    if charset.is_none() && pattern.is_none() {
        return None;
    }
    let format = ValueFormat::parse(pattern.as_deref()).and_then(|f| match charset {
        Some(charset) => f.with_charset(charset),
        None => Ok(f),
    });
    let shown = match (charset, pattern.as_deref()) {
        (Some(charset), Some(pattern)) => format!("{pattern} narrowed to {charset}"),
        (Some(charset), None) => format!("charset {charset}"),
        (None, Some(pattern)) => pattern.to_owned(),
        (None, None) => String::new(),
    };
    let (safe, detail) = match format {
        Ok(format) if format.uri_safe() => {
            (true, format!("values of {shown} need no escaping in a URL"))
        }
        Ok(_) => (
            false,
            format!("values of {shown} may hold characters a URL or connection string must escape"),
        ),
        Err(e) => (false, e.to_string()),
    };
    Some(PreflightCheck { name: "format".into(), ok: safe, detail, warning: true })
}

async fn one(
    control: &ControlPlane,
    loaded: &Loaded,
    item: &ResolvedSecret<'_>,
) -> wire::SecretPreflight {
    let mut checks: Vec<PreflightCheck> = format_check(item).into_iter().collect();
    let mut agent_id = String::new();
    let service =
        item.service.filter(|s| matches!(s.service_type.as_str(), "postgresql" | "mysql"));
    if let (Some(service), Some((strategy, _))) = (service, item.strategy) {
        let segment = spec::segment_of(loaded, item);
        let request = dsops_proto::wire::agent::Preflight {
            id: format!("pf-{}", dsops_proto::hex(&rand::random::<[u8; 16]>())),
            service: service.name.clone(),
            strategy: strategy.to_string(),
            usernames: usernames(item),
        };
        let id = request.id.clone();
        match control.agents().send_preflight(&segment, request) {
            None => checks.push(finding(
                "agent",
                false,
                format!("no agent of segment {segment} is connected to the leader"),
            )),
            Some((agent, answer)) => {
                agent_id = agent;
                match tokio::time::timeout(ANSWER_WITHIN, answer).await {
                    Ok(Ok(result)) => checks.extend(result.checks),
                    _ => {
                        control.agents().preflight_given_up(&id);
                        checks.push(finding(
                            "agent",
                            false,
                            format!("agent {agent_id} did not answer within {ANSWER_WITHIN:?}"),
                        ));
                    }
                }
            }
        }
    }
    wire::SecretPreflight { key: item.secret.key.clone(), agent_id, checks }
}

/// The preflight of every rotating secret of `env`, checked concurrently.
pub(crate) async fn preflight(
    control: &ControlPlane,
    env: &str,
) -> Result<wire::PreflightResponse, RotationError> {
    let (_, loaded) = current_config(control).await?;
    if !loaded.config.envs.contains_key(env) {
        return Err(failed(spec::unknown_env(&loaded, env)));
    }
    let items: Vec<ResolvedSecret<'_>> = loaded
        .resolved()
        .into_iter()
        .filter(|i| i.secret.env == env && i.strategy.is_some())
        .collect();
    let secrets =
        futures::future::join_all(items.iter().map(|item| one(control, &loaded, item))).await;
    Ok(wire::PreflightResponse { secrets })
}
