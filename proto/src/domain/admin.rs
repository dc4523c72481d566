//! Admin API requests as domain types.

use std::collections::BTreeMap;

use super::{ProtocolError, RequestId, ServiceRef};
use crate::wire::admin as wire;

/// A secret is named by its environment and variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretKey {
    /// The environment.
    pub env: String,
    /// The variable.
    pub key: String,
}

impl SecretKey {
    /// Validates an environment and variable name pair.
    pub fn parse(env: &str, key: &str) -> Result<SecretKey, ProtocolError> {
        super::names::check_config_name(env, "environment")
            .map_err(|reason| ProtocolError::invalid("env", reason))?;
        super::names::check_variable_name(key)
            .map_err(|reason| ProtocolError::invalid("key", reason))?;
        Ok(SecretKey { env: env.to_owned(), key: key.to_owned() })
    }
}

impl TryFrom<wire::SecretKey> for SecretKey {
    type Error = ProtocolError;

    fn try_from(secret: wire::SecretKey) -> Result<SecretKey, ProtocolError> {
        let wire::SecretKey { env, key } = secret;
        SecretKey::parse(&env, &key)
    }
}

impl From<&SecretKey> for wire::SecretKey {
    fn from(secret: &SecretKey) -> wire::SecretKey {
        wire::SecretKey { env: secret.env.clone(), key: secret.key.clone() }
    }
}

/// `ApplyConfig`: store a configuration and catalog files in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConfig {
    /// Makes a retry apply once.
    pub request_id: RequestId,
    /// The dsops.yaml text (validated again by the server).
    pub config_yaml: String,
    /// The file name, for messages.
    pub config_path: String,
    /// Catalog documents by relative path.
    pub catalog_files: BTreeMap<String, String>,
    /// Optimistic concurrency: apply only over this stored version.
    pub expected_version: Option<u64>,
}

/// The largest configuration or catalog file accepted (the raft log carries it): room for
/// 100,000 secrets written one per line.
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;
/// The largest configuration plus catalog files accepted in one apply.
pub const MAX_APPLY_BYTES: usize = 24 << 20;
/// The largest admin API message a node or the CLI accepts: an apply at [`MAX_APPLY_BYTES`],
/// or a stored configuration with its catalog files read back.
pub const MAX_ADMIN_MESSAGE: usize = 32 << 20;

impl TryFrom<wire::ApplyConfigRequest> for ApplyConfig {
    type Error = ProtocolError;

    fn try_from(request: wire::ApplyConfigRequest) -> Result<ApplyConfig, ProtocolError> {
        let wire::ApplyConfigRequest {
            request_id,
            config_yaml,
            config_path,
            catalog_files,
            expected_version,
        } = request;
        if config_yaml.trim().is_empty() {
            return Err(ProtocolError::missing("config_yaml"));
        }
        if config_yaml.len() > MAX_DOCUMENT_BYTES {
            return Err(ProtocolError::invalid(
                "config_yaml",
                format!("is larger than {MAX_DOCUMENT_BYTES} bytes"),
            ));
        }
        for (path, text) in &catalog_files {
            let bad_path = path.is_empty()
                || path.starts_with('/')
                || path.split('/').any(|s| s.is_empty() || s == "." || s == "..");
            if bad_path {
                return Err(ProtocolError::invalid(
                    format!("catalog_files[{path:?}]"),
                    "must be a relative path without '.' or '..' segments",
                ));
            }
            if text.len() > MAX_DOCUMENT_BYTES {
                return Err(ProtocolError::invalid(
                    format!("catalog_files[{path:?}]"),
                    format!("is larger than {MAX_DOCUMENT_BYTES} bytes"),
                ));
            }
        }
        let total =
            config_yaml.len() + catalog_files.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if total > MAX_APPLY_BYTES {
            return Err(ProtocolError::invalid(
                "catalog_files",
                format!(
                    "the configuration and catalog files together are larger than {MAX_APPLY_BYTES} bytes"
                ),
            ));
        }
        Ok(ApplyConfig {
            request_id: RequestId::parse(&request_id, "request_id")?,
            config_yaml,
            config_path: if config_path.is_empty() { "dsops.yaml".to_owned() } else { config_path },
            catalog_files: catalog_files.into_iter().collect(),
            expected_version: (expected_version != 0).then_some(expected_version),
        })
    }
}

/// Which secrets a rotation request selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateSelector {
    /// One secret.
    Secret(SecretKey),
    /// Every secret of an environment that is due.
    AllDueInEnv(String),
    /// Every secret using a service (optionally one kind) under a policy.
    ServicePolicy {
        /// `svc://...`
        service: ServiceRef,
        /// A RotationPolicy name.
        policy: String,
    },
}

/// `Rotate`: start rotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateRequest {
    /// Makes a retry apply once.
    pub request_id: RequestId,
    /// What to rotate.
    pub selector: RotateSelector,
    /// Rotate even if not due and outside windows (audited).
    pub force: bool,
    /// Only say what would run.
    pub dry_run: bool,
    /// Why, for the audit log.
    pub reason: String,
    /// Only these of the selected secrets (empty: all of them).
    pub only: std::collections::BTreeSet<SecretKey>,
    /// Break glass: one secret, now, past approval and windows, with a reason; opens a review.
    pub break_glass: bool,
}

/// The most secrets a rotate request may narrow its selection to.
pub const MAX_ONLY: usize = 10_000;

impl TryFrom<wire::RotateRequest> for RotateRequest {
    type Error = ProtocolError;

    fn try_from(request: wire::RotateRequest) -> Result<RotateRequest, ProtocolError> {
        let wire::RotateRequest { request_id, selector, force, dry_run, reason, only, break_glass } =
            request;
        if reason.len() > 1024 {
            return Err(ProtocolError::invalid("reason", "longer than 1024 bytes"));
        }
        if only.len() > MAX_ONLY {
            return Err(ProtocolError::invalid(
                "only",
                format!("names more than {MAX_ONLY} secrets"),
            ));
        }
        let only = only
            .into_iter()
            .enumerate()
            .map(|(i, key)| SecretKey::try_from(key).map_err(|e| e.within(&format!("only[{i}]"))))
            .collect::<Result<_, _>>()?;
        let selector = match selector.ok_or_else(|| ProtocolError::missing("selector"))? {
            wire::rotate_request::Selector::Secret(secret) => {
                RotateSelector::Secret(SecretKey::try_from(secret).map_err(|e| e.within("secret"))?)
            }
            wire::rotate_request::Selector::AllDueInEnv(env) => {
                SecretKey::parse(&env, "_").map_err(|_| {
                    ProtocolError::invalid(
                        "all_due_in_env",
                        format!("{env:?} is not an environment name"),
                    )
                })?;
                RotateSelector::AllDueInEnv(env)
            }
            wire::rotate_request::Selector::ServicePolicy(wire::ServicePolicy {
                service_ref,
                policy,
            }) => {
                let service = ServiceRef::parse(&service_ref).map_err(|e| {
                    ProtocolError::invalid("service_policy.service_ref", e.to_string())
                })?;
                if policy.is_empty() {
                    return Err(ProtocolError::missing("service_policy.policy"));
                }
                RotateSelector::ServicePolicy { service, policy }
            }
        };
        if break_glass {
            if !matches!(selector, RotateSelector::Secret(_)) {
                return Err(ProtocolError::invalid(
                    "break_glass",
                    "breaks glass for one secret: name it with --env and --key",
                ));
            }
            if reason.trim().is_empty() {
                return Err(ProtocolError::invalid("reason", "breaking glass needs a reason"));
            }
            if dry_run {
                return Err(ProtocolError::invalid("break_glass", "not with a dry run"));
            }
        }
        Ok(RotateRequest {
            request_id: RequestId::parse(&request_id, "request_id")?,
            selector,
            force,
            dry_run,
            reason,
            only,
            break_glass,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef-0001";

    #[test]
    fn apply_config_checks_paths_and_sizes() {
        let request = wire::ApplyConfigRequest {
            request_id: ID.into(),
            config_yaml: "version: 1\n".into(),
            config_path: String::new(),
            catalog_files: [("service-types/x.yaml".to_owned(), "a: 1".to_owned())].into(),
            expected_version: 0,
        };
        let apply = ApplyConfig::try_from(request.clone()).unwrap();
        assert_eq!(apply.config_path, "dsops.yaml");
        assert_eq!(apply.expected_version, None);
        let mut escape = request.clone();
        escape.catalog_files = [("../etc/passwd".to_owned(), String::new())].into();
        assert!(ApplyConfig::try_from(escape).unwrap_err().reason.contains("relative path"));
        let mut big = request.clone();
        big.config_yaml = "x".repeat(MAX_DOCUMENT_BYTES + 1);
        assert_eq!(ApplyConfig::try_from(big).unwrap_err().field, "config_yaml");
        let mut no_id = request;
        no_id.request_id = "x".into();
        assert_eq!(ApplyConfig::try_from(no_id).unwrap_err().field, "request_id");
    }

    #[test]
    fn rotate_request_converts_each_selector() {
        let secret = wire::RotateRequest {
            request_id: ID.into(),
            selector: Some(wire::rotate_request::Selector::Secret(wire::SecretKey {
                env: "prod".into(),
                key: "DB_PASSWORD".into(),
            })),
            force: false,
            dry_run: true,
            reason: String::new(),
            only: Vec::new(),
            break_glass: false,
        };
        assert!(matches!(
            RotateRequest::try_from(secret).unwrap().selector,
            RotateSelector::Secret(_)
        ));
        let bad_key = wire::RotateRequest {
            request_id: ID.into(),
            selector: Some(wire::rotate_request::Selector::Secret(wire::SecretKey {
                env: "prod".into(),
                key: "DB-PASSWORD".into(),
            })),
            force: false,
            dry_run: false,
            reason: String::new(),
            only: Vec::new(),
            break_glass: false,
        };
        assert_eq!(RotateRequest::try_from(bad_key).unwrap_err().field, "secret.key");
        let service = wire::RotateRequest {
            request_id: ID.into(),
            selector: Some(wire::rotate_request::Selector::ServicePolicy(wire::ServicePolicy {
                service_ref: "svc://pg".into(),
                policy: "p".into(),
            })),
            force: true,
            dry_run: false,
            reason: String::new(),
            only: Vec::new(),
            break_glass: false,
        };
        assert!(matches!(
            RotateRequest::try_from(service).unwrap().selector,
            RotateSelector::ServicePolicy { .. }
        ));
        let none = wire::RotateRequest {
            request_id: ID.into(),
            selector: None,
            force: false,
            dry_run: false,
            reason: String::new(),
            only: Vec::new(),
            break_glass: false,
        };
        assert_eq!(RotateRequest::try_from(none).unwrap_err().field, "selector");
        let narrowed = wire::RotateRequest {
            request_id: ID.into(),
            selector: Some(wire::rotate_request::Selector::AllDueInEnv("prod".into())),
            force: false,
            dry_run: false,
            reason: String::new(),
            only: vec![
                wire::SecretKey { env: "prod".into(), key: "A".into() },
                wire::SecretKey { env: "prod".into(), key: "b-c".into() },
            ],
            break_glass: false,
        };
        assert_eq!(RotateRequest::try_from(narrowed).unwrap_err().field, "only[1].key");
    }
}
