//! `/metrics`: the node's view in the Prometheus text format (0.0.4), with `# HELP` and
//! `# TYPE` on each family, which `promtool check metrics` lints clean.
//!
//! Per-secret series carry `env`, `key` and `service` labels only (never a run id or a value),
//! so their number is bounded by the configuration, and capped at [`MAX_SECRET_SERIES`].
//! Counters of ended runs live in the replicated state (every node reports the same totals,
//! and they survive restarts); agent sessions and leader changes are this node's own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use dsops_state::{DURATION_BUCKETS_S, DeliveryStatus, RunPhase, secret_id};

use crate::control::ControlPlane;
use crate::rotation::spec;

/// The most secrets given per-secret series (the rest are counted in
/// `dsops_metrics_secrets_omitted`).
pub const MAX_SECRET_SERIES: usize = 50_000;

/// A label value escaped for the text format.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> =
                labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
            let _ = write!(self.0, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// What `/metrics` shows, limited to the environments in `envs` (all when `None`).
pub async fn render(control: &ControlPlane, envs: Option<&BTreeSet<String>>) -> String {
    let loaded = crate::rotation::start::applied_config(control).await.ok().flatten();
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis().max(0) as u64;
    let in_scope = |env: &str| envs.is_none_or(|e| e.contains(env));
    let mut out = Text(String::new());
    let (secrets, counters, approval, quarantined, in_flight, backlog) = control
        .read_local(|s| {
            let mut rows = Vec::new();
            if let Some((_, loaded)) = &loaded {
                for item in loaded.resolved().into_iter().filter(|r| in_scope(&r.secret.env)) {
                    let record = s.secrets.get(&secret_id(&item.secret.env, &item.secret.key));
                    let last = record.and_then(|r| r.last_rotated_at_ms);
                    let due = spec::next_due(&item, record, now)
                        .map(|d| d.timestamp_millis().max(0) as u64);
                    let service = item
                        .secret
                        .service
                        .as_ref()
                        .map(|s| s.service.clone())
                        .unwrap_or_else(|| "-".to_owned());
                    let quarantined = record.is_some_and(|r| {
                        r.active_run.is_none() && r.last_phase == Some(RunPhase::Quarantined)
                    });
                    rows.push((
                        item.secret.env.clone(),
                        item.secret.key.clone(),
                        service,
                        last,
                        due,
                        item.strategy.is_some(),
                        quarantined,
                    ));
                }
            }
            let mut approval: BTreeMap<String, u64> = BTreeMap::new();
            let mut in_flight: BTreeMap<String, u64> = BTreeMap::new();
            for run in s.active_runs.iter().filter_map(|id| s.runs.get(id)) {
                if !in_scope(&run.env) {
                    continue;
                }
                *in_flight.entry(run.env.clone()).or_default() += 1;
                if run.phase == RunPhase::AwaitingApproval {
                    *approval.entry(run.env.clone()).or_default() += 1;
                }
            }
            let mut quarantined: BTreeMap<String, u64> = BTreeMap::new();
            for row in rows.iter().filter(|r| r.6) {
                *quarantined.entry(row.0.clone()).or_default() += 1;
            }
            let backlog = s.outbox.values().filter(|e| e.status == DeliveryStatus::Pending).count();
            (rows, s.run_counters.clone(), approval, quarantined, in_flight, backlog)
        })
        .await;

    out.family(
        "dsops_secret_age_seconds",
        "gauge",
        "Seconds since the secret's value last rotated (absent until it first rotates).",
    );
    for (env, key, service, last, ..) in secrets.iter().take(MAX_SECRET_SERIES) {
        if let Some(last) = last {
            let age = now_ms.saturating_sub(*last) as f64 / 1000.0;
            out.sample(
                "dsops_secret_age_seconds",
                &[("env", env), ("key", key), ("service", service)],
                age,
            );
        }
    }
    out.family(
        "dsops_secret_overdue",
        "gauge",
        "1 when the secret is past its next due time (never rotated counts as due), else 0.",
    );
    for (env, key, service, _, due, rotates, _) in secrets.iter().take(MAX_SECRET_SERIES) {
        let overdue = *rotates && due.is_some_and(|d| d <= now_ms);
        let labels = [("env", env.as_str()), ("key", key), ("service", service)];
        out.sample("dsops_secret_overdue", &labels, f64::from(u8::from(overdue)));
    }
    out.family(
        "dsops_secret_next_due_timestamp_seconds",
        "gauge",
        "When the secret is next due, seconds since the epoch (absent without a schedule).",
    );
    for (env, key, service, _, due, ..) in secrets.iter().take(MAX_SECRET_SERIES) {
        if let Some(due) = due {
            let labels = [("env", env.as_str()), ("key", key), ("service", service)];
            out.sample("dsops_secret_next_due_timestamp_seconds", &labels, *due as f64 / 1000.0);
        }
    }
    out.family(
        "dsops_metrics_secrets_omitted",
        "gauge",
        "Secrets left out of the per-secret series above their cap.",
    );
    out.sample(
        "dsops_metrics_secrets_omitted",
        &[],
        secrets.len().saturating_sub(MAX_SECRET_SERIES) as f64,
    );

    out.family(
        "dsops_rotations_total",
        "counter",
        "Rotation runs ended, by strategy and result (Completed, RolledBack, Quarantined, Denied, Expired).",
    );
    for (strategy, results) in &counters.ended {
        for (result, count) in results {
            out.sample(
                "dsops_rotations_total",
                &[("strategy", strategy), ("result", result)],
                *count as f64,
            );
        }
    }
    let name = "dsops_rotation_duration_seconds";
    out.family(name, "histogram", "Time from a rotation's request to its completion.");
    let mut cumulative = 0;
    for (at, bound) in DURATION_BUCKETS_S.iter().enumerate() {
        cumulative += counters.duration_buckets.get(at).copied().unwrap_or(0);
        out.sample(&format!("{name}_bucket"), &[("le", &bound.to_string())], cumulative as f64);
    }
    cumulative += counters.duration_buckets.get(DURATION_BUCKETS_S.len()).copied().unwrap_or(0);
    out.sample(&format!("{name}_bucket"), &[("le", "+Inf")], cumulative as f64);
    out.sample(&format!("{name}_sum"), &[], counters.duration_sum_ms as f64 / 1000.0);
    out.sample(&format!("{name}_count"), &[], cumulative as f64);

    for (family, help, values) in [
        ("dsops_runs_in_flight", "Rotation runs not ended yet, by environment.", &in_flight),
        (
            "dsops_runs_awaiting_approval",
            "Rotation runs waiting for approval, by environment.",
            &approval,
        ),
        (
            "dsops_runs_quarantined",
            "Secrets whose last run is quarantined (a person must decide), by environment.",
            &quarantined,
        ),
    ] {
        out.family(family, "gauge", help);
        for (env, count) in values {
            out.sample(family, &[("env", env)], *count as f64);
        }
    }
    let mut segments: BTreeMap<String, u64> = BTreeMap::new();
    for agent in control.agents().connected() {
        *segments.entry(agent.segment).or_default() += 1;
    }
    out.family(
        "dsops_agents_connected",
        "gauge",
        "Agent sessions on this node (agents keep their session with the leader), by segment.",
    );
    for (segment, count) in &segments {
        out.sample("dsops_agents_connected", &[("segment", segment)], *count as f64);
    }
    out.family("dsops_notifications_backlog", "gauge", "Notification deliveries not sent yet.");
    out.sample("dsops_notifications_backlog", &[], backlog as f64);

    let metrics = control.raft().metrics().borrow().clone();
    let applied = metrics.last_applied.map_or(0, |l| l.index);
    let commit = match (&metrics.replication, metrics.last_log_index) {
        // The leader: the highest index a majority of voters holds.
        (Some(replication), Some(own)) => {
            let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
            let mut matched: Vec<u64> = voters
                .iter()
                .map(|id| {
                    if *id == metrics.id {
                        own
                    } else {
                        replication.get(id).copied().flatten().map_or(0, |l| l.index)
                    }
                })
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            matched.get(voters.len() / 2).copied().unwrap_or(applied).max(applied)
        }
        _ => applied,
    };
    for (family, kind, help, value) in [
        ("dsops_raft_term", "gauge", "The node's current raft term.", metrics.current_term),
        (
            "dsops_raft_commit_index",
            "gauge",
            "The highest log index known committed here (the leader: what a majority holds; elsewhere: the applied index).",
            commit,
        ),
        ("dsops_raft_applied_index", "gauge", "The last log index applied to the state.", applied),
        (
            "dsops_raft_last_log_index",
            "gauge",
            "The last log index in this node's log.",
            metrics.last_log_index.unwrap_or(0),
        ),
        (
            "dsops_raft_is_leader",
            "gauge",
            "1 when this node is the leader.",
            u64::from(metrics.current_leader == Some(metrics.id)),
        ),
        (
            "dsops_raft_leader_changes_total",
            "counter",
            "Leader changes this process has seen since it started.",
            control.leader_changes(),
        ),
    ] {
        out.family(family, kind, help);
        out.sample(family, &[], value as f64);
    }
    out.0
}
