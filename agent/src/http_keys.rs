//! The generic HTTP adapter: API keys whose create, verify and revoke calls are described as
//! data in the catalog (a credential kind's `http`), so a new provider needs a catalog file and
//! no code. Requests go through `reqwest` with no redirects followed, no ambient proxy, a time
//! limit, and TLS with the web roots or a CA file. Statuses are classed per call (done, not
//! applied, retry later); a failure's message carries the status and the provider's error text,
//! never a request or a response body that may hold a key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dsops_config::catalog::{HttpApi, HttpCall};
use dsops_proto::domain::StoreRef;
use serde_json::Value as Json;

use crate::secret::SecretValue;

/// The field that holds a key's id beside its value.
pub const ID_FIELD: &str = "id";

/// A service whose credential kinds the HTTP adapter rotates.
#[derive(Debug, Clone)]
pub struct HttpService {
    /// The kinds it rotates, with their calls.
    pub kinds: BTreeMap<String, HttpApi>,
    /// Replaces each kind's base URL (the service's `endpoint`).
    pub endpoint: Option<String>,
    /// The agent's own credential for the provider (`admin_store` or `auth`), one field.
    pub admin: Option<StoreRef>,
    /// The environment variable holding that credential when no store entry is named.
    pub admin_env: String,
    /// The service's settings, for `{setting.<name>}`.
    pub settings: BTreeMap<String, String>,
    /// A CA file to trust instead of the web roots.
    pub ca_file: Option<PathBuf>,
}

/// What a call's status means.
#[derive(Debug)]
pub enum Answer {
    /// Done: the response body as JSON (`null` when empty or not JSON).
    Done(Json),
    /// Refused; nothing changed.
    NotApplied(String),
    /// Try again later.
    Retry(String),
}

/// The values placeholders are filled from (secrets included: wiped on drop).
#[derive(Debug, Default)]
pub struct Vars(BTreeMap<String, SecretValue>);

impl Vars {
    /// Sets `name`.
    pub fn set(&mut self, name: &str, value: SecretValue) {
        self.0.insert(name.to_owned(), value);
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(SecretValue::expose)
    }
}

/// Fills `{name}` and `{name|default}` in `template`; an unknown name without a default is an
/// error naming it. A `{` not followed by a name (`[A-Za-z_][A-Za-z0-9_.]*`) is text, so JSON
/// bodies need no escaping.
pub fn render(template: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after
            .char_indices()
            .take_while(|(i, c)| {
                c.is_ascii_alphabetic()
                    || *c == '_'
                    || (*i > 0 && (c.is_ascii_digit() || *c == '.'))
            })
            .count();
        let tail = &after[name_len..];
        let (default, close) = match tail.chars().next() {
            Some('}') if name_len > 0 => (None, name_len),
            Some('|') if name_len > 0 => match tail.find('}') {
                Some(end) => (Some(&tail[1..end]), name_len + end),
                None => return Err(format!("unclosed placeholder in {template:?}")),
            },
            _ => {
                out.push('{');
                rest = after;
                continue;
            }
        };
        let name = &after[..name_len];
        match (vars.get(name), default) {
            (Some(value), _) => out.push_str(value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(format!("no value for placeholder {{{name}}}")),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A JSON Web Token for a GitHub App (RS256, issued a minute ago, valid nine minutes), signed
/// with the App's private key (PEM, PKCS#1 or PKCS#8).
pub fn github_app_jwt(app_id: &str, key_pem: &str) -> Result<String, String> {
    use base64::Engine as _;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("the GitHub App key is not a PEM private key: {e}"))?;
    let pair = match &key {
        PrivateKeyDer::Pkcs1(der) => ring::signature::RsaKeyPair::from_der(der.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(der) => {
            ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        }
        _ => return Err("the GitHub App key must be an RSA key".to_owned()),
    }
    .map_err(|e| format!("the GitHub App key: {e}"))?;
    let now = chrono::Utc::now().timestamp();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({ "iat": now - 60, "exp": now + 540, "iss": app_id });
    let payload = b64.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut signature = vec![0u8; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the GitHub App token failed".to_owned())?;
    Ok(format!("{signing_input}.{}", b64.encode(signature)))
}

/// The HTTP client of a service: no redirects, no proxy from the environment, a time limit, the
/// web roots or `ca_file`.
pub fn client(service: &HttpService, timeout: Duration) -> Result<reqwest::Client, String> {
    client_builder(service.ca_file.as_deref(), "ca_file", timeout)?
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// An HTTPS client builder for calls to a target: no redirects, no proxy from the environment,
/// `timeout` per request (connecting at most 10 s), trusting the web's roots or only the PEM
/// certificates in `ca_file` (named `setting` in errors). The ACME transport builds on it too.
pub(crate) fn client_builder(
    ca_file: Option<&Path>,
    setting: &str,
    timeout: Duration,
) -> Result<reqwest::ClientBuilder, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            let failed = |e: &dyn std::fmt::Display| format!("{setting} {}: {e}", path.display());
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect())
                .map_err(|e| failed(&e))?;
            if certs.is_empty() {
                return Err(failed(&"no certificate in it"));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| failed(&e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .tls_backend_preconfigured(tls))
}

/// The provider's own error text from a JSON error body (`error.message`, `message`, `error`),
/// cut short; nothing else of the body.
fn error_text(body: &[u8]) -> String {
    let Ok(json) = serde_json::from_slice::<Json>(body) else { return String::new() };
    let found = json
        .pointer("/error/message")
        .or_else(|| json.pointer("/message"))
        .or_else(|| json.pointer("/error"))
        .and_then(Json::as_str)
        .unwrap_or_default();
    let text: String = found.chars().take(200).collect();
    if text.is_empty() { text } else { format!(": {text}") }
}

/// Sends `call` to `base` with `vars` and classes the answer.
pub async fn send(
    client: &reqwest::Client,
    base: &str,
    what: &str,
    call: &HttpCall,
    vars: &Vars,
) -> Result<Answer, String> {
    let url = format!("{}{}", base.trim_end_matches('/'), render(&call.path, vars)?);
    let method = reqwest::Method::from_bytes(call.method.as_bytes())
        .map_err(|_| format!("{what}: method {:?}", call.method))?;
    let mut request = client.request(method, &url);
    for (name, value) in &call.headers {
        request = request.header(name.as_str(), render(value, vars)?);
    }
    if let Some(body) = &call.body {
        request = request.body(render(body, vars)?);
    }
    // The URL may hold a placeholder's value: name the call, not the URL.
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            let kind = if error.is_timeout() { "timed out" } else { "could not be sent" };
            return Ok(Answer::Retry(format!("{what}: the request {kind}")));
        }
    };
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    let listed = |list: &[u16], default: &dyn Fn(u16) -> bool| {
        if list.is_empty() { default(status) } else { list.contains(&status) }
    };
    if listed(&call.success, &|s| matches!(s, 200 | 201 | 204)) {
        return Ok(Answer::Done(serde_json::from_slice(&body).unwrap_or(Json::Null)));
    }
    let detail = format!("{what}: status {status}{}", error_text(&body));
    if listed(&call.retry, &|s| s == 408 || s == 429 || s >= 500) {
        return Ok(Answer::Retry(detail));
    }
    if listed(&call.not_applied, &|s| (400..500).contains(&s)) {
        return Ok(Answer::NotApplied(detail));
    }
    Ok(Answer::NotApplied(format!("{detail} (not a status this call expects)")))
}

/// The text at `pointer` in a response.
pub fn extract(body: &Json, pointer: &str) -> Option<String> {
    match body.pointer(pointer)? {
        Json::String(text) => Some(text.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_and_unknown_ones_are_named() {
        let mut vars = Vars::default();
        vars.set("new", SecretValue::new("k1".to_owned()));
        vars.set("setting.org", SecretValue::new("acme".to_owned()));
        assert_eq!(render("/orgs/{setting.org}/keys/{new}", &vars).unwrap(), "/orgs/acme/keys/k1");
        assert_eq!(render("{config.minutes|60}", &vars).unwrap(), "60");
        assert_eq!(render("{old}", &vars).unwrap_err(), "no value for placeholder {old}");
        assert!(render("{new|x", &vars).is_err());
        assert_eq!(
            render(r#"{"minutes": {config.m|5}, "key": "{new}"}"#, &vars).unwrap(),
            r#"{"minutes": 5, "key": "k1"}"#
        );
    }

    #[test]
    fn error_text_takes_the_message_only() {
        let body = br#"{"error": {"message": "No such key", "secret": "sk_live_x"}}"#;
        assert_eq!(error_text(body), ": No such key");
        assert_eq!(error_text(b"sk_live_x plain text"), "");
    }
}
