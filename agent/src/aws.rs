//! AWS IAM user access keys (`aws-iam` services) through the official AWS SDK for Rust (SigV4 by
//! the SDK, rustls on ring). The agent's own AWS credentials come from its store
//! (`admin_store`: fields `access_key_id` and `secret_access_key`) or, without one, from the
//! usual AWS chain of the agent's host (environment, profile, instance role) — never from the
//! control plane. `endpoint` overrides the service endpoints (a test server, a VPC endpoint).

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_iam::types::StatusType;
use dsops_proto::domain::StoreRef;

use crate::secret::SecretValue;
use crate::store::Fields;

/// The field of an access key's id.
pub const KEY_ID_FIELD: &str = "access_key_id";
/// The field of an access key's secret.
pub const SECRET_FIELD: &str = "secret_access_key";

/// An `aws-iam` service as the agent runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSpec {
    /// The region.
    pub region: String,
    /// An endpoint override for every AWS service called.
    pub endpoint: Option<String>,
    /// The agent's own credentials; `None`: the host's AWS chain.
    pub admin: Option<StoreRef>,
}

/// An IAM access key as `ListAccessKeys` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its id.
    pub id: String,
    /// Whether it is active.
    pub active: bool,
    /// When it was created, seconds since the epoch.
    pub created_secs: Option<i64>,
}

/// A failed AWS call, classed.
#[derive(Debug)]
pub struct AwsError {
    /// Retrying later may help (throttling, 5xx, transport).
    pub retryable: bool,
    /// What happened; never a secret.
    pub message: String,
}

fn classify<E, R>(what: &str, error: aws_sdk_iam::error::SdkError<E, R>) -> AwsError
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk_iam::error::SdkError;
    match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            let message = service.err().message().unwrap_or_default().to_owned();
            let retryable = matches!(
                code.as_str(),
                "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "ServiceFailure"
            );
            AwsError { retryable, message: format!("{what}: {code}: {message}") }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            AwsError { retryable: true, message: format!("{what}: {}", describe(&error)) }
        }
        _ => AwsError { retryable: false, message: format!("{what}: {}", describe(&error)) },
    }
}

/// The error and its sources, on one line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The SDK configuration with `credentials` (id and secret), or the host's chain.
async fn sdk_config(
    spec: &AwsSpec,
    credentials: Option<(&str, &SecretValue)>,
) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(30))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(spec.region.clone()))
        .http_client(http)
        .timeout_config(timeouts);
    if let Some(endpoint) = &spec.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some((id, secret)) = credentials {
        loader = loader.credentials_provider(aws_sdk_iam::config::Credentials::new(
            id,
            secret.expose(),
            None,
            None,
            "dsops-agent",
        ));
    }
    loader.load().await
}

/// The SDK configuration for `spec` with `credentials` (fields `access_key_id` and
/// `secret_access_key`), or the host's chain without them.
pub async fn sdk_config_with(
    spec: &AwsSpec,
    credentials: Option<&Fields>,
) -> Result<aws_config::SdkConfig, String> {
    let pair = match credentials {
        Some(fields) => {
            let get = |name: &str| {
                fields.get(name).ok_or_else(|| format!("the AWS credential has no field {name:?}"))
            };
            Some((get(KEY_ID_FIELD)?.expose().to_owned(), get(SECRET_FIELD)?.clone()))
        }
        None => None,
    };
    Ok(sdk_config(spec, pair.as_ref().map(|(id, secret)| (id.as_str(), secret))).await)
}

/// The agent's IAM client for a service.
#[derive(Debug, Clone)]
pub struct Iam {
    client: aws_sdk_iam::Client,
    spec: AwsSpec,
}

impl Iam {
    /// A client with the agent's credentials (`admin`: the admin entry's fields, if any).
    pub async fn new(spec: &AwsSpec, admin: Option<&Fields>) -> Result<Iam, AwsError> {
        let credentials = match admin {
            Some(fields) => {
                let id = fields.get(KEY_ID_FIELD).ok_or_else(|| AwsError {
                    retryable: false,
                    message: format!("the admin credential has no field {KEY_ID_FIELD:?}"),
                })?;
                let secret = fields.get(SECRET_FIELD).ok_or_else(|| AwsError {
                    retryable: false,
                    message: format!("the admin credential has no field {SECRET_FIELD:?}"),
                })?;
                Some((id.expose().to_owned(), secret.clone()))
            }
            None => None,
        };
        let config =
            sdk_config(spec, credentials.as_ref().map(|(id, secret)| (id.as_str(), secret))).await;
        Ok(Iam { client: aws_sdk_iam::Client::new(&config), spec: spec.clone() })
    }

    /// The user's access keys.
    pub async fn keys(&self, user: &str) -> Result<Vec<KeyInfo>, AwsError> {
        let listed = self
            .client
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .map_err(|e| classify(&format!("ListAccessKeys {user}"), e))?;
        Ok(listed
            .access_key_metadata()
            .iter()
            .filter_map(|key| {
                Some(KeyInfo {
                    id: key.access_key_id()?.to_owned(),
                    active: key.status() == Some(&StatusType::Active),
                    created_secs: key.create_date().map(|d| d.secs()),
                })
            })
            .collect())
    }

    /// Creates a key for `user`: its fields `access_key_id` and `secret_access_key`.
    pub async fn create(&self, user: &str) -> Result<Fields, AwsError> {
        let created = self
            .client
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .map_err(|e| classify(&format!("CreateAccessKey {user}"), e))?;
        let key = created.access_key().ok_or_else(|| AwsError {
            retryable: false,
            message: "CreateAccessKey returned no key".to_owned(),
        })?;
        let mut fields = Fields::new();
        fields.insert(KEY_ID_FIELD.to_owned(), SecretValue::new(key.access_key_id().to_owned()));
        fields
            .insert(SECRET_FIELD.to_owned(), SecretValue::new(key.secret_access_key().to_owned()));
        Ok(fields)
    }

    /// Activates or deactivates a key.
    pub async fn set_active(&self, user: &str, id: &str, active: bool) -> Result<(), AwsError> {
        let status = if active { StatusType::Active } else { StatusType::Inactive };
        self.client
            .update_access_key()
            .user_name(user)
            .access_key_id(id)
            .status(status)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify(&format!("UpdateAccessKey {id}"), e))
    }

    /// Deletes a key; one that is already gone is fine.
    pub async fn delete(&self, user: &str, id: &str) -> Result<(), AwsError> {
        match self.client.delete_access_key().user_name(user).access_key_id(id).send().await {
            Ok(_) => Ok(()),
            Err(error) => {
                let gone =
                    error.as_service_error().is_some_and(|e| e.is_no_such_entity_exception());
                if gone { Ok(()) } else { Err(classify(&format!("DeleteAccessKey {id}"), error)) }
            }
        }
    }

    /// When a key was last used, if ever (RFC 3339).
    pub async fn last_used(&self, id: &str) -> Result<Option<String>, AwsError> {
        let found = self
            .client
            .get_access_key_last_used()
            .access_key_id(id)
            .send()
            .await
            .map_err(|e| classify(&format!("GetAccessKeyLastUsed {id}"), e))?;
        Ok(found
            .access_key_last_used()
            .and_then(|used| used.last_used_date())
            .map(|date| date.to_string()))
    }

    /// The ARN `sts:GetCallerIdentity` gives for a key (`fields`): proves the key signs requests.
    pub async fn identity(&self, fields: &Fields) -> Result<String, AwsError> {
        let missing = |field: &str| AwsError {
            retryable: false,
            message: format!("the version has no field {field:?}"),
        };
        let id = fields.get(KEY_ID_FIELD).ok_or_else(|| missing(KEY_ID_FIELD))?;
        let secret = fields.get(SECRET_FIELD).ok_or_else(|| missing(SECRET_FIELD))?;
        let config = sdk_config(&self.spec, Some((id.expose(), secret))).await;
        let found = aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| classify("sts:GetCallerIdentity with the key", e))?;
        found.arn().map(str::to_owned).ok_or_else(|| AwsError {
            retryable: true,
            message: "sts:GetCallerIdentity returned no ARN".to_owned(),
        })
    }

    /// The user's ARN.
    pub async fn user_arn(&self, user: &str) -> Result<String, AwsError> {
        let found = self
            .client
            .get_user()
            .user_name(user)
            .send()
            .await
            .map_err(|e| classify(&format!("GetUser {user}"), e))?;
        Ok(found.user().map(|u| u.arn().to_owned()).unwrap_or_default())
    }
}
