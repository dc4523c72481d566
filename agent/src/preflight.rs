//! Preflight: could a rotation of a secret of this service work now? The agent looks without
//! changing anything — its admin credential is in its store, the target answers, the credential
//! may change passwords (PostgreSQL: superuser or `CREATEROLE`; MySQL/MariaDB: `CREATE USER`),
//! and the two users of a two-key rotation hold the same grants.

use dsops_proto::wire::agent as wire;
use dsops_proto::wire::common::PreflightCheck;

use crate::executor::Executor;

fn check(name: &str, ok: bool, detail: impl Into<String>) -> PreflightCheck {
    PreflightCheck { name: name.to_owned(), ok, detail: detail.into(), warning: false }
}

/// The query that says whether the admin may change other users' passwords ("true"/"false").
fn privilege_query(service_type: &str) -> Option<&'static str> {
    match service_type {
        "postgresql" => Some(
            "select (rolsuper or rolcreaterole)::text from pg_roles where rolname = current_user",
        ),
        "mysql" => Some(
            "select if(count(*) > 0, 'true', 'false') from information_schema.user_privileges \
             where privilege_type = 'CREATE USER' \
             and grantee = concat('''', substring_index(current_user(), '@', 1), '''@''', substring_index(current_user(), '@', -1), '''')",
        ),
        _ => None,
    }
}

/// The command that shows the target answers (and the admin credential logs in).
fn reach_query(service_type: &str) -> &'static str {
    match service_type {
        "redis" => "PING",
        _ => "select 1",
    }
}

/// For a certificate, AWS or HTTP API service: whether the agent's own credential for it (the
/// CA, the ACME account, the AWS or API credential) is in its store. An ACME account is created
/// on first use; AWS and API services that name no credential use the agent's environment.
async fn own_credential(executor: &Executor, service: &str) -> Option<Vec<PreflightCheck>> {
    let config = executor.config();
    if let Some(why) = config.unusable.get(service) {
        return Some(vec![check("credential", false, why.clone())]);
    }
    let (credential, optional) = if let Some(spec) = config.certificates.get(service) {
        let acme = matches!(spec.issuer, crate::certificate::Issuer::Acme(_));
        (Some(spec.issuer.credential().clone()), acme)
    } else if let Some(spec) = config.aws.get(service) {
        (spec.admin.clone(), false)
    } else if let Some(spec) = config.http.get(service) {
        (spec.admin.clone(), false)
    } else {
        return None;
    };
    let Some(credential) = credential else {
        return Some(vec![check(
            "credential",
            true,
            "the agent's own credentials (environment or host)",
        )]);
    };
    // Off the async workers, as every store read.
    let held = match executor.store(&credential.store) {
        Ok(store) => crate::strategy::AsyncStore(store)
            .read(&credential.path, crate::store::Label::Current)
            .await
            .ok()
            .flatten()
            .is_some(),
        Err(_) => false,
    };
    Some(vec![match (held, optional) {
        (true, _) => check("credential", true, format!("{credential} is in the agent's store")),
        (false, true) => {
            check("credential", true, format!("{credential} is created or read on first use"))
        }
        (false, false) => check(
            "credential",
            false,
            format!("{credential} is not in the agent's store (dsops store put)"),
        ),
    }])
}

/// Runs the checks of `request`.
pub async fn perform(executor: &Executor, request: &wire::Preflight) -> wire::PreflightResult {
    let checks = checks(executor, request).await;
    wire::PreflightResult { id: request.id.clone(), checks }
}

async fn checks(executor: &Executor, request: &wire::Preflight) -> Vec<PreflightCheck> {
    let mut out = Vec::new();
    let service = &request.service;
    if let Some(checks) = own_credential(executor, service).await {
        return checks;
    }
    let Some(spec) = executor.config().services.get(service) else {
        out.push(check(
            "credential",
            false,
            format!("this agent does not reach service {service:?}"),
        ));
        return out;
    };
    let target = match executor.probe_target(service) {
        Ok(target) => target,
        Err(why) => {
            out.push(check("credential", false, why));
            return out;
        }
    };
    out.push(check("credential", true, format!("{} is in the agent's store", spec.admin)));
    if let Err(error) = target.probe(reach_query(&spec.service_type)).await {
        out.push(check("reach", false, error.message));
        return out;
    }
    out.push(check("reach", true, format!("{}:{} answers", spec.host, spec.port)));
    if let Some(query) = privilege_query(&spec.service_type) {
        let found = match target.probe(query).await {
            Ok(Some(value)) if value == "true" || value == "1" => {
                check("privilege", true, "the admin credential may change passwords")
            }
            Ok(_) => check(
                "privilege",
                false,
                match spec.service_type.as_str() {
                    "postgresql" => {
                        "the admin role is neither superuser nor CREATEROLE: it cannot change passwords"
                    }
                    _ => "the admin user lacks CREATE USER: it cannot change passwords",
                },
            ),
            Err(error) => check("privilege", false, error.message),
        };
        out.push(found);
    }
    for user in &request.usernames {
        match target.user_exists(user).await {
            Ok(true) => {}
            Ok(false) => out.push(check("users", false, format!("user {user:?} does not exist"))),
            Err(error) => out.push(check("users", false, error.message)),
        }
    }
    if request.strategy == "two-key"
        && let [a, b] = request.usernames.as_slice()
    {
        let grants = (target.privileges(a).await, target.privileges(b).await);
        out.push(match grants {
            (Ok(first), Ok(second)) if first == second => {
                check("grants", true, format!("{a} and {b} hold the same grants"))
            }
            (Ok(first), Ok(second)) => {
                let only = |x: &[String], y: &[String]| {
                    x.iter().filter(|g| !y.contains(g)).cloned().collect::<Vec<_>>().join(", ")
                };
                check(
                    "grants",
                    false,
                    format!(
                        "{a} and {b} hold different grants (only {a}: {}; only {b}: {}): after a switch the application would lose or gain rights",
                        only(&first, &second),
                        only(&second, &first)
                    ),
                )
            }
            (Err(error), _) | (_, Err(error)) => check("grants", false, error.message),
        });
    }
    out
}
