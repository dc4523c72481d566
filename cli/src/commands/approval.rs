//! `dsops approval list|show|approve|deny` and `dsops review list|close`: the runs waiting for
//! approval, an approver's decision — signed here with the operator's own key over the run, its plan digest and round,
//! the decision, the time and the reason, so the cluster (and later an auditor) can check who
//! decided what on which plan.

use dsops_proto::wire::admin as wire;
use serde::Serialize;

use super::rotation::{short, time};
use crate::args::{ApprovalCommand, Cli, NotificationCommand, OutputFormat, ReviewCommand};
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};
use crate::remote::{Remote, request_id};
use dsops_cli::follow::{self, printable, secret_name};

/// A run waiting for approval, as printed.
#[derive(Debug, Serialize)]
struct ApprovalRow {
    run_id: String,
    secret: String,
    requested_by: String,
    reason: String,
    strategy: String,
    target: String,
    store: String,
    config_version: u64,
    plan_digest: String,
    round: u32,
    requested_at_unix: Option<i64>,
    expires_at_unix: Option<i64>,
    approvals: usize,
    required: u32,
    approvers: Vec<String>,
    state: String,
    decisions: Vec<DecisionRow>,
}

/// One decision, as printed (JSON carries the signature and certificate).
#[derive(Debug, Serialize)]
struct DecisionRow {
    operator: String,
    decision: &'static str,
    reason: String,
    signed_at_unix: Option<i64>,
    recorded_at_unix: Option<i64>,
    signature_hex: String,
    certificate_pem: String,
}

fn row(run: &wire::RunSummary) -> ApprovalRow {
    let approval = run.approval.clone().unwrap_or_default();
    ApprovalRow {
        run_id: run.run_id.clone(),
        secret: secret_name(run),
        requested_by: run.requested_by.clone(),
        reason: run.reason.clone(),
        strategy: run.strategy.clone(),
        target: run.target.clone(),
        store: run.store.clone(),
        config_version: approval.config_version,
        plan_digest: approval.plan_digest.clone(),
        round: approval.round,
        requested_at_unix: run.requested_at.map(|t| t.seconds),
        expires_at_unix: approval.expires_at.map(|t| t.seconds),
        approvals: approval.decisions.iter().filter(|d| d.approve).count(),
        required: approval.required,
        approvers: approval.approvers.clone(),
        state: follow::status(run).name().to_owned(),
        decisions: approval
            .decisions
            .iter()
            .map(|d| DecisionRow {
                operator: d.operator.clone(),
                decision: if d.approve { "approve" } else { "deny" },
                reason: d.reason.clone(),
                signed_at_unix: d.signed_at.map(|t| t.seconds),
                recorded_at_unix: d.recorded_at.map(|t| t.seconds),
                signature_hex: d.signature_hex.clone(),
                certificate_pem: d.certificate_pem.clone(),
            })
            .collect(),
    }
}

/// `dsops approval ...` (a cluster only: the embedded default has no approvers).
pub async fn run(cli: &Cli, command: &ApprovalCommand) -> Result<(), Failure> {
    let remote = Remote::require(cli)?;
    match command {
        ApprovalCommand::List { env } => {
            let env = env.clone().unwrap_or_default();
            let response = remote
                .call("list approvals", |mut c| {
                    let env = env.clone();
                    async move { c.list_approvals(wire::ListApprovalsRequest { env }).await }
                })
                .await?;
            let rows: Vec<ApprovalRow> = response.runs.iter().map(row).collect();
            if cli.output == OutputFormat::Json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                out!("no run awaits approval");
                return Ok(());
            }
            let mut t = table(&[
                "RUN",
                "SECRET",
                "REQUESTER",
                "REASON",
                "PLAN",
                "REQUESTED",
                "EXPIRES",
                "APPROVALS",
            ]);
            let stamp = |s: Option<i64>| s.map(|s| prost_types::Timestamp { seconds: s, nanos: 0 });
            for r in &rows {
                t.add_row(vec![
                    r.run_id.clone(),
                    r.secret.clone(),
                    r.requested_by.clone(),
                    printable(&r.reason).into_owned(),
                    plan(r),
                    short(time(&stamp(r.requested_at_unix))),
                    short(time(&stamp(r.expires_at_unix))),
                    format!("{}/{}", r.approvals, r.required),
                ]);
            }
            print_table(&t);
            Ok(())
        }
        ApprovalCommand::Show { run } => {
            let summary = fetch(&remote, run).await?;
            let r = row(&summary);
            if cli.output == OutputFormat::Json {
                return print_json(&r);
            }
            if summary.approval.is_none() {
                out!("run {run} ({}) needs no approval ({})", r.secret, r.state);
                return Ok(());
            }
            let stamp = |s: Option<i64>| s.map(|s| prost_types::Timestamp { seconds: s, nanos: 0 });
            out!("run        {}", r.run_id);
            out!("secret     {}", r.secret);
            out!("state      {}", r.state);
            out!("requested  {} by {}", short(time(&stamp(r.requested_at_unix))), r.requested_by);
            out!("reason     {}", printable(&r.reason));
            out!("plan       {}", plan(&r));
            out!("digest     {} (round {})", r.plan_digest, r.round);
            out!("approvers  {} of: {}", r.required, r.approvers.join(", "));
            out!("expires    {}", short(time(&stamp(r.expires_at_unix))));
            out!("approvals  {}/{}", r.approvals, r.required);
            for d in &r.decisions {
                out!(
                    "  {} {} at {}{}",
                    d.operator,
                    if d.decision == "approve" { "approved" } else { "denied" },
                    short(time(&stamp(d.recorded_at_unix))),
                    if d.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", printable(&d.reason))
                    }
                );
            }
            Ok(())
        }
        ApprovalCommand::Approve { run, reason } => decide(cli, &remote, run, true, reason).await,
        ApprovalCommand::Deny { run, reason } => {
            if reason.trim().is_empty() {
                return Err(Failure::invalid("a denial needs a reason (--reason TEXT)"));
            }
            decide(cli, &remote, run, false, reason).await
        }
    }
}

/// `strategy → target, store (config vN)`.
fn plan(r: &ApprovalRow) -> String {
    let target = if r.target.is_empty() { "-" } else { r.target.as_str() };
    format!("{} → {target}, {} (config v{})", r.strategy, r.store, r.config_version)
}

async fn fetch(remote: &Remote, run: &str) -> Result<wire::RunSummary, Failure> {
    let response = remote
        .call("get the run", |mut c| {
            let request = wire::GetRunsRequest { run_ids: vec![run.to_owned()], with_steps: false };
            async move { c.get_runs(request).await }
        })
        .await?;
    response
        .runs
        .into_iter()
        .next()
        .ok_or_else(|| Failure::invalid(format!("no run {run} (see `dsops approval list`)")))
}

async fn decide(
    cli: &Cli,
    remote: &Remote,
    run_id: &str,
    approve: bool,
    reason: &str,
) -> Result<(), Failure> {
    let credentials =
        remote.credentials().ok_or_else(|| Failure::invalid("--credentials DIR is required"))?;
    let summary = fetch(remote, run_id).await?;
    let Some(approval) = &summary.approval else {
        return Err(Failure::invalid(format!("run {run_id} needs no approval")));
    };
    let signed_at_ms = dsops_proto::now_ms();
    let bytes = dsops_proto::domain::decision_bytes(
        run_id,
        approval.round,
        &approval.plan_digest,
        approve,
        signed_at_ms,
        reason,
    );
    let signature = dsops_identity::sign_message(&credentials.identity.key_pem, &bytes)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("signing the decision: {e}")))?;
    let request = wire::DecideRequest {
        request_id: request_id(),
        run_id: run_id.to_owned(),
        approve,
        reason: reason.to_owned(),
        plan_digest: approval.plan_digest.clone(),
        round: approval.round,
        signed_at_ms,
        signature_hex: dsops_proto::hex(&signature),
    };
    let response = remote
        .call(if approve { "approve" } else { "deny" }, |mut c| {
            let request = request.clone();
            async move { c.decide(request).await }
        })
        .await?;
    let run = response.run.unwrap_or(summary);
    if cli.output == OutputFormat::Json {
        return print_json(&row(&run));
    }
    let r = row(&run);
    let outcome = match (approve, follow::awaiting_approval(&run)) {
        (false, _) => format!("denied run {run_id} ({}): it ends {}", r.secret, r.state),
        (true, true) => format!(
            "approved run {run_id} ({}): {}/{} approvals; it waits for more",
            r.secret, r.approvals, r.required
        ),
        (true, false) => format!(
            "approved run {run_id} ({}): {}/{} approvals; it starts (follow it with `dsops rotation status --env {}`)",
            r.secret,
            r.approvals,
            r.required,
            run.secret.as_ref().map(|s| s.env.as_str()).unwrap_or_default()
        ),
    };
    out!("{outcome}");
    Ok(())
}

/// A review, as printed.
#[derive(Debug, Serialize)]
struct ReviewRow {
    id: String,
    run_id: String,
    secret: String,
    opened_by: String,
    reason: String,
    opened_at_unix: Option<i64>,
    deadline_unix: Option<i64>,
    overdue: bool,
    closed_by: String,
    closed_at_unix: Option<i64>,
    note: String,
}

fn review_row(r: &wire::Review) -> ReviewRow {
    ReviewRow {
        id: r.id.clone(),
        run_id: r.run_id.clone(),
        secret: r.secret.as_ref().map(|s| format!("{}/{}", s.env, s.key)).unwrap_or_default(),
        opened_by: r.opened_by.clone(),
        reason: r.reason.clone(),
        opened_at_unix: r.opened_at.map(|t| t.seconds),
        deadline_unix: r.deadline.map(|t| t.seconds),
        overdue: r.overdue,
        closed_by: r.closed_by.clone(),
        closed_at_unix: r.closed_at.map(|t| t.seconds),
        note: r.note.clone(),
    }
}

/// `dsops review ...` (a cluster only).
pub async fn review(cli: &Cli, command: &ReviewCommand) -> Result<(), Failure> {
    let remote = Remote::require(cli)?;
    match command {
        ReviewCommand::List { all } => {
            let all = *all;
            let response = remote
                .call("list reviews", |mut c| async move {
                    c.list_reviews(wire::ListReviewsRequest { all }).await
                })
                .await?;
            let rows: Vec<ReviewRow> = response.reviews.iter().map(review_row).collect();
            if cli.output == OutputFormat::Json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                out!("no review is open");
                return Ok(());
            }
            let stamp = |s: Option<i64>| s.map(|s| prost_types::Timestamp { seconds: s, nanos: 0 });
            let mut t = table(&[
                "REVIEW",
                "SECRET",
                "RUN",
                "BROKEN BY",
                "REASON",
                "OPENED",
                "DUE",
                "STATE",
            ]);
            for r in &rows {
                let state = match (r.closed_by.is_empty(), r.overdue) {
                    (false, _) => format!("closed by {}: {}", r.closed_by, printable(&r.note)),
                    (true, true) => "OVERDUE".to_owned(),
                    (true, false) => "open".to_owned(),
                };
                t.add_row(vec![
                    r.id.clone(),
                    r.secret.clone(),
                    r.run_id.clone(),
                    r.opened_by.clone(),
                    printable(&r.reason).into_owned(),
                    short(time(&stamp(r.opened_at_unix))),
                    short(time(&stamp(r.deadline_unix))),
                    state,
                ]);
            }
            print_table(&t);
            Ok(())
        }
        ReviewCommand::Close { id, note } => {
            if note.trim().is_empty() {
                return Err(Failure::invalid("a review closes with a note (--note TEXT)"));
            }
            let request_id = request_id();
            let response = remote
                .call("close review", |mut c| {
                    let request = wire::CloseReviewRequest {
                        request_id: request_id.clone(),
                        review_id: id.clone(),
                        note: note.clone(),
                    };
                    async move { c.close_review(request).await }
                })
                .await?;
            let review = response.review.map(|r| review_row(&r));
            if cli.output == OutputFormat::Json {
                return print_json(&review);
            }
            out!("closed review {id}");
            Ok(())
        }
    }
}

/// A delivery, as printed.
#[derive(Debug, Serialize)]
struct NotificationRow {
    id: String,
    event_id: String,
    action: String,
    subject: String,
    channel: String,
    address: String,
    segment: String,
    status: String,
    attempts: u32,
    at_unix: Option<i64>,
    finished_at_unix: Option<i64>,
    detail: String,
    last_error: String,
}

/// `dsops notification list` (a cluster only).
pub async fn notifications(cli: &Cli, command: &NotificationCommand) -> Result<(), Failure> {
    let remote = Remote::require(cli)?;
    let NotificationCommand::List { failed, limit } = command;
    let (failed, limit) = (*failed, *limit);
    let response = remote
        .call("list notifications", |mut c| async move {
            c.list_notifications(wire::ListNotificationsRequest { failed, limit }).await
        })
        .await?;
    let rows: Vec<NotificationRow> = response
        .notifications
        .iter()
        .map(|n| NotificationRow {
            id: n.id.clone(),
            event_id: n.event_id.clone(),
            action: n.action.clone(),
            subject: n.subject.clone(),
            channel: n.channel.clone(),
            address: n.address.clone(),
            segment: n.segment.clone(),
            status: n.status.clone(),
            attempts: n.attempts,
            at_unix: n.at.map(|t| t.seconds),
            finished_at_unix: n.finished_at.map(|t| t.seconds),
            detail: n.detail.clone(),
            last_error: n.last_error.clone(),
        })
        .collect();
    if cli.output == OutputFormat::Json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        out!("{}", if failed { "no dead letter" } else { "no notification" });
        return Ok(());
    }
    let stamp = |s: Option<i64>| s.map(|s| prost_types::Timestamp { seconds: s, nanos: 0 });
    let mut t = table(&["ID", "EVENT", "SUBJECT", "CHANNEL", "AT", "STATUS", "TRIES", "ERROR"]);
    for r in &rows {
        let channel = if r.address.is_empty() {
            r.channel.clone()
        } else {
            format!("{} ({})", r.channel, r.address)
        };
        t.add_row(vec![
            r.id.clone(),
            r.action.clone(),
            r.subject.clone(),
            channel,
            short(time(&stamp(r.at_unix))),
            r.status.clone(),
            r.attempts.to_string(),
            printable(&r.last_error).into_owned(),
        ]);
    }
    print_table(&t);
    Ok(())
}
