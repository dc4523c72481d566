//! The HTTPS transport `instant-acme` talks through: the agent's client for targets (reqwest, no
//! redirects, no ambient proxy, time limits), trusting the web's roots or the service's
//! `ca_bundle`. It remembers the `Retry-After` of the last refused request (a `429` rate limit, a
//! `503`), which the library's errors do not carry, so the wait the CA asked for reaches the
//! control plane in the step's receipt.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

/// How long one request to the CA may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// reqwest behind `instant-acme`, keeping the `Retry-After` of the last response if it was a
/// refusal.
#[derive(Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    retry_after: Arc<Mutex<Option<Duration>>>,
}

impl Transport {
    /// A client trusting `ca_bundle` (PEM) only, or the web's roots without one (the targets'
    /// HTTPS client, [`crate::http_keys::client_builder`], HTTPS only).
    pub(crate) fn new(ca_bundle: Option<&Path>) -> Result<Transport, String> {
        let client = crate::http_keys::client_builder(ca_bundle, "ca_bundle", REQUEST_LIMIT)?
            .https_only(true)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Transport { client, retry_after: Arc::default() })
    }

    /// The wait the CA asked for in its last refusal, forgotten once read.
    pub(crate) fn take_retry_after(&self) -> Option<Duration> {
        self.retry_after.lock().ok()?.take()
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), as a wait from `now`.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or_default())
}

fn other(error: impl std::error::Error + Send + Sync + 'static) -> instant_acme::Error {
    instant_acme::Error::Other(Box::new(error))
}

impl HttpClient for Transport {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let (client, seen) = (self.client.clone(), self.retry_after.clone());
        Box::pin(async move {
            let request =
                reqwest::Request::try_from(request.map(reqwest::Body::wrap)).map_err(other)?;
            let response = client.execute(request).await.map_err(other)?;
            // The last response decides: a refusal's wait, or none (so a wait asked for earlier
            // and then answered never sticks to a later, unrelated failure).
            let status = response.status();
            let wait = (status.is_client_error() || status.is_server_error())
                .then(|| response.headers().get(http::header::RETRY_AFTER))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            if let Ok(mut seen) = seen.lock() {
                *seen = wait;
            }
            Ok(BytesResponse::from(http::Response::from(response)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_700);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        // 1999-12-31T23:59:59Z is 946684799.
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now),
            Some(Duration::from_secs(99))
        );
        assert_eq!(parse_retry_after("Fri, 31 Dec 1999 23:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
