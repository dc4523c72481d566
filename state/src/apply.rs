//! `apply`: one match over the command, each area's commands applied in its own file
//! (`config_apply`, `cluster_apply`, `agent_apply`, `operator_apply`, `run_apply`,
//! `approval_apply`), and the request-id dedup.

use super::{Command, Outcome, Request, Response, State};
use super::{
    agent_apply, approval_apply, cluster_apply, config_apply, config_staging, gate_apply,
    operator_apply, promotion_apply, reminder_apply, run_apply,
};

/// What the log says about the entry being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyContext {
    /// The entry's log index.
    pub index: u64,
}

/// Applies one committed request. Deterministic: the same state and request give the same
/// result on every node.
pub fn apply(state: &mut State, request: &Request, ctx: ApplyContext) -> Response {
    if let Some(previous) = state.dedup.get(&request.request_id) {
        return Response { duplicate: true, ..previous.clone() };
    }
    let now = request.proposed_at_ms;
    let outcome = match &request.command {
        Command::StoreConfig {
            config_yaml,
            config_path,
            catalog_files,
            fingerprints,
            expected_version,
            history_bytes,
        } => config_apply::store_config(
            state,
            request,
            ctx,
            config_apply::ConfigInput {
                config_yaml,
                config_path,
                catalog_files,
                fingerprints,
                expected_version: *expected_version,
                history_bytes: *history_bytes,
            },
        ),
        Command::StageConfigPart { upload, index, text } => {
            config_staging::stage_part(state, request, upload, *index, text)
        }
        Command::StoreStagedConfig { upload, parts, sha256 } => {
            config_staging::store_staged(state, request, ctx, upload, *parts, sha256)
        }
        Command::RegisterNode { node_id, address, role } => {
            cluster_apply::register_node(state, request, ctx, *node_id, address, *role)
        }
        Command::ForgetNode { node_id } => {
            cluster_apply::forget_node(state, request, ctx, *node_id)
        }
        Command::CreateJoinToken { token_hash, expires_at_ms } => {
            cluster_apply::create_join_token(state, request, ctx, token_hash, *expires_at_ms)
        }
        Command::ConsumeJoinToken { token_hash, address } => {
            cluster_apply::consume_join_token(state, request, ctx, token_hash, address)
        }
        Command::RegisterAgent { agent_id, segment, public_key } => {
            run_apply::register_agent(state, request, ctx, agent_id, segment, public_key)
        }
        Command::CreateAgentToken { token_hash, segment, expires_at_ms } => {
            agent_apply::create_token(state, request, ctx, token_hash, segment, *expires_at_ms)
        }
        Command::EnrollAgent {
            token_hash,
            agent_id,
            public_key,
            hostname,
            version,
            cert_not_after_ms,
        } => agent_apply::enroll(
            state,
            request,
            ctx,
            agent_apply::Enrolment {
                token_hash,
                agent_id,
                public_key,
                hostname,
                version,
                cert_not_after_ms: *cert_not_after_ms,
            },
        ),
        Command::RenewAgentCertificate { agent_id, cert_not_after_ms } => {
            agent_apply::renew(state, request, ctx, agent_id, *cert_not_after_ms)
        }
        Command::RevokeAgent { agent_id } => agent_apply::revoke(state, request, ctx, agent_id),
        Command::RequestRun {
            run_id,
            env,
            key,
            spec,
            restore_previous,
            reason,
            break_glass,
            trace_parent,
        } => {
            if !*break_glass && let Some(halt) = &state.halt_all {
                return done(
                    state,
                    request,
                    ctx,
                    Outcome::rejected(
                        dsops_proto::ErrorCode::FailedPrecondition,
                        format!(
                            "every run is halted ({}, by {}); `dsops promotion resume --all --reason …` lets them go on",
                            halt.reason, halt.by
                        ),
                    ),
                );
            }
            let admission = match &spec.promotion {
                None => None,
                Some(p) => match promotion_apply::admit(state, request, p, *break_glass) {
                    Ok(promotion_apply::Admission::Queue) => {
                        let outcome = promotion_apply::queue(state, request, ctx, p);
                        return done(state, request, ctx, outcome);
                    }
                    Ok(admission) => Some((p, admission)),
                    Err(refusal) => return done(state, request, ctx, refusal),
                },
            };
            let outcome = run_apply::request_run(
                state,
                request,
                ctx,
                run_id,
                env,
                key,
                spec,
                *restore_previous,
                reason,
            );
            if matches!(outcome, Outcome::RunStarted { .. }) {
                if let Some(run) = state.runs.get_mut(run_id.as_str()) {
                    run.trace_parent =
                        trace_parent.clone().filter(|t| dsops_proto::trace::is_traceparent(t));
                }
                if let Some((p, admission)) = &admission {
                    promotion_apply::started(state, request, ctx, p, admission, run_id);
                }
                if *break_glass {
                    approval_apply::open_review(state, request, ctx, run_id);
                }
            }
            outcome
        }
        Command::DispatchStep {
            run_id,
            generation,
            step,
            checked_step,
            attempt,
            agent_id,
            deadline_ms,
        } => run_apply::dispatch(
            state,
            request,
            run_apply::StepSent {
                run_id,
                generation: *generation,
                step: *step,
                checked_step: *checked_step,
                attempt: *attempt,
                agent_id,
                deadline_ms: *deadline_ms,
            },
        ),
        Command::RecordReceipt {
            body_hex,
            signature_hex,
            jitter_permille,
            verified_with,
            next_agent,
        } => run_apply::record_receipt(
            state,
            request,
            ctx,
            run_apply::ReceiptInput {
                body_hex,
                signature_hex,
                jitter_permille: *jitter_permille,
                verified_with: verified_with.as_deref(),
                next_agent: next_agent.as_deref(),
            },
        ),
        Command::StepTimedOut {
            run_id,
            generation,
            step,
            attempt,
            jitter_permille,
            lost_agent,
        } => run_apply::time_out(
            state,
            request,
            ctx,
            run_apply::Expiry {
                run_id,
                generation: *generation,
                step: *step,
                attempt: *attempt,
                jitter_permille: *jitter_permille,
                lost_agent: lost_agent.as_deref(),
            },
        ),
        Command::RevokeIdentity { role, name, reason } => {
            cluster_apply::revoke_identity(state, request, ctx, role, name, reason)
        }
        Command::SetRole { operator, grant, granted } => {
            operator_apply::set_role(state, request, ctx, operator, grant, *granted)
        }
        Command::InviteOperator { token_hash, name, grants, expires_at_ms, certificate_days } => {
            let invitation = super::OperatorInvite {
                name: name.clone(),
                grants: grants.iter().cloned().collect(),
                expires_at_ms: *expires_at_ms,
                certificate_days: *certificate_days,
                invited_by: request.actor.clone(),
            };
            operator_apply::invite(state, request, ctx, token_hash, invitation)
        }
        Command::EnrollOperator { token_hash, cert_not_after_ms } => {
            operator_apply::enroll(state, request, ctx, token_hash, *cert_not_after_ms)
        }
        Command::RenewOperatorCertificate { name, cert_not_after_ms } => {
            operator_apply::renew(state, request, ctx, name, *cert_not_after_ms)
        }
        Command::RevokeOperator { name, reason } => {
            operator_apply::revoke(state, request, ctx, name, reason)
        }
        Command::DecideApproval { run_id, decision } => {
            approval_apply::decide(state, request, ctx, run_id, decision)
        }
        Command::ExpireApproval { run_id } => approval_apply::expire(state, request, ctx, run_id),
        Command::ReplanRun { run_id, spec, reason } => {
            approval_apply::replan(state, request, ctx, run_id, spec.as_ref(), reason)
        }
        Command::CloseReview { review_id, note } => {
            approval_apply::close_review(state, request, ctx, review_id, note)
        }
        Command::ReviewOverdue { review_id } => {
            approval_apply::review_overdue(state, request, ctx, review_id)
        }
        Command::Remind { env, key, reminder, last_rotated_ms, due_ms, remind_at_ms, detail } => {
            reminder_apply::remind(
                state,
                request,
                ctx,
                reminder_apply::Reminding {
                    env,
                    key,
                    reminder: *reminder,
                    last_rotated_ms: *last_rotated_ms,
                    due_ms: *due_ms,
                    remind_at_ms: *remind_at_ms,
                    detail,
                },
            )
        }
        Command::RecordHealth {
            agent_id,
            body_hex,
            signature_hex,
            segment,
            failures,
            on_fail,
            on_inconclusive,
        } => gate_apply::record(
            state,
            request,
            ctx,
            agent_id,
            body_hex,
            signature_hex,
            gate_apply::CheckRules {
                segment,
                failures: *failures,
                on_fail: *on_fail,
                on_inconclusive: *on_inconclusive,
            },
        ),
        Command::HaltPromotion { line, reason } => {
            promotion_apply::halt(state, request, ctx, line.as_deref(), reason)
        }
        Command::ResumePromotion { line, reason } => {
            promotion_apply::resume(state, request, ctx, line.as_deref(), reason)
        }
        Command::EnqueueNotifications { through_seq, entries } => {
            super::outbox::enqueue(state, request, ctx, *through_seq, entries)
        }
        Command::RecordDelivery { agent_id, body_hex, signature_hex } => {
            super::outbox::record(state, request, ctx, agent_id, body_hex, signature_hex)
        }
        Command::CreateReportToken { token } => {
            super::report_token_apply::create(state, request, ctx, token)
        }
        Command::RevokeReportToken { id } => {
            super::report_token_apply::revoke(state, request, ctx, id)
        }
        Command::RegisterEvidenceKey { key } => {
            super::evidence_apply::register_key(state, request, ctx, key)
        }
        Command::StartRunCounters => {
            state.run_counters.counting = true;
            Outcome::Noop
        }
        Command::Checkpoint { checkpoint } => {
            super::evidence_apply::checkpoint(state, request, ctx, checkpoint)
        }
        Command::AppendAudit { action, subject, detail } => {
            let seq = state.audit.append(ctx.index, now, &request.actor, action, subject, detail);
            Outcome::Audited { seq }
        }
    };
    done(state, request, ctx, outcome)
}

/// Remembers the outcome for retries of the request, and answers it.
fn done(state: &mut State, request: &Request, ctx: ApplyContext, outcome: Outcome) -> Response {
    let response = Response { index: ctx.index, outcome, duplicate: false };
    let kept = config_staging::for_dedup(request, &response);
    state.dedup.remember(&request.request_id, kept, request.proposed_at_ms);
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use dsops_proto::ErrorCode;

    use super::*;
    use crate::{AuditLog, CONFIG_HISTORY, NodeRole};

    fn request(id: &str, at: u64, command: Command) -> Request {
        Request {
            request_id: id.to_owned(),
            actor: "admin".to_owned(),
            proposed_at_ms: at,
            command,
        }
    }

    fn store(fingerprints: &[(&str, &str)], expected: Option<u64>) -> Command {
        Command::StoreConfig {
            config_yaml: "version: 1\n".into(),
            config_path: "dsops.yaml".into(),
            catalog_files: BTreeMap::new(),
            fingerprints: fingerprints
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            expected_version: expected,
            history_bytes: None,
        }
    }

    #[test]
    fn config_versions_and_diffs() {
        let mut state = State::default();
        let first = apply(
            &mut state,
            &request("r1", 10, store(&[("services.pg", "a"), ("envs.dev.X", "b")], None)),
            ApplyContext { index: 1 },
        );
        assert!(
            matches!(&first.outcome, Outcome::ConfigStored { version: 1, previous_version: 0, changes } if changes.len() == 2)
        );
        let second = apply(
            &mut state,
            &request("r2", 20, store(&[("services.pg", "a2"), ("envs.dev.Y", "c")], Some(1))),
            ApplyContext { index: 2 },
        );
        let Outcome::ConfigStored { version, changes, .. } = second.outcome else {
            panic!("{second:?}")
        };
        assert_eq!(version, 2);
        let lines: Vec<String> =
            changes.iter().map(|c| format!("{} {}", c.action, c.path)).collect();
        assert_eq!(lines, ["removed envs.dev.X", "added envs.dev.Y", "modified services.pg"]);
        // A stale expected version is a committed rejection; nothing changes.
        let stale =
            apply(&mut state, &request("r3", 30, store(&[], Some(1))), ApplyContext { index: 3 });
        assert!(
            matches!(&stale.outcome, Outcome::Rejected { code, .. } if *code == ErrorCode::Conflict)
        );
        assert_eq!(state.config_version(), 2);
    }

    #[test]
    fn a_retried_request_is_applied_once() {
        let mut state = State::default();
        let command =
            Command::AppendAudit { action: "x".into(), subject: "y".into(), detail: String::new() };
        let first =
            apply(&mut state, &request("same", 1, command.clone()), ApplyContext { index: 5 });
        let again = apply(&mut state, &request("same", 2, command), ApplyContext { index: 6 });
        assert_eq!(state.audit.events().len(), 1);
        assert!(again.duplicate);
        assert_eq!(again.index, 5);
        assert_eq!(again.outcome, first.outcome);
    }

    #[test]
    fn join_tokens_are_single_use_and_expire() {
        let mut state = State::default();
        apply(
            &mut state,
            &request(
                "n1",
                1,
                Command::RegisterNode { node_id: 1, address: "a:1".into(), role: NodeRole::Voter },
            ),
            ApplyContext { index: 1 },
        );
        apply(
            &mut state,
            &request(
                "t",
                1,
                Command::CreateJoinToken { token_hash: "h".into(), expires_at_ms: 100 },
            ),
            ApplyContext { index: 2 },
        );
        let used = apply(
            &mut state,
            &request(
                "c1",
                50,
                Command::ConsumeJoinToken { token_hash: "h".into(), address: "b:2".into() },
            ),
            ApplyContext { index: 3 },
        );
        assert_eq!(used.outcome, Outcome::TokenConsumed { node_id: 2 });
        let reuse = apply(
            &mut state,
            &request(
                "c2",
                60,
                Command::ConsumeJoinToken { token_hash: "h".into(), address: "c:3".into() },
            ),
            ApplyContext { index: 4 },
        );
        assert!(
            matches!(reuse.outcome, Outcome::Rejected { ref message, .. } if message.contains("already used"))
        );
        apply(
            &mut state,
            &request(
                "t2",
                70,
                Command::CreateJoinToken { token_hash: "h2".into(), expires_at_ms: 80 },
            ),
            ApplyContext { index: 5 },
        );
        let late = apply(
            &mut state,
            &request(
                "c3",
                90,
                Command::ConsumeJoinToken { token_hash: "h2".into(), address: "d:4".into() },
            ),
            ApplyContext { index: 6 },
        );
        assert!(
            matches!(late.outcome, Outcome::Rejected { ref message, .. } if message.contains("expired"))
        );
        let unknown = apply(
            &mut state,
            &request(
                "c4",
                90,
                Command::ConsumeJoinToken { token_hash: "zz".into(), address: "d:4".into() },
            ),
            ApplyContext { index: 7 },
        );
        assert!(
            matches!(unknown.outcome, Outcome::Rejected { ref code, .. } if *code == ErrorCode::PermissionDenied)
        );
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        prop_oneof![
            (
                proptest::collection::btree_map("[a-c]{1,2}", "[x-z]", 0..4),
                proptest::option::of(0u64..4),
                proptest::option::of(0u64..64)
            )
                .prop_map(|(fingerprints, expected_version, history_bytes)| {
                    Command::StoreConfig {
                        config_yaml: "version: 1\n".into(),
                        config_path: "dsops.yaml".into(),
                        catalog_files: BTreeMap::new(),
                        fingerprints,
                        expected_version,
                        history_bytes,
                    }
                }),
            (1u64..5, "[a-d]").prop_map(|(node_id, address)| Command::RegisterNode {
                node_id,
                address,
                role: NodeRole::Voter
            }),
            (1u64..5).prop_map(|node_id| Command::ForgetNode { node_id }),
            ("[a-c]", 0u64..200).prop_map(|(token_hash, expires_at_ms)| Command::CreateJoinToken {
                token_hash,
                expires_at_ms
            }),
            ("[a-c]", "[a-d]").prop_map(|(token_hash, address)| Command::ConsumeJoinToken {
                token_hash,
                address
            }),
            ("[a-c]", "[a-c]").prop_map(|(action, subject)| Command::AppendAudit {
                action,
                subject,
                detail: String::new()
            }),
        ]
    }

    fn arb_log() -> impl Strategy<Value = Vec<Request>> {
        proptest::collection::vec((arb_command(), "[a-f]", 0u64..50), 0..40).prop_map(|items| {
            let mut at = 0;
            items
                .into_iter()
                .map(|(command, id, step)| {
                    at += step;
                    request(&id, at, command)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn replaying_the_same_log_gives_the_same_state(log in arb_log()) {
            let run = |log: &[Request]| {
                let mut state = State::default();
                let responses: Vec<Response> = log.iter().enumerate().map(|(i, r)| apply(&mut state, r, ApplyContext { index: i as u64 + 1 })).collect();
                (state, responses)
            };
            let (a, ra) = run(&log);
            let (b, rb) = run(&log);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(ra, rb);
        }

        #[test]
        fn invariants_hold_after_any_log(log in arb_log()) {
            let mut state = State::default();
            let mut last_version = 0;
            for (i, r) in log.iter().enumerate() {
                let before_events = state.audit.events().len();
                let response = apply(&mut state, r, ApplyContext { index: i as u64 + 1 });
                // Versions only grow, by one per stored configuration.
                prop_assert!(state.config_version() == last_version || state.config_version() == last_version + 1);
                last_version = state.config_version();
                // A rejection or a duplicate writes no audit event.
                if response.duplicate || matches!(response.outcome, Outcome::Rejected { .. }) {
                    prop_assert_eq!(state.audit.events().len(), before_events);
                }
                // Node ids are never reused.
                prop_assert!(state.nodes.keys().all(|id| *id <= state.max_node_id));
            }
            prop_assert!(AuditLog::verify(&state.audit.events()).is_ok());
            prop_assert!(state.configs.len() <= CONFIG_HISTORY);
        }

        #[test]
        fn a_tampered_audit_log_is_detected(log in arb_log(), victim in 0usize..40) {
            let mut state = State::default();
            for (i, r) in log.iter().enumerate() {
                apply(&mut state, r, ApplyContext { index: i as u64 + 1 });
            }
            let mut events = state.audit.events().to_vec();
            prop_assume!(!events.is_empty());
            let victim = victim % events.len();
            events[victim].detail.push('!');
            prop_assert_eq!(AuditLog::verify(&events), Err(events[victim].seq));
        }
    }
}
