//! Checks of a configuration against the catalog, and what each variable resolves to: its
//! service type, credential kind, policy, strategy and schedule (and where each came from).

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{Config, SecretConfig, ServiceConfig};
use crate::catalog::{Capability, Catalog, CredentialKind, RotationPolicy, ServiceType, Strategy};
use crate::document::{Diagnostics, suggest};
use crate::time::{Duration, MaintenanceWindow, Schedule};

/// Where a resolved setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The variable's own `rotation` block.
    Variable,
    /// The variable's rotation policy.
    Policy,
    /// The service type's defaults in the catalog.
    ServiceType,
    /// `rotation.defaults` in dsops.yaml.
    Defaults,
}

/// One variable with everything it refers to resolved.
#[derive(Debug, Clone)]
pub struct ResolvedSecret<'a> {
    /// The variable as configured.
    pub secret: &'a SecretConfig,
    /// Its service, if it has one.
    pub service: Option<&'a ServiceConfig>,
    /// That service's type.
    pub service_type: Option<&'a ServiceType>,
    /// The credential kind named by `?kind=`.
    pub kind: Option<&'a CredentialKind>,
    /// The rotation policy, with its name.
    pub policy: Option<(&'a str, &'a RotationPolicy)>,
    /// The strategy; `None` when the variable does not rotate.
    pub strategy: Option<(Strategy, Origin)>,
    /// The schedule; `None` for manual rotation only.
    pub schedule: Option<(Schedule, Origin)>,
    /// Maintenance windows of the policy.
    pub windows: &'a [MaintenanceWindow],
    /// Whether a rotation waits for approval (`approval` is then set).
    pub approval_required: bool,
    /// Who must approve: `rotation.approvals.<env>` in dsops.yaml, else the catalog default
    /// when the policy says `constraints.requireApproval: true`.
    pub approval: Option<super::ApprovalRule>,
    /// How long the old credential stays valid after promotion.
    pub grace_period: Option<Duration>,
}

impl ResolvedSecret<'_> {
    /// The rate limit its rotations start at, as written: the service's `rate_limit`, else its
    /// type's default (`rateLimit` in the catalog); `None` without a service or a limit.
    pub fn rate_limit(&self) -> Option<&str> {
        let service = self.service?;
        service.rate_limit.as_deref().or_else(|| {
            self.service_type.and_then(|t| t.spec.defaults.as_ref()?.rate_limit.as_deref())
        })
    }
}

/// Resolves every variable, reporting each problem. Variables with errors are left out.
pub fn resolve<'a>(
    config: &'a Config,
    catalog: &'a Catalog,
    diagnostics: &mut Diagnostics,
) -> Vec<ResolvedSecret<'a>> {
    check_services(config, catalog, diagnostics);
    let mut resolved = Vec::new();
    for env in config.envs.values() {
        for secret in env.secrets.values() {
            let before = diagnostics.error_count();
            let candidate = resolve_one(config, catalog, secret, diagnostics);
            if diagnostics.error_count() == before
                && let Some(candidate) = candidate
            {
                resolved.push(candidate);
            }
        }
    }
    check_conflicts(config, &resolved, diagnostics);
    resolved
}

/// Resolves one variable by environment and name: `None` when there is no such variable or it
/// does not resolve. The checks across variables ([`resolve`]'s conflicts) are not repeated:
/// they held when the configuration validated.
pub(crate) fn resolve_named<'a>(
    config: &'a Config,
    catalog: &'a Catalog,
    env: &str,
    key: &str,
) -> Option<ResolvedSecret<'a>> {
    let secret = config.envs.get(env)?.secrets.get(key)?;
    let mut diagnostics = Diagnostics::new();
    let candidate = resolve_one(config, catalog, secret, &mut diagnostics)?;
    (diagnostics.error_count() == 0).then_some(candidate)
}

fn check_services(config: &Config, catalog: &Catalog, diagnostics: &mut Diagnostics) {
    for service in config.services.values() {
        let path = format!("services.{}.type", service.name);
        let pos = service.node.at_pointer("/type").pos;
        if catalog.service_type(&service.service_type).is_none() {
            let mut message = format!("unknown service type {:?}", service.service_type);
            if let Some(hint) =
                suggest(&service.service_type, catalog.service_types.keys().map(String::as_str))
            {
                message.push_str(&format!("; did you mean {hint:?}?"));
            } else {
                message.push_str("; add it to the catalog (rotation.dataDir) or use one of: ");
                message.push_str(
                    &catalog.service_types.keys().cloned().collect::<Vec<_>>().join(", "),
                );
            }
            diagnostics.error(&config.file, pos, &path, message);
        } else if let Some((admin, store)) = service
            .admin_store
            .as_ref()
            .and_then(|a| config.secret_stores.get(&a.store).map(|s| (a, s)))
            .filter(|(_, s)| in_segment(&s.segment) != in_segment(&service.segment))
        {
            diagnostics.error(
                &config.file,
                service.node.at_pointer("/admin_store").pos,
                &format!("services.{}.admin_store", service.name),
                format!(
                    "store {:?} is in segment {:?} but the service is in segment {:?}; the \
                     agents of {2:?} hold the stores of their own segment only, so none could \
                     read {admin}",
                    store.name,
                    in_segment(&store.segment),
                    in_segment(&service.segment),
                ),
            );
        } else if super::fields_table::service_fields(&service.service_type).is_none() {
            diagnostics.warning(
                &config.file,
                pos,
                &path,
                format!("dsops has no adapter for {:?}; only the script and webhook strategies can rotate its credentials", service.service_type),
            );
        }
    }
}

fn resolve_one<'a>(
    config: &'a Config,
    catalog: &'a Catalog,
    secret: &'a SecretConfig,
    diagnostics: &mut Diagnostics,
) -> Option<ResolvedSecret<'a>> {
    let file = config.file.as_str();
    let base = format!("envs.{}.{}", secret.env, secret.key);
    let at = |pointer: &str| secret.node.at_pointer(pointer).pos;
    let service = secret.service.as_ref().and_then(|r| config.services.get(&r.service));
    let service_type = service.and_then(|s| catalog.service_type(&s.service_type));
    if (secret.service.is_some() && service.is_none())
        || (service.is_some() && service_type.is_none())
    {
        return None; // Reported where the service is defined.
    }
    let kind = match (secret.service.as_ref(), service_type) {
        (Some(reference), Some(service_type)) => {
            let wanted = reference.kind.as_deref().unwrap_or_default();
            match service_type.credential_kind(wanted) {
                Some(kind) => Some(kind),
                None => {
                    let known: Vec<&str> = service_type
                        .spec
                        .credential_kinds
                        .iter()
                        .map(|k| k.name.as_str())
                        .collect();
                    let mut message = format!(
                        "service type {:?} has no credential kind {wanted:?}",
                        service_type.metadata.name
                    );
                    match suggest(wanted, known.iter().copied()) {
                        Some(hint) => message.push_str(&format!("; did you mean {hint:?}?")),
                        None => message.push_str(&format!(" (it has: {})", known.join(", "))),
                    }
                    diagnostics.error(
                        file,
                        at("/from/service"),
                        &format!("{base}.from.service"),
                        message,
                    );
                    // Carry on: the policy can still be checked.
                    None
                }
            }
        }
        _ => None,
    };
    let Some(rotation) = &secret.rotation else {
        return Some(ResolvedSecret {
            secret,
            service,
            service_type,
            kind,
            policy: None,
            strategy: None,
            schedule: None,
            windows: &[],
            approval_required: false,
            approval: None,
            grace_period: None,
        });
    };
    if let Some(service) = service {
        check_segments(config, secret, service, diagnostics);
    }
    let policy = match &rotation.policy {
        None => None,
        Some(name) => match catalog.rotation_policies.get_key_value(name) {
            Some((name, entry)) => Some((name.as_str(), &entry.value)),
            None => {
                let mut message = format!("unknown rotation policy {name:?}");
                match suggest(name, catalog.rotation_policies.keys().map(String::as_str)) {
                    Some(hint) => message.push_str(&format!("; did you mean {hint:?}?")),
                    None => message.push_str(&format!(
                        " (the catalog has: {})",
                        catalog.rotation_policies.keys().cloned().collect::<Vec<_>>().join(", ")
                    )),
                }
                diagnostics.error(
                    file,
                    at("/rotation/policy"),
                    &format!("{base}.rotation.policy"),
                    message,
                );
                return None;
            }
        },
    };
    if let Some((name, policy)) = policy {
        let excluded = policy
            .spec
            .constraints
            .as_ref()
            .is_some_and(|c| c.exclude_environments.contains(&secret.env));
        if excluded {
            diagnostics.error(
                file,
                at("/rotation/policy"),
                &format!("{base}.rotation.policy"),
                format!("policy {name:?} excludes environment {:?}", secret.env),
            );
        }
    }
    let strategy = rotation
        .strategy
        .map(|s| (s, Origin::Variable))
        .or_else(|| policy.map(|(_, p)| (p.spec.strategy, Origin::Policy)))
        .or_else(|| {
            service_type.and_then(ServiceType::default_strategy).map(|s| (s, Origin::ServiceType))
        });
    let Some((chosen, _)) = strategy else {
        diagnostics.error(
            file,
            at("/rotation"),
            &format!("{base}.rotation"),
            "no strategy: set `strategy`, or a `policy` that has one",
        );
        return None;
    };
    if service.is_none() || kind.is_some() {
        super::strategy_rules::check(
            file,
            &base,
            secret,
            service,
            service_type,
            kind,
            chosen,
            diagnostics,
        );
    }
    let schedule = rotation
        .schedule
        .clone()
        .map(|s| (s, Origin::Variable))
        .or_else(|| {
            policy
                .and_then(|(_, p)| p.spec.schedule.as_deref())
                .and_then(|s| Schedule::parse(s).ok())
                .map(|s| (s, Origin::Policy))
        })
        .or_else(|| config.rotation.defaults.schedule.clone().map(|s| (s, Origin::Defaults)));
    let grace_period = policy
        .and_then(|(_, p)| p.spec.cutover.as_ref())
        .and_then(|c| c.grace_period.as_deref())
        .and_then(|g| Duration::parse(g).ok())
        .or(config.rotation.defaults.grace_period);
    let approval = config.rotation.approvals.get(&secret.env).cloned().or_else(|| {
        policy
            .is_some_and(|(_, p)| p.requires_approval())
            .then(super::ApprovalRule::catalog_default)
    });
    Some(ResolvedSecret {
        secret,
        service,
        service_type,
        kind,
        policy,
        strategy,
        schedule,
        windows: policy.map(|(name, _)| catalog.policy_windows(name)).unwrap_or_default(),
        approval_required: approval.is_some(),
        approval,
        grace_period,
    })
}

/// A rotated secret's work runs on one agent, which holds the stores and services of its own
/// segment only: a service in one segment and a store in another leave no agent to do it.
fn check_segments(
    config: &Config,
    secret: &SecretConfig,
    service: &ServiceConfig,
    diagnostics: &mut Diagnostics,
) {
    let Some(store) = config.secret_stores.get(&secret.store.store) else { return };
    let (service_segment, store_segment) =
        (in_segment(&service.segment), in_segment(&store.segment));
    if service_segment != store_segment {
        diagnostics.error(
            &config.file,
            secret.node.at_pointer("/from/store").pos,
            &format!("envs.{}.{}.from.store", secret.env, secret.key),
            format!(
                "store {:?} is in segment {store_segment:?} but service {:?} is in segment \
                 {service_segment:?}; an agent holds the stores and services of its own segment \
                 only, so no agent could rotate it: use a store of segment {service_segment:?}",
                store.name, service.name
            ),
        );
    }
}

/// The segment a store or service is in: its own, else `default`.
fn in_segment(segment: &Option<String>) -> &str {
    segment.as_deref().unwrap_or("default")
}

/// Whether the kind can be rotated at all.
pub(super) fn rotatable(kind: &CredentialKind) -> bool {
    kind.capabilities.contains(&Capability::Rotate)
        || kind.capabilities.contains(&Capability::Create)
}

/// Two variables must not write the same store location, nor rotate the same database user.
fn check_conflicts(
    config: &Config,
    resolved: &[ResolvedSecret<'_>],
    diagnostics: &mut Diagnostics,
) {
    let mut locations: BTreeMap<String, String> = BTreeMap::new();
    let mut users: BTreeMap<(String, String), String> = BTreeMap::new();
    for item in resolved {
        let secret = item.secret;
        let here = format!("envs.{}.{}", secret.env, secret.key);
        // `store://s/p` (the whole value) and `store://s/p#value` are one location.
        let location = format!(
            "store://{}/{}#{}",
            secret.store.store,
            secret.store.path,
            secret.store.value_field()
        );
        if item.strategy.is_some()
            && let Some(first) = locations.insert(location, here.clone())
        {
            diagnostics.error(
                    &config.file,
                    secret.node.at_pointer("/from/store").pos,
                    &format!("{here}.from.store"),
                    format!("{} is also rotated by {first}; two rotations writing one location would overwrite each other", secret.store),
                );
        }
        let Some(service) = item.service else { continue };
        for user in super::strategy_rules::target_users(item) {
            if let Some(first) = users.insert((service.name.clone(), user.clone()), here.clone()) {
                diagnostics.error(
                    &config.file,
                    secret.node.at_pointer("/rotation/config").pos,
                    &format!("{here}.rotation.config"),
                    format!("user {user:?} on service {:?} is also rotated by {first}; one user's password cannot belong to two variables", service.name),
                );
            }
        }
    }
}
