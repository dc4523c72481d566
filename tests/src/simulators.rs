//! **Simulators** of HTTP APIs that cannot be reached from here (Stripe, GitHub) and of a
//! made-up token service: small local servers that answer the documented request and response
//! shapes the bundled catalog definitions use, and keep which keys are valid so a test can tell
//! what dsops did. They are simulators, named as such in every test that uses one; they prove
//! the generic HTTP adapter follows a definition, not that a provider behaves like this.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request as a simulator sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The token of `Authorization: <scheme> <token>`.
    pub fn bearer(&self, scheme: &str) -> Option<&str> {
        self.headers.get("authorization")?.strip_prefix(scheme)?.strip_prefix(' ')
    }
}

type Handler = Arc<dyn Fn(&Request) -> (u16, Json) + Send + Sync>;

/// A running simulator: its URL; stopped on drop.
#[derive(Debug)]
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request (head and `Content-Length` body).
pub(crate) async fn read_request(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Option<Request> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buffer[..n]);
    }
    Some(Request { method, path, headers, body })
}

/// Serves `handler` on a free loopback port (HTTP/1.1, one request per connection).
pub async fn serve(handler: Handler) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let handler = handler.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut stream).await else { return };
                let (status, body) = handler(&request);
                let body = if body.is_null() { String::new() } else { body.to_string() };
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Server { url, task }
}

fn random_token(prefix: &str) -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    let tail: String = (0..32)
        .map(|_| {
            let n = rng.random_range(0..62u8);
            (match n {
                0..=9 => b'0' + n,
                10..=35 => b'a' + n - 10,
                _ => b'A' + n - 36,
            }) as char
        })
        .collect();
    format!("{prefix}{tail}")
}

/// Keys a simulator knows: token → (id, still valid).
pub type Keys = Arc<Mutex<BTreeMap<String, (String, bool)>>>;

/// Whether `token` is a valid key of `keys`.
pub fn valid(keys: &Keys, token: &str) -> bool {
    keys.lock().expect("keys").get(token).is_some_and(|(_, ok)| *ok)
}

/// **Stripe simulator**: `POST /v2/iam/api_keys/{id}/rotate` (JSON body
/// `expire_current_key_in_minutes`; authenticated with the admin key) answers an API key object
/// `{id, object: "v2.iam.api_key", secret_key: {token}}` and marks the old key expiring (this
/// simulator lets it go at once when the minutes are 0, and keeps it otherwise);
/// `GET /v1/balance` answers 200 to a valid key and 401 otherwise.
pub async fn stripe(admin: &str, keys: Keys) -> Server {
    let admin = admin.to_owned();
    serve(Arc::new(move |request: &Request| {
        let mut keys = keys.lock().expect("keys");
        let ok = |token: &str| keys.get(token).is_some_and(|(_, ok)| *ok);
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/v1/balance") => match request.bearer("Bearer") {
                Some(token) if ok(token) => (200, json!({"object": "balance", "available": []})),
                _ => (401, json!({"error": {"message": "Invalid API Key provided", "type": "invalid_request_error"}})),
            },
            ("POST", path) if path.starts_with("/v2/iam/api_keys/") && path.ends_with("/rotate") => {
                if request.bearer("Bearer") != Some(admin.as_str()) {
                    return (401, json!({"error": {"message": "not allowed to manage API keys"}}));
                }
                let id = &path["/v2/iam/api_keys/".len()..path.len() - "/rotate".len()];
                let Some(old) = keys.iter().find(|(_, (key_id, _))| key_id == id).map(|(t, _)| t.clone()) else {
                    return (404, json!({"error": {"message": format!("No such API key: {id}")}}));
                };
                let body: Json = serde_json::from_slice(&request.body).unwrap_or(Json::Null);
                let minutes = body.get("expire_current_key_in_minutes").and_then(Json::as_u64);
                if minutes == Some(0)
                    && let Some(entry) = keys.get_mut(&old)
                {
                    entry.1 = false;
                }
                let token = random_token("sk_test_");
                let new_id = random_token("apikey_");
                keys.insert(token.clone(), (new_id.clone(), true));
                (200, json!({"id": new_id, "object": "v2.iam.api_key", "type": "secret_key", "secret_key": {"token": token}}))
            }
            _ => (404, json!({"error": {"message": "unknown route"}})),
        }
    }))
    .await
}

/// **GitHub simulator**: `POST /app/installations/{id}/access_tokens` with a GitHub App JWT
/// (RS256, checked against the App's public key, `iss` = the App id, not expired) answers 201
/// `{token, expires_at}`; `GET /installation/repositories` with `token <t>` answers 200 to a valid
/// token; `DELETE /installation/token` revokes the token it is called with (204).
pub async fn github(
    app_id: &str,
    installation: &str,
    public_key_der: Vec<u8>,
    keys: Keys,
) -> Server {
    let (app_id, installation) = (app_id.to_owned(), installation.to_owned());
    serve(Arc::new(move |request: &Request| {
        let mut keys = keys.lock().expect("keys");
        let route = (request.method.as_str(), request.path.as_str());
        if route == ("POST", &format!("/app/installations/{installation}/access_tokens")) {
            let jwt_ok = request
                .bearer("Bearer")
                .is_some_and(|jwt| jwt_valid(jwt, &app_id, &public_key_der));
            if !jwt_ok {
                return (401, json!({"message": "A JSON web token could not be decoded"}));
            }
            let token = random_token("ghs_");
            keys.insert(token.clone(), (String::new(), true));
            return (201, json!({"token": token, "expires_at": "2099-01-01T00:00:00Z"}));
        }
        let token = request.bearer("token").map(str::to_owned).unwrap_or_default();
        let valid = keys.get(&token).is_some_and(|(_, ok)| *ok);
        match route {
            ("GET", "/installation/repositories") if valid => {
                (200, json!({"total_count": 0, "repositories": []}))
            }
            ("DELETE", "/installation/token") if valid => {
                if let Some(entry) = keys.get_mut(&token) {
                    entry.1 = false;
                }
                (204, Json::Null)
            }
            _ => (401, json!({"message": "Bad credentials"})),
        }
    }))
    .await
}

fn jwt_valid(jwt: &str, app_id: &str, public_key_der: &[u8]) -> bool {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else { return false };
    let Ok(signature) = b64.decode(signature) else { return false };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key_der,
    );
    if key.verify(format!("{header}.{payload}").as_bytes(), &signature).is_err() {
        return false;
    }
    let Ok(claims) = b64.decode(payload) else { return false };
    let claims: Json = serde_json::from_slice(&claims).unwrap_or(Json::Null);
    let now = chrono::Utc::now().timestamp();
    claims.get("iss").and_then(Json::as_str) == Some(app_id)
        && claims.get("exp").and_then(Json::as_i64).is_some_and(|exp| exp > now)
}

/// **Token service simulator** (a made-up provider, for a service type defined only in a test's
/// `dataDir`): `POST /keys` with `X-Admin-Key` answers `{key: {secret, key_id}}`; `GET /whoami`
/// with `X-Api-Key` answers 200 or 401; `DELETE /keys/{key_id}` with `X-Admin-Key` revokes.
pub async fn token_service(admin: &str, keys: Keys) -> Server {
    let admin = admin.to_owned();
    serve(Arc::new(move |request: &Request| {
        let mut keys = keys.lock().expect("keys");
        let is_admin = request.headers.get("x-admin-key") == Some(&admin);
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/keys") if is_admin => {
                let secret = random_token("tok_");
                let id = random_token("kid_");
                keys.insert(secret.clone(), (id.clone(), true));
                (201, json!({"key": {"secret": secret, "key_id": id}}))
            }
            ("GET", "/whoami") => {
                let key = request.headers.get("x-api-key").cloned().unwrap_or_default();
                if keys.get(&key).is_some_and(|(_, ok)| *ok) {
                    (200, json!({"ok": true}))
                } else {
                    (401, json!({"message": "unknown key"}))
                }
            }
            ("DELETE", path) if is_admin && path.starts_with("/keys/") => {
                let id = &path["/keys/".len()..];
                match keys.values_mut().find(|(key_id, _)| key_id == id) {
                    Some(entry) => {
                        entry.1 = false;
                        (204, Json::Null)
                    }
                    None => (404, json!({"message": "no such key"})),
                }
            }
            _ => (403, json!({"message": "forbidden"})),
        }
    }))
    .await
}
