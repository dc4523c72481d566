//! AWS Secrets Manager as a secret store (`type: aws.secretsmanager`). An entry is a secret
//! (named by the entry's path); a version is a secret version; the labels are its staging
//! labels: `pending` = `AWSPENDING`, `current` = `AWSCURRENT`, `previous` = `AWSPREVIOUS`.
//! A run stages with `ClientRequestToken` derived from the run id, so a retried stage finds the
//! version it made (and keeps it) instead of making another. An entry of one field `value` is
//! stored as the plain secret string (what other AWS consumers read); several fields as a JSON
//! object. Fingerprints are keyed by a local key file, as the file store's are; the values
//! never leave the agent and AWS.
//!
//! The store's calls are synchronous (the [`SecretStore`] trait): each one runs the SDK on the
//! store's own runtime, on a thread of its own, so it may be called from anywhere.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::Client;

use super::{Fields, Label, SecretStore, StoreError, VersionInfo};
use crate::secret::{Fingerprinter, SecretValue};

/// What a version id made from a run id ends with (AWS wants 32 to 64 characters).
const RUN_SUFFIX: &str = "-dsops-staged-version";

/// The staging label of a label.
fn stage_of(label: Label) -> &'static str {
    match label {
        Label::Current => "AWSCURRENT",
        Label::Pending => "AWSPENDING",
        Label::Previous => "AWSPREVIOUS",
    }
}

/// The `ClientRequestToken` (and so the version id) of a run's staged version.
fn token_of(run_id: &str) -> String {
    format!("{run_id}{RUN_SUFFIX}")
}

/// Fields as one secret string.
fn encode(fields: &Fields) -> SecretValue {
    if fields.len() == 1
        && let Some(value) = fields.get(crate::config::DEFAULT_FIELD)
    {
        return value.clone();
    }
    let object: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.expose().to_owned())))
        .collect();
    SecretValue::new(serde_json::Value::Object(object).to_string())
}

/// A secret string as fields: a JSON object of strings, else the whole value.
fn decode(text: &str) -> Fields {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(text)
        && map.values().all(serde_json::Value::is_string)
    {
        return map
            .into_iter()
            .map(|(k, v)| (k, SecretValue::new(v.as_str().unwrap_or_default().to_owned())))
            .collect();
    }
    let mut fields = Fields::new();
    fields.insert(crate::config::DEFAULT_FIELD.to_owned(), SecretValue::new(text.to_owned()));
    fields
}

/// A version as listed: its id, creation time (ms), labels and number.
type Listed = (String, u64, Vec<Label>, u64);

/// Where the store is and how the agent signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsManagerOptions {
    /// The region.
    pub region: String,
    /// An endpoint override.
    pub endpoint: Option<String>,
    /// The agent's AWS credentials (`access_key_id`, `secret_access_key` fields); `None`: the
    /// host's AWS chain.
    pub credentials: Option<Fields>,
    /// The local key file fingerprints are keyed by.
    pub key_file: std::path::PathBuf,
}

/// An AWS Secrets Manager store.
pub struct SecretsManagerStore {
    name: String,
    client: Client,
    /// Always `Some` until dropped (taken by `Drop`, which may run inside an async context).
    runtime: Option<tokio::runtime::Runtime>,
    fingerprinter: Fingerprinter,
}

impl Drop for SecretsManagerStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for SecretsManagerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManagerStore").field("name", &self.name).finish_non_exhaustive()
    }
}

fn io(name: &str, message: impl std::fmt::Display) -> StoreError {
    StoreError::Io { path: format!("store {name}"), message: message.to_string() }
}

/// The service error's code, if any.
fn code<E: aws_sdk_secretsmanager::error::ProvideErrorMetadata, R>(
    error: &aws_sdk_secretsmanager::error::SdkError<E, R>,
) -> Option<String> {
    error.as_service_error().and_then(|e| e.code()).map(str::to_owned)
}

fn describe<E, R>(what: &str, error: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata,
{
    match error.as_service_error() {
        Some(e) => format!(
            "{what}: {}: {}",
            e.code().unwrap_or("Unknown"),
            e.message().unwrap_or_default()
        ),
        None => format!("{what}: the call to AWS failed ({})", error_kind(error)),
    }
}

fn error_kind<E, R>(error: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> &'static str {
    use aws_sdk_secretsmanager::error::SdkError;
    match error {
        SdkError::TimeoutError(_) => "timeout",
        SdkError::DispatchFailure(_) => "could not connect",
        SdkError::ResponseError(_) => "bad response",
        _ => "error",
    }
}

impl SecretsManagerStore {
    /// Opens the store `name`.
    pub fn open(
        name: &str,
        options: &SecretsManagerOptions,
    ) -> Result<SecretsManagerStore, StoreError> {
        let master = super::load_or_create_key(&options.key_file)?;
        let fingerprinter =
            Fingerprinter::new(&super::derive(&master, "dsops aws secrets manager: fingerprints"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| io(name, e))?;
        let spec = crate::aws::AwsSpec {
            region: options.region.clone(),
            endpoint: options.endpoint.clone(),
            admin: None,
        };
        let credentials = options.credentials.clone();
        let config = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    runtime.block_on(crate::aws::sdk_config_with(&spec, credentials.as_ref()))
                })
                .join()
        });
        let config = match config {
            Ok(Ok(config)) => config,
            failed => {
                // Dropping a runtime inside an async context panics: let it go in the background.
                runtime.shutdown_background();
                return Err(match failed {
                    Ok(Err(why)) => io(name, why),
                    _ => io(name, "loading the AWS configuration failed"),
                });
            }
        };
        Ok(SecretsManagerStore {
            name: name.to_owned(),
            client: Client::new(&config),
            runtime: Some(runtime),
            fingerprinter,
        })
    }

    /// Runs `future` on the store's runtime, on a thread of its own.
    fn run<T: Send>(&self, future: impl std::future::Future<Output = T> + Send) -> T {
        let runtime = self.runtime.as_ref().expect("the store's runtime lives until drop");
        std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(future))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Every version with its staging labels, oldest first (version numbers count from 1).
    fn versions_of(&self, entry: &str) -> Result<Vec<Listed>, StoreError> {
        let listed = self.run(
            self.client.list_secret_version_ids().secret_id(entry).include_deprecated(true).send(),
        );
        let listed = match listed {
            Ok(listed) => listed,
            Err(error) if code(&error).as_deref() == Some("ResourceNotFoundException") => {
                return Ok(Vec::new());
            }
            Err(error) => {
                return Err(io(
                    &self.name,
                    describe(&format!("ListSecretVersionIds {entry}"), &error),
                ));
            }
        };
        let mut versions: Vec<(String, u64, Vec<Label>)> = listed
            .versions()
            .iter()
            .filter_map(|v| {
                let id = v.version_id()?.to_owned();
                let created =
                    v.created_date().map_or(0, |d| d.to_millis().unwrap_or(0).max(0) as u64);
                let labels = Label::ALL
                    .into_iter()
                    .filter(|label| v.version_stages().iter().any(|s| s == stage_of(*label)))
                    .collect();
                Some((id, created, labels))
            })
            .collect();
        versions.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        Ok(versions
            .into_iter()
            .enumerate()
            .map(|(i, (id, created, labels))| (id, created, labels, i as u64 + 1))
            .collect())
    }

    fn info(
        &self,
        id: &str,
        created: u64,
        labels: Vec<Label>,
        version: u64,
        fields: &Fields,
    ) -> VersionInfo {
        VersionInfo {
            version,
            fingerprints: fields
                .iter()
                .map(|(k, v)| (k.clone(), self.fingerprinter.fingerprint(v)))
                .collect(),
            created_at_ms: created,
            run_id: id.strip_suffix(RUN_SUFFIX).unwrap_or_default().to_owned(),
            labels,
        }
    }

    /// The fields of version `id`.
    fn fields_of(&self, entry: &str, id: &str) -> Result<Fields, StoreError> {
        let found = self
            .run(self.client.get_secret_value().secret_id(entry).version_id(id).send())
            .map_err(|e| io(&self.name, describe(&format!("GetSecretValue {entry}"), &e)))?;
        Ok(decode(found.secret_string().unwrap_or_default()))
    }

    /// The version id under `stage`, if any.
    fn version_under(&self, entry: &str, label: Label) -> Result<Option<String>, StoreError> {
        Ok(self
            .versions_of(entry)?
            .into_iter()
            .find(|(_, _, labels, _)| labels.contains(&label))
            .map(|v| v.0))
    }

    /// Puts a new version with `token`, labelled `stages`; creates the secret if needed.
    fn put_version(
        &self,
        entry: &str,
        token: &str,
        value: &SecretValue,
        stages: &[&str],
    ) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_secret_value()
            .secret_id(entry)
            .client_request_token(token)
            .secret_string(value.expose());
        for stage in stages {
            put = put.version_stages(*stage);
        }
        match self.run(put.send()) {
            Ok(_) => Ok(()),
            Err(error) if code(&error).as_deref() == Some("ResourceNotFoundException") => {
                // A new secret: its first version is AWSCURRENT whatever is asked, so create it
                // and then put the version asked for.
                if stages == ["AWSCURRENT"] {
                    self.run(
                        self.client
                            .create_secret()
                            .name(entry)
                            .client_request_token(token)
                            .secret_string(value.expose())
                            .send(),
                    )
                    .map(drop)
                    .map_err(|e| io(&self.name, describe(&format!("CreateSecret {entry}"), &e)))
                } else {
                    Err(io(
                        &self.name,
                        format!(
                            "{entry}: no such secret in AWS Secrets Manager (put a current value first: dsops store put)"
                        ),
                    ))
                }
            }
            Err(error) => Err(io(&self.name, describe(&format!("PutSecretValue {entry}"), &error))),
        }
    }

    /// Moves `stage` to version `to` (from wherever it is).
    fn move_stage(
        &self,
        entry: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut update =
            self.client.update_secret_version_stage().secret_id(entry).version_stage(stage);
        if let Some(to) = to {
            update = update.move_to_version_id(to);
        }
        if let Some(from) = from {
            update = update.remove_from_version_id(from);
        }
        self.run(update.send()).map(drop).map_err(|e| {
            io(&self.name, describe(&format!("UpdateSecretVersionStage {entry} {stage}"), &e))
        })
    }
}

impl SecretStore for SecretsManagerStore {
    fn read(&self, entry: &str, label: Label) -> Result<Option<Fields>, StoreError> {
        let found = self.run(
            self.client.get_secret_value().secret_id(entry).version_stage(stage_of(label)).send(),
        );
        match found {
            Ok(found) => Ok(Some(decode(found.secret_string().unwrap_or_default()))),
            Err(error) if code(&error).as_deref() == Some("ResourceNotFoundException") => Ok(None),
            Err(error) => Err(io(&self.name, describe(&format!("GetSecretValue {entry}"), &error))),
        }
    }

    fn read_labels(
        &self,
        entry: &str,
    ) -> Result<BTreeMap<Label, (VersionInfo, Fields)>, StoreError> {
        let mut out = BTreeMap::new();
        for (id, created, labels, version) in self.versions_of(entry)? {
            if labels.is_empty() {
                continue;
            }
            let fields = self.fields_of(entry, &id)?;
            let info = self.info(&id, created, labels.clone(), version, &fields);
            for label in labels {
                out.insert(label, (info.clone(), fields.clone()));
            }
        }
        Ok(out)
    }

    fn versions(&self, entry: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let mut out: Vec<VersionInfo> = self
            .versions_of(entry)?
            .into_iter()
            .map(|(id, created, labels, version)| VersionInfo {
                version,
                fingerprints: BTreeMap::new(),
                created_at_ms: created,
                run_id: id.strip_suffix(RUN_SUFFIX).unwrap_or_default().to_owned(),
                labels,
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    fn put(
        &self,
        entry: &str,
        field: &str,
        value: &SecretValue,
    ) -> Result<VersionInfo, StoreError> {
        if self.version_under(entry, Label::Pending)?.is_some() {
            return Err(io(
                &self.name,
                format!("{entry}: a run has a pending value; wait for it to finish"),
            ));
        }
        let mut fields = self.read(entry, Label::Current)?.unwrap_or_default();
        fields.insert(field.to_owned(), value.clone());
        let mut random = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .map_err(|_| io(&self.name, "random source failed"))?;
        let token = format!("put-dsops-operator-{}", dsops_proto::hex(&random));
        self.put_version(entry, &token, &encode(&fields), &["AWSCURRENT"])?;
        let (id, created, labels, version) = self
            .versions_of(entry)?
            .into_iter()
            .find(|(id, ..)| *id == token)
            .ok_or_else(|| io(&self.name, format!("{entry}: the new version is not listed")))?;
        Ok(self.info(&id, created, labels, version, &fields))
    }

    fn stage(
        &self,
        entry: &str,
        run_id: &str,
        fields: &Fields,
    ) -> Result<(VersionInfo, Fields), StoreError> {
        let token = token_of(run_id);
        let versions = self.versions_of(entry)?;
        if let Some((id, created, labels, version)) =
            versions.iter().find(|(id, ..)| *id == token).cloned()
        {
            // Staged by an earlier attempt of this run: keep that version.
            let kept = self.fields_of(entry, &id)?;
            return Ok((self.info(&id, created, labels, version, &kept), kept));
        }
        if let Some((other, ..)) =
            versions.iter().find(|(_, _, labels, _)| labels.contains(&Label::Pending))
        {
            return Err(io(
                &self.name,
                format!(
                    "{entry}: another run ({}) has a pending value",
                    other.strip_suffix(RUN_SUFFIX).unwrap_or(other)
                ),
            ));
        }
        let mut merged = self.read(entry, Label::Current)?.unwrap_or_default();
        merged.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.put_version(entry, &token, &encode(&merged), &["AWSPENDING"])?;
        let (id, created, labels, version) =
            self.versions_of(entry)?.into_iter().find(|(id, ..)| *id == token).ok_or_else(
                || io(&self.name, format!("{entry}: the staged version is not listed")),
            )?;
        Ok((self.info(&id, created, labels, version, &merged), merged))
    }

    fn promote(&self, entry: &str, run_id: &str) -> Result<VersionInfo, StoreError> {
        let token = token_of(run_id);
        // One listing says where the run's version stands.
        let versions = self.versions_of(entry)?;
        let Some((_, _, labels, _)) = versions.iter().find(|(id, ..)| *id == token) else {
            return Err(io(&self.name, format!("{entry}: run {run_id} staged nothing")));
        };
        if !labels.contains(&Label::Current) {
            let current = versions
                .iter()
                .find(|(_, _, labels, _)| labels.contains(&Label::Current))
                .map(|(id, ..)| id.as_str());
            // AWS moves AWSPREVIOUS to the version that loses AWSCURRENT.
            self.move_stage(entry, "AWSCURRENT", Some(&token), current)?;
        }
        if labels.contains(&Label::Pending) {
            self.move_stage(entry, "AWSPENDING", None, Some(&token))?;
        }
        let (id, created, labels, version) =
            self.versions_of(entry)?.into_iter().find(|(id, ..)| *id == token).ok_or_else(
                || io(&self.name, format!("{entry}: the promoted version is not listed")),
            )?;
        let fields = self.fields_of(entry, &id)?;
        Ok(self.info(&id, created, labels, version, &fields))
    }

    fn discard(&self, entry: &str, run_id: &str) -> Result<(), StoreError> {
        let token = token_of(run_id);
        if self.version_under(entry, Label::Pending)?.as_deref() == Some(token.as_str()) {
            self.move_stage(entry, "AWSPENDING", None, Some(&token))?;
        }
        Ok(())
    }

    fn list(&self) -> Result<BTreeMap<String, Vec<VersionInfo>>, StoreError> {
        let listed = self
            .run(self.client.list_secrets().send())
            .map_err(|e| io(&self.name, describe("ListSecrets", &e)))?;
        let mut out = BTreeMap::new();
        for secret in listed.secret_list() {
            if let Some(name) = secret.name() {
                out.insert(name.to_owned(), self.versions(name)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_is_the_plain_string_and_several_are_json() {
        let mut one = Fields::new();
        one.insert("value".into(), SecretValue::new("s3cret".into()));
        assert_eq!(encode(&one).expose(), "s3cret");
        assert_eq!(decode("s3cret")["value"].expose(), "s3cret");
        let mut two = one.clone();
        two.insert("user".into(), SecretValue::new("app".into()));
        let text = encode(&two);
        assert_eq!(decode(text.expose()), two);
        assert!(token_of("run-0123456789abcdef0123").len() >= 32);
    }
}
