//! Reminders about secrets, as the state machine applies them: the leader proposes
//! (`Command::Remind`), the log decides, so a new leader neither repeats nor skips one.
//!
//! | reminder | audit action | sent |
//! |---|---|---|
//! | overdue | `secret.overdue` | once the secret is past due by the leader's grace, then every 24 h while it stays overdue |
//! | expiring | `secret.expiring` | once per due time, `beforeExpiry.advance` ahead of it |

use dsops_proto::ErrorCode;

use super::{ApplyContext, OVERDUE_REPEAT_MS, Outcome, Reminder, ReminderMark, Request, State};
use crate::secret_id;

/// The longest reminder text kept.
pub const MAX_REMINDER_DETAIL: usize = 512;

/// A `Remind` command's fields.
pub(super) struct Reminding<'a> {
    pub env: &'a str,
    pub key: &'a str,
    pub reminder: Reminder,
    pub last_rotated_ms: Option<u64>,
    pub due_ms: u64,
    pub remind_at_ms: u64,
    pub detail: &'a str,
}

/// Records a reminder and audits it (the notifier tells people), or refuses a stale, early or
/// repeated one.
pub(super) fn remind(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    r: Reminding<'_>,
) -> Outcome {
    let now = request.proposed_at_ms;
    let id = secret_id(r.env, r.key);
    if r.detail.len() > MAX_REMINDER_DETAIL {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            format!("the reminder text of {id} is longer than {MAX_REMINDER_DETAIL} bytes"),
        );
    }
    let Some(record) = state.secrets.get_mut(&id) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("no rotation of {id} is recorded"));
    };
    if record.last_rotated_at_ms != r.last_rotated_ms {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("{id} rotated since the reminder was planned"),
        );
    }
    if now < r.remind_at_ms {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("the reminder about {id} is not due before {}", r.remind_at_ms),
        );
    }
    let (mark, action) = match r.reminder {
        Reminder::Overdue => (&mut record.overdue_reminded, "secret.overdue"),
        Reminder::Expiring => (&mut record.expiry_reminded, "secret.expiring"),
    };
    let repeat_after = match r.reminder {
        Reminder::Overdue => Some(OVERDUE_REPEAT_MS),
        Reminder::Expiring => None,
    };
    if let Some(previous) = mark.filter(|m| m.due_ms == r.due_ms) {
        let again = repeat_after.is_some_and(|after| now >= previous.at_ms.saturating_add(after));
        if !again {
            return Outcome::rejected(
                ErrorCode::AlreadyExists,
                format!("{action} for {id} was already sent at {}", previous.at_ms),
            );
        }
    }
    *mark = Some(ReminderMark { due_ms: r.due_ms, at_ms: now });
    let seq = state.audit.append(ctx.index, now, &request.actor, action, &id, r.detail);
    Outcome::Audited { seq }
}

#[cfg(test)]
mod tests {
    use super::super::{ApplyContext, Command, Outcome, Request, SecretRecord, State, apply};
    use super::*;

    fn remind(state: &mut State, index: u64, now: u64, reminder: Reminder, due: u64) -> Outcome {
        let request = Request {
            request_id: format!("r{index}"),
            actor: "node-1 reminders".into(),
            proposed_at_ms: now,
            command: Command::Remind {
                env: "prod".into(),
                key: "K".into(),
                reminder,
                last_rotated_ms: Some(1_000),
                due_ms: due,
                remind_at_ms: match reminder {
                    Reminder::Overdue => due + 60_000,
                    Reminder::Expiring => due - 3_600_000,
                },
                detail: "due soon".into(),
            },
        };
        apply(state, &request, ApplyContext { index }).outcome
    }

    fn code(outcome: Outcome) -> ErrorCode {
        match outcome {
            Outcome::Rejected { code, .. } => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn world() -> State {
        let mut state = State::default();
        let record = SecretRecord { last_rotated_at_ms: Some(1_000), ..SecretRecord::default() };
        state.secrets.insert("prod/K".into(), record);
        state
    }

    #[test]
    fn an_overdue_reminder_waits_for_log_time_goes_once_and_repeats_daily() {
        let mut state = world();
        let due = 10_000_000;
        assert_eq!(
            code(remind(&mut state, 1, due, Reminder::Overdue, due)),
            ErrorCode::FailedPrecondition
        );
        assert!(matches!(
            remind(&mut state, 2, due + 60_000, Reminder::Overdue, due),
            Outcome::Audited { .. }
        ));
        let event = state.audit.recent().last().cloned().expect("audited");
        assert_eq!((event.action.as_str(), event.subject.as_str()), ("secret.overdue", "prod/K"));
        assert_eq!(event.actor, "node-1 reminders");
        let hour_later = due + 3_600_000;
        assert_eq!(
            code(remind(&mut state, 3, hour_later, Reminder::Overdue, due)),
            ErrorCode::AlreadyExists
        );
        let day_later = due + 60_000 + OVERDUE_REPEAT_MS;
        assert!(matches!(
            remind(&mut state, 4, day_later, Reminder::Overdue, due),
            Outcome::Audited { .. }
        ));
    }

    #[test]
    fn an_expiry_reminder_goes_once_per_due_time_and_not_after_a_rotation() {
        let mut state = world();
        let due = 10_000_000;
        let early = due - 3_600_001;
        assert_eq!(
            code(remind(&mut state, 1, early, Reminder::Expiring, due)),
            ErrorCode::FailedPrecondition
        );
        assert!(matches!(
            remind(&mut state, 2, due - 60_000, Reminder::Expiring, due),
            Outcome::Audited { .. }
        ));
        let much_later = due + 10 * OVERDUE_REPEAT_MS;
        assert_eq!(
            code(remind(&mut state, 3, much_later, Reminder::Expiring, due)),
            ErrorCode::AlreadyExists
        );
        // A new due time (the next period) gets its own reminder.
        let next = due + OVERDUE_REPEAT_MS;
        assert!(matches!(
            remind(&mut state, 4, next, Reminder::Expiring, next),
            Outcome::Audited { .. }
        ));
        // The secret rotated since the leader looked: refused, nothing recorded.
        state.secrets.get_mut("prod/K").expect("record").last_rotated_at_ms = Some(5_000);
        let events = state.audit.recent().count();
        assert_eq!(
            code(remind(&mut state, 5, next + 2 * OVERDUE_REPEAT_MS, Reminder::Overdue, next)),
            ErrorCode::FailedPrecondition
        );
        assert_eq!(state.audit.recent().count(), events);
        assert_eq!(state.secrets["prod/K"].overdue_reminded, None);
    }

    #[test]
    fn a_secret_without_a_record_or_an_oversized_text_is_refused() {
        let mut state = State::default();
        assert_eq!(
            code(remind(&mut state, 1, 20_000_000, Reminder::Overdue, 1)),
            ErrorCode::NotFound
        );
        let mut state = world();
        let request = Request {
            request_id: "big".into(),
            actor: "node-1 reminders".into(),
            proposed_at_ms: 20_000_000,
            command: Command::Remind {
                env: "prod".into(),
                key: "K".into(),
                reminder: Reminder::Overdue,
                last_rotated_ms: Some(1_000),
                due_ms: 1,
                remind_at_ms: 1,
                detail: "x".repeat(MAX_REMINDER_DETAIL + 1),
            },
        };
        let outcome = apply(&mut state, &request, ApplyContext { index: 1 }).outcome;
        assert_eq!(code(outcome), ErrorCode::InvalidArgument);
    }
}
