//! The agent's configuration read from a `dsops.yaml`: its secret stores (file stores with their
//! directories and keys), the services it reaches with their admin stores, and the `script` and
//! `webhook` services it may call. Both the `dsops-agent` binary and the embedded default's
//! in-process agent build theirs here.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail};
use dsops_config::config::{Loaded, ServiceConfig};
use dsops_proto::domain::StoreRef;

use crate::config::{AgentConfig, ServiceSpec, StoreSpec};
use crate::hook::{HookSpec, ScriptSpec, WebhookSpec};
use crate::store::{
    FileStore, FileStoreOptions, SecretStore, SecretsManagerOptions, SecretsManagerStore,
};

/// Where a file store keeps its entries and key.
pub fn file_store_options(
    loaded: &Loaded,
    name: &str,
    state_dir: &Path,
    base_dir: &Path,
) -> anyhow::Result<FileStoreOptions> {
    let store = loaded
        .config
        .secret_stores
        .get(name)
        .ok_or_else(|| anyhow!("no secret store {name:?} in {}", loaded.config.file))?;
    if let Err(why) = dsops_config::config::store_type_runs(name, &store.store_type) {
        bail!("{why}");
    }
    let setting =
        |key: &str| store.settings.get(key).and_then(|v| v.as_str()).map(|p| base_dir.join(p));
    Ok(FileStoreOptions {
        dir: setting("path").unwrap_or_else(|| state_dir.join("stores").join(name)),
        key_file: setting("key_file")
            .unwrap_or_else(|| state_dir.join("keys").join(format!("{name}.key"))),
    })
}

/// Opens a store of the configuration (the encrypted file store, or AWS Secrets Manager).
pub fn open_store(
    loaded: &Loaded,
    name: &str,
    state_dir: &Path,
    base_dir: &Path,
) -> anyhow::Result<Box<dyn SecretStore>> {
    let store_type = loaded.config.secret_stores.get(name).map(|s| s.store_type.as_str());
    if store_type == Some("aws.secretsmanager") {
        let options = secrets_manager_options(loaded, name, state_dir, base_dir)?;
        let store =
            SecretsManagerStore::open(name, &options).map_err(|e| anyhow!("store {name}: {e}"))?;
        return Ok(Box::new(store));
    }
    let options = file_store_options(loaded, name, state_dir, base_dir)?;
    Ok(Box::new(FileStore::open(name, &options).map_err(|e| anyhow!("store {name}: {e}"))?))
}

/// How an AWS Secrets Manager store is reached: its region and endpoint, and the agent's AWS
/// credentials (`credentials`: an entry of a file store with `access_key_id` and
/// `secret_access_key`; without it, the host's AWS chain).
pub fn secrets_manager_options(
    loaded: &Loaded,
    name: &str,
    state_dir: &Path,
    base_dir: &Path,
) -> anyhow::Result<SecretsManagerOptions> {
    let store = loaded
        .config
        .secret_stores
        .get(name)
        .ok_or_else(|| anyhow!("no secret store {name:?} in {}", loaded.config.file))?;
    let text = |key: &str| store.settings.get(key).and_then(|v| v.as_str());
    let credentials = match text("credentials") {
        Some(reference) => {
            let reference = StoreRef::parse(reference)
                .map_err(|e| anyhow!("secretStores.{name}.credentials: {e}"))?;
            if reference.store == name {
                bail!(
                    "secretStores.{name}.credentials: the store's own credentials cannot be kept in it"
                );
            }
            let holder = open_store(loaded, &reference.store, state_dir, base_dir)?;
            let fields = holder
                .read(&reference.path, crate::store::Label::Current)
                .map_err(|e| anyhow!("secretStores.{name}.credentials: {e}"))?
                .ok_or_else(|| {
                    anyhow!("secretStores.{name}.credentials: {reference} holds nothing (dsops store put)")
                })?;
            Some(fields)
        }
        None => None,
    };
    Ok(SecretsManagerOptions {
        region: text("region").unwrap_or("us-east-1").to_owned(),
        endpoint: text("endpoint").map(str::to_owned),
        credentials,
        key_file: state_dir.join("keys").join(format!("{name}.key")),
    })
}

/// The in-process agent's view of the configuration: its stores and the services it reaches.
pub fn agent_config(
    loaded: &Loaded,
    state_dir: &Path,
    base_dir: &Path,
) -> anyhow::Result<AgentConfig> {
    let mut config = AgentConfig::new();
    for (name, store) in &loaded.config.secret_stores {
        if store.store_type == "file" {
            let options = file_store_options(loaded, name, state_dir, base_dir)?;
            config.stores.insert(
                name.clone(),
                StoreSpec::File { dir: options.dir, key_file: options.key_file },
            );
        } else if store.store_type == "aws.secretsmanager" {
            match secrets_manager_options(loaded, name, state_dir, base_dir) {
                Ok(options) => {
                    config.stores.insert(name.clone(), StoreSpec::AwsSecretsManager(options));
                }
                // Refused when used (the store is not opened), not for the whole configuration.
                Err(why) => {
                    config.unusable.insert(format!("store {name}"), why.to_string());
                }
            }
        }
    }
    for item in loaded.resolved() {
        if item.strategy.is_some() {
            let service = item.secret.service.as_ref().map(|s| s.service.as_str());
            config.add_secret(&item.secret.store, service);
        }
    }
    for (name, service) in &loaded.config.services {
        match certificate_spec(name, service, base_dir) {
            Ok(Some(spec)) => {
                config.certificates.insert(name.clone(), spec);
                continue;
            }
            Ok(None) => {}
            // Refused when a run uses it, not for the whole configuration (a catalog instance
            // such as letsencrypt-acme names its directory but not where the account is kept).
            Err(why) => {
                config.unusable.insert(name.clone(), why.to_string());
                continue;
            }
        }
        if let Some(spec) = http_service(loaded, name, service, base_dir)? {
            config.http.insert(name.clone(), spec);
            continue;
        }
        if service.service_type == "aws-iam" {
            let text = |key: &str| service.settings.get(key).and_then(|v| v.as_str());
            let admin = text("admin_store")
                .map(StoreRef::parse)
                .transpose()
                .map_err(|e| anyhow!("services.{name}.admin_store: {e}"))?;
            config.aws.insert(
                name.clone(),
                crate::aws::AwsSpec {
                    region: text("region").unwrap_or("us-east-1").to_owned(),
                    endpoint: text("endpoint").map(str::to_owned),
                    admin,
                },
            );
            continue;
        }
        if let Some(hook) = hook_spec(name, service, base_dir)? {
            config.hooks.insert(name.clone(), hook);
            continue;
        }
        let Some(admin) = service.admin_store.clone() else { continue };
        let text =
            |key: &str| service.settings.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let port = service.settings.get("port").and_then(|v| v.as_u64());
        let default_port = match service.service_type.as_str() {
            "postgresql" => 5432,
            "mysql" => 3306,
            "redis" => 6379,
            _ => 0,
        };
        config.services.insert(
            name.clone(),
            ServiceSpec {
                service_type: service.service_type.clone(),
                host: text("host").unwrap_or_else(|| "127.0.0.1".to_owned()),
                port: port.map_or(default_port, |p| p as u16),
                database: text("database"),
                admin,
                // PostgreSQL `sslmode`, MySQL `tls` (a mode), Redis `tls: true`.
                tls_mode: text("sslmode").or_else(|| text("tls")).or_else(|| {
                    (service.settings.get("tls").and_then(|v| v.as_bool()) == Some(true))
                        .then(|| "tls".to_owned())
                }),
                ca_file: text("ca_file").map(|f| base_dir.join(f)),
            },
        );
    }
    Ok(config)
}

/// An `internal-ca-certificate` or `acme-certificate` service as the agent runs it; `None` for
/// other types.
fn certificate_spec(
    name: &str,
    service: &ServiceConfig,
    base_dir: &Path,
) -> anyhow::Result<Option<crate::certificate::CertificateSpec>> {
    use crate::acme::{AcmeSpec, Challenge};
    use crate::certificate::{CertificateSpec, Issuer};
    let text = |key: &str| service.settings.get(key).and_then(|v| v.as_str());
    let store_ref = |key: &str| {
        text(key)
            .map(StoreRef::parse)
            .transpose()
            .map_err(|e| anyhow!("services.{name}.{key}: {e}"))?
            .ok_or_else(|| anyhow!("services.{name}.{key} is required"))
    };
    let issuer = match service.service_type.as_str() {
        "internal-ca-certificate" => Issuer::InternalCa(store_ref("ca_store")?),
        "acme-certificate" => {
            let list = |key: &str| -> Vec<String> {
                match service.settings.get(key) {
                    Some(serde_json::Value::Array(items)) => {
                        items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
                    }
                    Some(serde_json::Value::String(one)) => vec![one.clone()],
                    _ => Vec::new(),
                }
            };
            let challenge = match text("challenge").unwrap_or("http-01") {
                "dns-01" => {
                    let command = list("dns01_command");
                    if command.is_empty() {
                        bail!("services.{name}.dns01_command is required for challenge dns-01");
                    }
                    Challenge::Dns01 { command }
                }
                _ => Challenge::Http01 {
                    listen: text("http01_listen").unwrap_or("0.0.0.0:80").to_owned(),
                },
            };
            Issuer::Acme(AcmeSpec {
                directory: text("directory")
                    .or_else(|| text("endpoint"))
                    .ok_or_else(|| anyhow!("services.{name}.directory is required"))?
                    .to_owned(),
                account: store_ref("account_store")?,
                domains: list("domains"),
                contact: text("contact").map(str::to_owned),
                ca_bundle: text("ca_bundle").map(|f| base_dir.join(f)),
                challenge,
            })
        }
        _ => return Ok(None),
    };
    let validity = text("validity")
        .map(dsops_config::time::Duration::parse)
        .transpose()
        .map_err(|e| anyhow!("services.{name}.validity: {e}"))?
        .map_or(Duration::from_secs(30 * 86_400), |d| Duration::from_secs(d.as_secs()));
    let key_type = text("key_type").unwrap_or("ecdsa-p256").to_owned();
    Ok(Some(CertificateSpec { issuer, validity, key_type }))
}

/// A service whose type has credential kinds with `http` calls in the catalog, as the generic
/// HTTP adapter runs it; `None` for other types.
fn http_service(
    loaded: &Loaded,
    name: &str,
    service: &ServiceConfig,
    base_dir: &Path,
) -> anyhow::Result<Option<crate::http_keys::HttpService>> {
    let Some(service_type) = loaded.catalog.service_type(&service.service_type) else {
        return Ok(None);
    };
    let kinds: std::collections::BTreeMap<String, dsops_config::catalog::HttpApi> = service_type
        .spec
        .credential_kinds
        .iter()
        .filter_map(|kind| kind.http.clone().map(|api| (kind.name.clone(), api)))
        .collect();
    if kinds.is_empty() {
        return Ok(None);
    }
    let text = |key: &str| service.settings.get(key).and_then(|v| v.as_str());
    let admin = text("admin_store")
        .or_else(|| text("auth"))
        .map(StoreRef::parse)
        .transpose()
        .map_err(|e| anyhow!("services.{name}.admin_store: {e}"))?;
    let settings = service
        .settings
        .iter()
        .filter_map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((key.clone(), text))
        })
        .collect();
    Ok(Some(crate::http_keys::HttpService {
        kinds,
        endpoint: text("endpoint").map(str::to_owned),
        admin,
        admin_env: format!(
            "DSOPS_ADMIN_{}",
            name.to_ascii_uppercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ),
        settings,
        ca_file: text("ca_file").map(|f| base_dir.join(f)),
    }))
}

/// A `script` or `webhook` service as the agent runs it; `None` for other types.
fn hook_spec(
    name: &str,
    service: &ServiceConfig,
    base_dir: &Path,
) -> anyhow::Result<Option<HookSpec>> {
    let text = |key: &str| service.settings.get(key).and_then(|v| v.as_str());
    let timeout = text("timeout")
        .and_then(|t| dsops_config::time::Duration::parse(t).ok())
        .map_or(Duration::from_secs(30), |d| Duration::from_secs(d.as_secs()));
    Ok(Some(match service.service_type.as_str() {
        "script" => {
            let command = match service.settings.get("command") {
                Some(serde_json::Value::String(text)) => {
                    vec!["/bin/sh".to_owned(), "-c".to_owned(), text.clone()]
                }
                Some(serde_json::Value::Array(list)) => {
                    list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
                }
                _ => return Ok(None),
            };
            let working_dir = text("working_dir").map(|d| base_dir.join(d));
            HookSpec::Script(ScriptSpec { command, timeout, working_dir })
        }
        "webhook" => {
            let Some(url) = text("url") else { return Ok(None) };
            let auth = text("auth_store")
                .map(StoreRef::parse)
                .transpose()
                .map_err(|e| anyhow!("services.{name}.auth_store: {e}"))?;
            let ca_file = text("ca_file").map(|f| base_dir.join(f));
            let spec = WebhookSpec::new(url, timeout, auth, ca_file)
                .map_err(|e| anyhow!("services.{name}.url: {e}"))?;
            HookSpec::Webhook(spec)
        }
        _ => return Ok(None),
    }))
}
