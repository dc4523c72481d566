//! The endpoints of the reports API (see `docs/openapi/reports-v1.json`).

use std::collections::HashMap;

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use dsops_proto::ErrorCode;
use dsops_reports::{Format, Standard};
use dsops_state::{RunPhase, secret_id};
use serde_json::{Value, json};

use super::{Access, ApiError, OPENAPI, Peer, authenticate};
use crate::control::ControlPlane;

type Params = Query<HashMap<String, String>>;

/// The routes.
pub(super) fn router(control: ControlPlane) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .route("/v1/history", get(history))
        .route("/v1/audit", get(audit))
        .route("/v1/compliance/{standard}", get(compliance))
        .route("/v1/evidence", get(evidence))
        .route("/v1/approvals", get(approvals))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(ErrorCode::NotFound, "no such endpoint; see /v1/openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::InvalidArgument, "the reports API is read-only: use GET")
        })
        .with_state(control)
}

fn body(media_type: &'static str, bytes: Vec<u8>) -> Response {
    let mut response = (StatusCode::OK, bytes).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    response
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str)
}

fn required<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    param(q, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{name}: required")))
}

/// A number from `min` to `max`, `default` when absent.
fn number(
    q: &HashMap<String, String>,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match param(q, name) {
        None => Ok(default),
        Some(text) => {
            text.parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| {
                ApiError::invalid(format!(
                    "{name}: a whole number from {min} to {max}, got {text:?}"
                ))
            })
        }
    }
}

/// A date (`2026-12-01`; as an end, the whole day) or an RFC 3339 time, as ms since the epoch.
fn time(q: &HashMap<String, String>, name: &str, end: bool) -> Result<Option<u64>, ApiError> {
    let Some(text) = param(q, name) else { return Ok(None) };
    let parsed =
        DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
            let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            let day = if end { day.succ_opt()? } else { day };
            Some(day.and_hms_opt(0, 0, 0)?.and_utc())
        });
    match parsed {
        Some(t) if t.timestamp_millis() >= 0 => Ok(Some(t.timestamp_millis() as u64)),
        _ => Err(ApiError::invalid(format!(
            "{name}: a date (2026-12-01) or an RFC 3339 time, got {text:?}"
        ))),
    }
}

/// `from`/`to` with defaults (the last `days` days up to now), checked.
fn period(q: &HashMap<String, String>, days: u64) -> Result<(u64, u64), ApiError> {
    let to = time(q, "to", true)?.unwrap_or_else(dsops_proto::now_ms);
    let from = time(q, "from", false)?.unwrap_or(to.saturating_sub(days * 86_400_000));
    if from >= to {
        return Err(ApiError::invalid("from: must be before to"));
    }
    Ok((from, to))
}

fn format(q: &HashMap<String, String>, allowed: &[&str]) -> Result<Format, ApiError> {
    let name = param(q, "format").unwrap_or("json");
    if !allowed.contains(&name) {
        return Err(ApiError::invalid(format!(
            "format: one of {}, got {name:?}",
            allowed.join(", ")
        )));
    }
    Format::parse(name).map_err(ApiError::invalid)
}

async fn access(
    control: &ControlPlane,
    peer: &Peer,
    headers: &HeaderMap,
) -> Result<Access, ApiError> {
    authenticate(control, peer, headers).await
}

/// Liveness: the process serves. No credentials: it says nothing but that.
async fn healthz() -> Response {
    body("application/json", br#"{"status":"ok"}"#.to_vec())
}

/// Readiness: this node knows the cluster's leader (and so can answer reads and forward
/// writes). No credentials.
async fn readyz(State(control): State<ControlPlane>) -> Response {
    match control.leader() {
        Some((leader, _)) => body(
            "application/json",
            serde_json::json!({ "status": "ready", "node": control.node_id(), "leader": leader })
                .to_string()
                .into_bytes(),
        ),
        None => {
            ApiError::new(ErrorCode::Unavailable, "this node knows no leader yet").into_response()
        }
    }
}

async fn openapi() -> Response {
    body("application/json", OPENAPI.as_bytes().to_vec())
}

fn csv(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Vec<u8> {
    let mut out = String::new();
    let line = |out: &mut String, fields: Vec<String>| {
        let fields: Vec<String> = fields.iter().map(|f| dsops_reports::csv::field(f)).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    };
    line(&mut out, header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(&mut out, row);
    }
    out.into_bytes()
}

fn rfc3339(ms: u64) -> String {
    dsops_reports::build::rfc3339(ms)
}

async fn status(
    State(control): State<ControlPlane>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let access = access(&control, &peer, &headers).await?;
    let env = required(&q, "env")?;
    access.check_env(env)?;
    let format = format(&q, &["json", "csv"])?;
    let response = crate::rotation::report::status_all(&control, env)
        .await
        .map_err(|e| ApiError::from(e.to_status()))?;
    let time = |t: &Option<prost_types::Timestamp>| {
        t.as_ref().map(|t| rfc3339((t.seconds.max(0) as u64) * 1000))
    };
    let rows: Vec<Value> = response
        .secrets
        .iter()
        .map(|s| {
            json!({
                "key": s.secret.as_ref().map(|k| k.key.clone()).unwrap_or_default(),
                "service_type": s.service_type,
                "strategy": s.strategy,
                "status": s.status,
                "last_rotated": time(&s.last_rotated),
                "next_due": time(&s.next_due),
                "generation": s.generation,
                "active_run": s.active_run,
                "review": s.review,
            })
        })
        .collect();
    if format == Format::Csv {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let header = [
            "key",
            "service_type",
            "strategy",
            "status",
            "last_rotated",
            "next_due",
            "generation",
            "active_run",
            "review",
        ];
        let bytes =
            csv(&header, rows.iter().map(|r| header.iter().map(|h| text(&r[*h])).collect()));
        return Ok(body("text/csv; charset=utf-8", bytes));
    }
    Ok(Json(json!({ "env": env, "secrets": rows })).into_response())
}

async fn history(
    State(control): State<ControlPlane>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let access = access(&control, &peer, &headers).await?;
    let env = required(&q, "env")?.to_owned();
    let key = required(&q, "key")?.to_owned();
    access.check_env(&env)?;
    let limit = number(&q, "limit", 20, 1, 100)? as usize;
    let cursor = number(&q, "cursor", 0, 0, 1_000_000)? as usize;
    let page = control
        .read_local(move |s| {
            let record = s.secrets.get(&secret_id(&env, &key))?;
            let ids: Vec<&String> = record.history.iter().rev().collect();
            let runs: Vec<Value> = ids
                .iter()
                .skip(cursor)
                .take(limit)
                .filter_map(|id| s.runs.get(*id))
                .map(|run| {
                    let receipts: Vec<Value> = run
                        .receipts
                        .iter()
                        .map(|r| {
                            json!({
                                "step": r.step.name(),
                                "attempt": r.attempt,
                                "agent": r.agent_id,
                                "outcome": r.outcome.name(),
                                "at": rfc3339(r.at_ms),
                                "body_sha256": dsops_proto::hex_decode(&r.body_hex)
                                    .map(|b| dsops_reports::build::sha256_hex(&b)),
                            })
                        })
                        .collect();
                    json!({
                        "run": run.id,
                        "phase": run.phase.name(),
                        "generation": run.generation,
                        "requested_by": run.requested_by,
                        "reason": run.reason,
                        "requested_at": rfc3339(run.requested_at_ms),
                        "finished_at": run.finished_at_ms.map(rfc3339),
                        "receipts": receipts,
                    })
                })
                .collect();
            let next = (cursor + limit < ids.len()).then(|| (cursor + limit).to_string());
            Some((runs, next))
        })
        .await;
    let (runs, next) =
        page.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such secret has run"))?;
    Ok(Json(json!({ "runs": runs, "next_cursor": next })).into_response())
}

async fn audit(
    State(control): State<ControlPlane>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    const PAGE: usize = 1_000;
    const MAX_PAGES: usize = 10;
    let access = access(&control, &peer, &headers).await?;
    let env = access.require_env(param(&q, "env"))?;
    let (from, to) = period(&q, 1)?;
    let limit = number(&q, "limit", 100, 1, 1_000)? as usize;
    let format = format(&q, &["json", "csv"])?;
    let unavailable = |e: String| ApiError::new(ErrorCode::Unavailable, e);
    let mut after = match param(&q, "cursor") {
        Some(_) => number(&q, "cursor", 0, 0, u64::MAX)?,
        None => match control.audit_seq_at(from).map_err(unavailable)? {
            Some(first) => first.saturating_sub(1),
            None => u64::MAX,
        },
    };
    let prefix = env.map(|e| format!("{e}/"));
    let mut events = Vec::new();
    let mut done = after == u64::MAX;
    for _ in 0..MAX_PAGES {
        if done || events.len() >= limit {
            break;
        }
        let page = control.audit_history(after, PAGE).map_err(unavailable)?;
        for event in &page.events {
            if event.at_ms >= to {
                done = true;
                break;
            }
            after = event.seq;
            if event.at_ms >= from
                && prefix.as_ref().is_none_or(|p| event.subject.starts_with(p.as_str()))
            {
                events.push(event.clone());
                if events.len() >= limit {
                    break;
                }
            }
        }
        // A full page of results may leave events of this batch unread: not done then.
        if events.len() < limit && page.events.len() < PAGE {
            done = true;
        }
    }
    let next = (!done).then(|| after.to_string());
    if format == Format::Csv {
        let header = ["seq", "at", "actor", "action", "subject", "detail", "prev_hash", "hash"];
        let rows = events.iter().map(|e| {
            vec![
                e.seq.to_string(),
                rfc3339(e.at_ms),
                e.actor.clone(),
                e.action.clone(),
                e.subject.clone(),
                e.detail.clone(),
                e.prev_hash.clone(),
                e.hash.clone(),
            ]
        });
        return Ok(body("text/csv; charset=utf-8", csv(&header, rows)));
    }
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq, "at": rfc3339(e.at_ms), "actor": e.actor, "action": e.action,
                "subject": e.subject, "detail": e.detail, "prev_hash": e.prev_hash, "hash": e.hash,
            })
        })
        .collect();
    Ok(Json(json!({ "events": events, "next_cursor": next })).into_response())
}

async fn compliance(
    State(control): State<ControlPlane>,
    Extension(peer): Extension<Peer>,
    Path(standard): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let access = access(&control, &peer, &headers).await?;
    let standard = Standard::parse(&standard).map_err(|e| ApiError::new(ErrorCode::NotFound, e))?;
    let env = required(&q, "env")?;
    access.check_env(env)?;
    let (from, to) = period(&q, 90)?;
    let format = format(&q, &["json", "csv", "html", "pdf"])?;
    let table = param(&q, "table").unwrap_or("population").to_owned();
    if !dsops_reports::csv::TABLES.contains(&table.as_str()) {
        return Err(ApiError::invalid(format!(
            "table: one of {}",
            dsops_reports::csv::TABLES.join(", ")
        )));
    }
    let sample = match param(&q, "sample") {
        Some(_) => Some((
            number(&q, "sample", 0, 1, 100_000)? as usize,
            number(&q, "seed", 0, 0, u64::MAX)?,
        )),
        None => None,
    };
    let report = crate::rotation::compliance::report(&control, standard, env, from, to, sample)
        .await
        .map_err(|e| ApiError::from(e.to_status()))?;
    let bytes = tokio::task::spawn_blocking(move || dsops_reports::render(&report, format, &table))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| ApiError::new(ErrorCode::Internal, e))?;
    Ok(body(format.media_type(), bytes))
}

async fn evidence(
    State(control): State<ControlPlane>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let access = access(&control, &peer, &headers).await?;
    let env = access.require_env(param(&q, "env"))?.unwrap_or_default();
    let (from, to) = period(&q, 1)?;
    let bundle = crate::node::admin_evidence::export(&control, &access.who, env, from, to).await?;
    let mut response = body("application/zip", bundle);
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"dsops-evidence.zip\""),
    );
    Ok(response)
}

async fn approvals(
    State(control): State<ControlPlane>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let access = access(&control, &peer, &headers).await?;
    let env = access.require_env(param(&q, "env"))?.map(str::to_owned);
    let scope = access.envs.clone();
    let pending = control
        .read_local(move |s| {
            s.active_runs
                .iter()
                .filter_map(|id| s.runs.get(id))
                .filter(|r| r.phase == RunPhase::AwaitingApproval)
                .filter(|r| env.as_ref().is_none_or(|e| &r.env == e))
                .filter(|r| scope.as_ref().is_none_or(|envs| envs.contains(&r.env)))
                .map(|run| {
                    let approval = run.approval.as_ref();
                    let decisions: Vec<Value> = approval
                        .map(|a| a.decisions.iter().map(|d| json!({ "operator": d.operator, "approve": d.approve, "at": rfc3339(d.recorded_at_ms) })).collect())
                        .unwrap_or_default();
                    json!({
                        "run": run.id, "env": run.env, "key": run.key,
                        "requested_by": run.requested_by, "reason": run.reason,
                        "requested_at": rfc3339(run.requested_at_ms),
                        "expires_at": approval.map(|a| rfc3339(a.expires_at_ms)),
                        "required": run.spec.approval.as_ref().map_or(0, |a| a.required),
                        "plan_digest": approval.map(|a| a.plan_digest.clone()),
                        "decisions": decisions,
                    })
                })
                .collect::<Vec<Value>>()
        })
        .await;
    Ok(Json(json!({ "approvals": pending })).into_response())
}

async fn metrics(
    State(control): State<ControlPlane>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let access = access(&control, &peer, &headers).await?;
    let text = crate::metrics::render(&control, access.envs.as_ref()).await;
    Ok(body("text/plain; version=0.0.4; charset=utf-8", text.into_bytes()))
}
