//! Watching runs: what `dsops rotate` shows while it waits, and what the embedded default uses to
//! finish the runs an interrupted command left in flight.

use std::time::Duration;

use dsops_proto::domain::{RunPhase, RunStatus, Step};
use dsops_proto::wire::admin as wire;

/// `text` with its control characters (but newline and tab) escaped as `\u{1b}`: text that
/// agents, servers or programs wrote must not drive the terminal it is printed on.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// How a summary stands (a run's phase, or why it stands for no run).
pub fn status(run: &wire::RunSummary) -> RunStatus {
    RunStatus::of(run)
}

/// The run is over.
pub fn finished(run: &wire::RunSummary) -> bool {
    status(run).is_terminal()
}

/// The step a run performs next, if any.
pub fn next_step(run: &wire::RunSummary) -> Option<Step> {
    Step::from_wire(run.next_step, "next_step").ok()
}

/// Still going, but only waiting: for approval, for a grace period or backoff longer than a
/// few seconds, or for an agent that is not connected.
pub fn parked(run: &wire::RunSummary) -> bool {
    let now = chrono::Utc::now().timestamp();
    awaiting_approval(run)
        || run.waiting_for_agent
        || run.not_before.as_ref().is_some_and(|t| t.seconds > now + 5)
}

/// The run waits for approvals.
pub fn awaiting_approval(run: &wire::RunSummary) -> bool {
    status(run) == RunStatus::Phase(RunPhase::AwaitingApproval)
}

/// What an approval waits for: `0/2 approvals (role:approver), expires 2026-12-07 10:00 UTC`.
pub fn approval_state(run: &wire::RunSummary) -> String {
    let Some(approval) = &run.approval else { return String::new() };
    let approvals = approval.decisions.iter().filter(|d| d.approve).count();
    let expires = approval
        .expires_at
        .as_ref()
        .and_then(|t| chrono::DateTime::<chrono::Utc>::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    format!(
        "{approvals}/{} approvals ({}), expires {expires}",
        approval.required,
        approval.approvers.join(", ")
    )
}

/// Nothing is left to wait for that keeps a credential from working: the run ended, its new
/// value is current and only the old credential's retirement waits for the grace period, or no
/// agent of its segment is here to move it.
pub fn settled(run: &wire::RunSummary) -> bool {
    finished(run)
        || awaiting_approval(run)
        || run.waiting_for_agent
        || (status(run) == RunStatus::Phase(RunPhase::Promoted) && parked(run))
}

/// `env/KEY`.
pub fn secret_name(run: &wire::RunSummary) -> String {
    run.secret.as_ref().map(|s| format!("{}/{}", s.env, s.key)).unwrap_or_default()
}

/// Where a run is, for a spinner or a note: `Applied, next verify (attempt 2, at 12:00:03)`.
pub fn position(run: &wire::RunSummary) -> String {
    let next = match next_step(run) {
        Some(next) if !finished(run) => next,
        _ => return status(run).name().to_owned(),
    };
    let mut text = format!("{}, next {next}", status(run));
    let when = run
        .not_before
        .as_ref()
        .and_then(|t| chrono::DateTime::<chrono::Utc>::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%H:%M:%S UTC").to_string());
    match (run.attempt > 1, when) {
        (true, Some(when)) => text.push_str(&format!(" (attempt {}, at {when})", run.attempt)),
        (true, None) => text.push_str(&format!(" (attempt {})", run.attempt)),
        (false, Some(when)) => text.push_str(&format!(" (at {when})")),
        (false, None) => {}
    }
    if run.waiting_for_agent {
        text.push_str(&format!(", waiting for an agent of segment {}", run.segment));
    }
    text
}

/// A spinner on standard error (drawn only on a terminal).
pub fn spinner() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// What an interrupted run came to, as the embedded default reports it on standard error.
pub fn recovered_note(run: &wire::RunSummary) -> String {
    printable(&note_text(run)).into_owned()
}

fn note_text(run: &wire::RunSummary) -> String {
    let name = secret_name(run);
    if finished(run) {
        let why = if run.detail.is_empty() { String::new() } else { format!(": {}", run.detail) };
        format!(
            "note: finished run {} ({name}), left in flight by an interrupted dsops command: {}{why}",
            run.run_id,
            status(run)
        )
    } else {
        format!(
            "note: run {} ({name}), left in flight by an interrupted dsops command, is still going ({}); it continues the next time a dsops command runs here",
            run.run_id,
            position(run)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain text\twith tab"), "plain text\twith tab");
        assert_eq!(
            printable("refused \u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "refused \\u{1b}]0;pwned\\u{7}\\u{1b}[2J"
        );
    }
}
