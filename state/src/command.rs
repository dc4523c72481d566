use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::runs::{RunSpec, StepKind};

/// A command proposed to the raft log, with what makes it deterministic and idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Client-chosen id; a retry with the same id is applied once.
    pub request_id: String,
    /// Who asked (operator or node identity from its certificate).
    pub actor: String,
    /// Wall-clock time on the proposing node, milliseconds since the Unix epoch. Fixed in the
    /// log entry, so every node applies the same time.
    pub proposed_at_ms: u64,
    /// What to do.
    pub command: Command,
}

/// A control-plane node's role hint, recorded when it joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    /// Joins as a learner and is promoted to voter when caught up.
    Voter,
    /// Stays a learner (read replica, or a spare).
    Learner,
}

/// What the state machine can be asked to do. Commands carry references, hashes and
/// fingerprints, never secret values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Store a validated configuration (validated by the proposing node before proposal).
    StoreConfig {
        /// The dsops.yaml text.
        config_yaml: String,
        /// Its file name.
        config_path: String,
        /// Catalog documents from `rotation.dataDir`, by relative path.
        catalog_files: BTreeMap<String, String>,
        /// A content hash per item (`services.pg`, `envs.prod.DB_PASSWORD`, `catalog/...`),
        /// from which the change list is computed.
        fingerprints: BTreeMap<String, String>,
        /// Refuse unless the stored version is this one.
        expected_version: Option<u64>,
        /// Bound the kept history to this many bytes of documents and fingerprints as well as
        /// to [`crate::CONFIG_HISTORY`] versions (the newest is always kept). Set from log
        /// format 2 on; commands of older formats carry none and keep the count bound only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history_bytes: Option<u64>,
    },
    /// One part of a configuration too large for one entry (log format 2; see
    /// [`crate::config_staging`]). Part 0 starts the upload.
    StageConfigPart {
        /// The upload (the apply request's id).
        upload: String,
        /// 0, 1, 2, ... in order.
        index: u32,
        /// A piece of the JSON of a [`crate::ConfigPayload`].
        text: String,
    },
    /// Store the configuration staged under `upload` (log format 2).
    StoreStagedConfig {
        /// The upload.
        upload: String,
        /// How many parts it has.
        parts: u32,
        /// The SHA-256 (hex) of the parts joined.
        sha256: String,
    },
    /// Record a control-plane node (address and role); raft membership itself changes through
    /// openraft's own membership entries.
    RegisterNode {
        /// The raft node id.
        node_id: u64,
        /// `host:port`.
        address: String,
        /// Voter or learner.
        role: NodeRole,
    },
    /// Forget a node's record after it left the membership.
    ForgetNode {
        /// The raft node id.
        node_id: u64,
    },
    /// Create a one-time join token; only its SHA-256 is stored.
    CreateJoinToken {
        /// Hex SHA-256 of the token secret.
        token_hash: String,
        /// Expiry, ms since the epoch.
        expires_at_ms: u64,
    },
    /// Use a join token for a new node; refused if unknown, used or expired. On success the node
    /// gets the next node id.
    ConsumeJoinToken {
        /// Hex SHA-256 of the token secret.
        token_hash: String,
        /// The new node's address.
        address: String,
    },
    /// Register an agent (or re-key one) so its receipts can be verified.
    RegisterAgent {
        /// The agent id (the subject of its certificate).
        agent_id: String,
        /// Its segment.
        segment: String,
        /// Its Ed25519 public key, hex.
        public_key: String,
    },
    /// Create a one-time agent enrolment token bound to a segment; only its SHA-256 is stored.
    CreateAgentToken {
        /// Hex SHA-256 of the token secret.
        token_hash: String,
        /// The segment the enrolled agent will belong to.
        segment: String,
        /// Expiry, ms since the epoch.
        expires_at_ms: u64,
    },
    /// Enrol a new agent with a token; refused if the token is unknown, used or expired. The
    /// proposer signed the agent's certificate (not deterministic, so not in `apply`); it is
    /// only handed out once this is committed.
    EnrollAgent {
        /// Hex SHA-256 of the token secret.
        token_hash: String,
        /// The new agent's id (the subject of its certificate).
        agent_id: String,
        /// Its Ed25519 receipt key, hex.
        public_key: String,
        /// The host it runs on.
        hostname: String,
        /// Its version.
        version: String,
        /// When its certificate expires, ms since the epoch.
        cert_not_after_ms: u64,
    },
    /// An agent received a renewed certificate.
    RenewAgentCertificate {
        /// The agent.
        agent_id: String,
        /// When the new certificate expires, ms since the epoch.
        cert_not_after_ms: u64,
    },
    /// Revoke an agent: its sessions close, its certificate and receipts are refused.
    RevokeAgent {
        /// The agent.
        agent_id: String,
    },
    /// Start a rotation (or rollback) run for a secret.
    RequestRun {
        /// The new run's id.
        run_id: String,
        /// The environment.
        env: String,
        /// The variable.
        key: String,
        /// What the run does, resolved from the stored configuration.
        spec: RunSpec,
        /// Stage the store's previous version instead of a new value.
        restore_previous: bool,
        /// Why (`manual`, `schedule`, an operator's text).
        reason: String,
        /// Broken glass: the run starts past approval (its spec carries none) and a review of
        /// it opens, due within [`crate::REVIEW_DEADLINE_MS`].
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        break_glass: bool,
        /// The W3C trace context of the request, so the run's steps join its trace; kept only
        /// when well formed ([`dsops_proto::trace::is_traceparent`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace_parent: Option<String>,
    },
    /// A step was sent to an agent.
    DispatchStep {
        /// The run.
        run_id: String,
        /// Its generation.
        generation: u64,
        /// The step.
        step: StepKind,
        /// For a check: the step checked.
        checked_step: Option<StepKind>,
        /// The attempt.
        attempt: u32,
        /// The agent.
        agent_id: String,
        /// When to stop waiting, ms since the epoch.
        deadline_ms: u64,
    },
    /// An agent's signed receipt for a step (verified when applied).
    RecordReceipt {
        /// The signed `ReceiptBody` bytes, hex.
        body_hex: String,
        /// The Ed25519 signature, hex.
        signature_hex: String,
        /// Random 0..=1000 drawn by the proposer for retry jitter.
        jitter_permille: u16,
        /// The agent public key (hex) the proposing leader verified the signature with. While it
        /// is still the agent's key, apply relies on that check instead of verifying again on
        /// every node; absent or different, apply verifies the signature itself.
        #[serde(default)]
        verified_with: Option<String>,
        /// The agent to send the run's next step to, when the receipt moves the run to a step
        /// that is due at once: the step is dispatched in the same entry (with the run's step
        /// timeout from the entry's time) instead of by a separate `DispatchStep`.
        #[serde(default)]
        next_agent: Option<String>,
    },
    /// No receipt came for a dispatched step before its deadline.
    StepTimedOut {
        /// The run.
        run_id: String,
        /// Its generation.
        generation: u64,
        /// The step.
        step: StepKind,
        /// The attempt.
        attempt: u32,
        /// Random 0..=1000 drawn by the proposer for retry jitter.
        jitter_permille: u16,
        /// Set when the step is given up before its deadline because the agent performing it
        /// lost its session (and another agent of the segment can take over): the agent's id,
        /// which must be the one the step was dispatched to.
        #[serde(default)]
        lost_agent: Option<String>,
    },
    /// Revoke every certificate of an identity issued until now (a removed node, an operator
    /// who left): refused from then on by every node.
    RevokeIdentity {
        /// `peer`, `agent` or `operator`.
        role: String,
        /// The certificate's common name.
        name: String,
        /// Why, for the audit log.
        reason: String,
    },
    /// Give an operator a role (`grant`) or take it away. The first grant of a cluster also
    /// records the operator proposing it as admin, so the operator `init` created keeps its rights.
    SetRole {
        /// The operator (the name in its certificates).
        operator: String,
        /// The role and its scope.
        grant: dsops_proto::domain::RoleGrant,
        /// True to grant, false to take away.
        granted: bool,
    },
    /// Record a one-time invitation for a new operator (its token's hash), with the roles it
    /// will hold. Expired invitations are forgotten; at most [`crate::MAX_OPERATOR_INVITES`]
    /// wait at once.
    InviteOperator {
        /// SHA-256 of the token's secret, hex.
        token_hash: String,
        /// The operator's name.
        name: String,
        /// Its roles once enrolled.
        grants: Vec<dsops_proto::domain::RoleGrant>,
        /// When the invitation expires, ms since the epoch.
        expires_at_ms: u64,
        /// How long its certificate will be valid, in days.
        certificate_days: u32,
    },
    /// Spend an invitation: the operator gets its roles and a certificate valid until
    /// `cert_not_after_ms`.
    EnrollOperator {
        /// SHA-256 of the token's secret, hex.
        token_hash: String,
        /// When the certificate issued for it expires.
        cert_not_after_ms: u64,
    },
    /// An operator renewed its certificate.
    RenewOperatorCertificate {
        /// The operator.
        name: String,
        /// When the new certificate expires.
        cert_not_after_ms: u64,
    },
    /// Revoke an operator: its roles go and every certificate naming it issued until now is
    /// refused. The last admin cannot be revoked.
    RevokeOperator {
        /// The operator.
        name: String,
        /// Why, for the audit log.
        reason: String,
    },
    /// An operator's signed decision on a run awaiting approval (the leader verified the
    /// signature against the operator's certificate before proposing it).
    DecideApproval {
        /// The run.
        run_id: String,
        /// The decision, with its signature and certificate.
        decision: crate::ApprovalDecision,
    },
    /// End a run whose approval request expired (refused before its expiry, in log time).
    ExpireApproval {
        /// The run.
        run_id: String,
    },
    /// The plan of a run awaiting approval, resolved again under the current configuration;
    /// `None` when that configuration no longer rotates the secret (the run ends).
    ReplanRun {
        /// The run.
        run_id: String,
        /// The new plan.
        spec: Option<crate::RunSpec>,
        /// Why there is none.
        reason: String,
    },
    /// Close a break-glass review (not by the operator who broke glass).
    CloseReview {
        /// The review.
        review_id: String,
        /// What the review found.
        note: String,
    },
    /// Mark a review past its deadline (refused before it, in log time).
    ReviewOverdue {
        /// The review.
        review_id: String,
    },
    /// Register the next generation of the cluster's evidence key (the leader, before its first
    /// checkpoint and at a rotation).
    RegisterEvidenceKey {
        /// The key and its certificate (`registered_at_ms` is set from the log).
        key: crate::EvidenceKey,
    },
    /// Record a signed checkpoint of the audit chain (the leader, at an interval).
    Checkpoint {
        /// The checkpoint.
        checkpoint: crate::SignedCheckpoint,
    },
    /// Start counting ended runs in [`crate::RunCounters`] (the leader, once). Counting starts at
    /// this entry rather than with the release that counts, so a node that replays an older log
    /// and one that restores a snapshot of it reach the same counters.
    StartRunCounters,
    /// Remind people of a secret past due or nearing it (the leader's reminders). Refused before
    /// `remind_at_ms` in log time, when the secret rotated since the leader looked
    /// (`last_rotated_ms` differs), or when this reminder was already sent for `due_ms` (an
    /// overdue one repeats after [`crate::OVERDUE_REPEAT_MS`]).
    Remind {
        /// The environment.
        env: String,
        /// The variable.
        key: String,
        /// Which reminder.
        reminder: crate::Reminder,
        /// When the secret last rotated, as the leader saw it.
        last_rotated_ms: Option<u64>,
        /// Its due time.
        due_ms: u64,
        /// When the reminder is due.
        remind_at_ms: u64,
        /// The text people read (no value; at most 512 bytes).
        detail: String,
    },
    /// A health-check probe an agent ran and signed, with the check's rules from the
    /// configuration (the leader adds them).
    RecordHealth {
        /// The agent.
        agent_id: String,
        /// The signed JSON body, hex.
        body_hex: String,
        /// Its Ed25519 signature, hex.
        signature_hex: String,
        /// The check's segment (the agent must be of it).
        segment: String,
        /// Failing probes in a row before the check fails.
        failures: u32,
        /// What a failure does.
        on_fail: crate::GateAction,
        /// What an inconclusive verdict does.
        on_inconclusive: crate::GateAction,
    },
    /// Stop a promotion line (`line`), or every run (`None`): no new run or step starts.
    HaltPromotion {
        /// The line; `None` for all.
        line: Option<String>,
        /// Why (required).
        reason: String,
    },
    /// Let a halted line (or everything) go on.
    ResumePromotion {
        /// The line; `None` for the `--all` halt.
        line: Option<String>,
        /// Why (required).
        reason: String,
    },
    /// The notifier read the audit log through `through_seq`: these deliveries are due.
    EnqueueNotifications {
        /// The last audit sequence read.
        through_seq: u64,
        /// One per event and channel.
        entries: Vec<crate::OutboxEntry>,
    },
    /// An agent's signed result of a delivery (verified here against its registered key).
    RecordDelivery {
        /// The agent.
        agent_id: String,
        /// The result's JSON body, hex.
        body_hex: String,
        /// Its Ed25519 signature, hex.
        signature_hex: String,
    },
    /// Create a report token (its hash and scope).
    CreateReportToken {
        /// The token, as stored.
        token: crate::ReportToken,
    },
    /// Revoke a report token.
    RevokeReportToken {
        /// Its id.
        id: String,
    },
    /// Append an event to the audit log.
    AppendAudit {
        /// What happened (`cluster.init`, `node.removed`, ...).
        action: String,
        /// What it happened to.
        subject: String,
        /// Details (never a secret value).
        detail: String,
    },
}

impl Command {
    /// Whether applying it may end an agent's session: it revokes an agent or a certificate.
    /// Nodes tell their sessions to look at the state after applying one.
    pub fn may_end_agent_sessions(&self) -> bool {
        matches!(self, Command::RevokeAgent { .. } | Command::RevokeIdentity { .. })
    }

    /// Roughly how many bytes the command takes in the log (for batching).
    pub fn approx_size(&self) -> usize {
        match self {
            Command::StoreConfig { config_yaml, catalog_files, fingerprints, .. } => {
                config_yaml.len()
                    + catalog_files.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                    + fingerprints.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            }
            Command::RecordReceipt { body_hex, signature_hex, .. } => {
                64 + body_hex.len() + signature_hex.len()
            }
            Command::StageConfigPart { upload, text, .. } => 64 + upload.len() + text.len(),
            Command::RequestRun { spec, reason, .. } => {
                256 + spec.config_json.len() + reason.len() + spec.store_ref.len()
            }
            Command::AppendAudit { action, subject, detail } => {
                64 + action.len() + subject.len() + detail.len()
            }
            Command::Remind { env, key, detail, .. } => 128 + env.len() + key.len() + detail.len(),
            Command::RegisterEvidenceKey { key } => 256 + key.certificate_pem.len(),
            Command::HaltPromotion { reason, .. } | Command::ResumePromotion { reason, .. } => {
                128 + reason.len()
            }
            Command::DecideApproval { decision, .. } => {
                256 + decision.reason.len() + decision.certificate_pem.len()
            }
            Command::ReplanRun { spec, .. } => {
                256 + spec.as_ref().map_or(0, |s| s.config_json.len())
            }
            _ => 256,
        }
    }

    /// The oldest log format that carries this command faithfully: 2 for the configuration
    /// commands format 2 added (a byte-bounded history, staged parts), 1 for the rest. An entry
    /// is written in the highest format of its commands, so that during a rolling upgrade the
    /// nodes of the previous release keep applying everything else.
    pub fn log_format(&self) -> u8 {
        match self {
            Command::StoreConfig { history_bytes: Some(_), .. }
            | Command::StageConfigPart { .. }
            | Command::StoreStagedConfig { .. } => 2,
            _ => 1,
        }
    }

    /// A short name for logs and audit events.
    pub fn name(&self) -> &'static str {
        match self {
            Command::StoreConfig { .. } => "store_config",
            Command::StageConfigPart { .. } => "stage_config_part",
            Command::StoreStagedConfig { .. } => "store_staged_config",
            Command::RegisterNode { .. } => "register_node",
            Command::ForgetNode { .. } => "forget_node",
            Command::CreateJoinToken { .. } => "create_join_token",
            Command::ConsumeJoinToken { .. } => "consume_join_token",
            Command::AppendAudit { .. } => "append_audit",
            Command::RegisterAgent { .. } => "register_agent",
            Command::CreateAgentToken { .. } => "create_agent_token",
            Command::EnrollAgent { .. } => "enroll_agent",
            Command::RenewAgentCertificate { .. } => "renew_agent_certificate",
            Command::RevokeAgent { .. } => "revoke_agent",
            Command::RequestRun { .. } => "request_run",
            Command::DispatchStep { .. } => "dispatch_step",
            Command::RecordReceipt { .. } => "record_receipt",
            Command::StepTimedOut { .. } => "step_timed_out",
            Command::RevokeIdentity { .. } => "revoke_identity",
            Command::SetRole { .. } => "set_role",
            Command::InviteOperator { .. } => "invite_operator",
            Command::EnrollOperator { .. } => "enroll_operator",
            Command::RenewOperatorCertificate { .. } => "renew_operator_certificate",
            Command::RevokeOperator { .. } => "revoke_operator",
            Command::DecideApproval { .. } => "decide_approval",
            Command::ExpireApproval { .. } => "expire_approval",
            Command::ReplanRun { .. } => "replan_run",
            Command::CloseReview { .. } => "close_review",
            Command::EnqueueNotifications { .. } => "enqueue_notifications",
            Command::RecordDelivery { .. } => "record_delivery",
            Command::ReviewOverdue { .. } => "review_overdue",
            Command::Remind { .. } => "remind",
            Command::RegisterEvidenceKey { .. } => "register_evidence_key",
            Command::Checkpoint { .. } => "checkpoint",
            Command::StartRunCounters => "start_run_counters",
            Command::HaltPromotion { .. } => "halt_promotion",
            Command::RecordHealth { .. } => "record_health",
            Command::ResumePromotion { .. } => "resume_promotion",
            Command::CreateReportToken { .. } => "create_report_token",
            Command::RevokeReportToken { .. } => "revoke_report_token",
        }
    }
}

/// One line of a configuration diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// `added`, `removed` or `modified`.
    pub action: String,
    /// The item, e.g. `envs.prod.DB_PASSWORD`.
    pub path: String,
}
