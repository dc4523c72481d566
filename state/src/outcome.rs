//! What applying a request produced ([`Outcome`]), and the response a proposer gets.

use dsops_proto::ErrorCode;
use serde::{Deserialize, Serialize};

use super::ConfigChange;
use super::runs::RunPhase;

/// What applying a request produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outcome {
    /// A first-stage start waits: a new wave of the line follows the one under way.
    WaveQueued {
        /// The line.
        line: String,
        /// The wave under way.
        wave: u64,
    },
    /// A health-check probe was recorded.
    GateRecorded {
        /// The check.
        check: String,
        /// Its verdict now.
        verdict: crate::GateVerdict,
    },
    /// A promotion line was halted or resumed (`*`: everything).
    PromotionUpdated {
        /// The line.
        line: String,
    },
    /// A configuration was stored.
    ConfigStored {
        /// The new version.
        version: u64,
        /// The version it replaced (0 for none).
        previous_version: u64,
        /// What changed.
        changes: Vec<ConfigChange>,
    },
    /// A part of a configuration upload was staged.
    ConfigPartStaged {
        /// Its index.
        part: u32,
        /// The upload's bytes so far.
        bytes: u64,
    },
    /// A node record was written or removed.
    NodeUpdated {
        /// The node id.
        node_id: u64,
    },
    /// A join token was created.
    TokenCreated,
    /// A join token was consumed; the node id assigned.
    TokenConsumed {
        /// The new node's id.
        node_id: u64,
    },
    /// An audit event was appended.
    Audited {
        /// Its sequence number.
        seq: u64,
    },
    /// An agent was registered.
    AgentRegistered {
        /// Its id.
        agent_id: String,
    },
    /// An agent enrolment token was created.
    AgentTokenCreated,
    /// An operator's roles changed.
    RolesChanged {
        /// The operator.
        operator: String,
        /// Its roles now.
        grants: Vec<dsops_proto::domain::RoleGrant>,
    },
    /// A delivery's result was recorded.
    DeliveryRecorded {
        /// The delivery.
        id: String,
    },
    /// Deliveries were queued.
    NotificationsQueued {
        /// The audit sequence read through.
        through_seq: u64,
        /// How many.
        queued: u32,
    },
    /// A review changed (closed, or marked overdue).
    ReviewUpdated {
        /// The review.
        review_id: String,
    },
    /// A decision was recorded.
    ApprovalRecorded {
        /// The run.
        run_id: String,
        /// Its phase now (`AwaitingApproval`, `Requested` once approved, `Denied`).
        phase: RunPhase,
        /// Approvals counted in this round.
        approvals: u32,
        /// Approvals needed.
        required: u32,
    },
    /// An operator enrolled or renewed its certificate.
    OperatorEnrolled {
        /// The operator.
        name: String,
        /// Its roles now.
        grants: Vec<dsops_proto::domain::RoleGrant>,
    },
    /// A certificate identity was revoked.
    IdentityRevoked {
        /// `role:name`.
        identity: String,
    },
    /// An agent was revoked.
    AgentRevoked {
        /// Its id.
        agent_id: String,
    },
    /// A run was started.
    RunStarted {
        /// Its id.
        run_id: String,
        /// The generation it holds.
        generation: u64,
    },
    /// A run moved (or a step was recorded).
    RunUpdated {
        /// The run.
        run_id: String,
        /// Its phase now.
        phase: RunPhase,
    },
    /// A receipt was refused (bad signature, stale generation, unknown agent, late result);
    /// the refusal is in the audit log.
    ReceiptRefused {
        /// Why, in full (the audit log has it too).
        reason: String,
        /// Why, as the sending agent is told: names no other agent and no generation.
        #[serde(default)]
        for_agent: String,
    },
    /// A raft-internal entry (blank or membership) with nothing to report.
    Noop,
    /// A report token was created or revoked.
    ReportTokenUpdated {
        /// Its id.
        id: String,
    },
    /// The command was refused; nothing changed.
    Rejected {
        /// Which class of refusal (stored by its stable name, `failed_precondition`, ...).
        code: ErrorCode,
        /// Why.
        message: String,
    },
}

impl Outcome {
    /// A refusal: nothing changed.
    pub fn rejected(code: ErrorCode, message: impl Into<String>) -> Outcome {
        Outcome::Rejected { code, message: message.into() }
    }
}

/// The response to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The log index at which the request was first applied.
    pub index: u64,
    /// What happened.
    pub outcome: Outcome,
    /// True when this is the remembered response to an earlier identical request id.
    pub duplicate: bool,
}
