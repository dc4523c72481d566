//! When a certificate renews: a fraction of its lifetime before it expires (`renew_before`), not
//! on a blind schedule. The lifetime is the variable's `rotation.config.lifetime`, else its
//! service's `validity`, else its credential kind's `ttl` in the catalog; `renew_before` is a
//! percentage of it (`33%`) or a duration (`10d`), a third of the lifetime when not given.

use serde_json::Value as Json;

use super::resolve::ResolvedSecret;
use crate::time::Duration;

/// The `rotation.config` keys of certificate variables.
pub const CERTIFICATE_KEYS: &[&str] =
    &["names", "lifetime", "key_type", "endpoint", "renew_before"];

/// The key types the agent generates.
pub const KEY_TYPES: &[&str] = &["ecdsa-p256", "ecdsa-p384", "ed25519"];

/// Whether `item` is a certificate (its service type's category is `certificate`).
pub fn is_certificate(item: &ResolvedSecret<'_>) -> bool {
    item.service_type.and_then(|t| t.metadata.category.as_deref()) == Some("certificate")
}

/// How `renew_before` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewBefore {
    /// This percentage of the lifetime (1 to 99).
    Percent(u64),
    /// This long before expiry.
    Ahead(Duration),
}

impl RenewBefore {
    /// Parses `33%` or `10d`.
    pub fn parse(text: &str) -> Result<RenewBefore, String> {
        if let Some(number) = text.trim().strip_suffix('%') {
            return match number.trim().parse::<u64>() {
                Ok(p) if (1..=99).contains(&p) => Ok(RenewBefore::Percent(p)),
                _ => Err(format!("{text:?}: a percentage from 1% to 99%")),
            };
        }
        Duration::parse(text)
            .map(RenewBefore::Ahead)
            .map_err(|e| format!("{e}, or a percentage of the lifetime such as 33%"))
    }
}

/// The lifetime of `item`'s certificates.
pub fn lifetime(item: &ResolvedSecret<'_>) -> Option<Duration> {
    let config = item.secret.rotation.as_ref().map(|r| &r.config);
    let text = |value: Option<&Json>| value.and_then(Json::as_str).map(str::to_owned);
    text(config.and_then(|c| c.get("lifetime")))
        .or_else(|| text(item.service.and_then(|s| s.settings.get("validity"))))
        .or_else(|| item.kind.and_then(|k| k.constraints.as_ref()).and_then(|c| c.ttl.clone()))
        .and_then(|t| Duration::parse(&t).ok())
}

/// How long after a certificate of `item` was issued it renews: lifetime minus `renew_before`.
/// `None` when `item` is not a certificate or its lifetime is unknown.
pub fn renew_after(item: &ResolvedSecret<'_>) -> Option<Duration> {
    if !is_certificate(item) {
        return None;
    }
    let lifetime = lifetime(item)?.as_secs();
    let before = item
        .secret
        .rotation
        .as_ref()
        .and_then(|r| r.config.get("renew_before"))
        .and_then(Json::as_str)
        .and_then(|t| RenewBefore::parse(t).ok())
        .unwrap_or(RenewBefore::Percent(33));
    let before = match before {
        RenewBefore::Percent(p) => lifetime * p / 100,
        RenewBefore::Ahead(d) => d.as_secs().min(lifetime),
    };
    Some(Duration::from_secs(lifetime - before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_before_reads_percentages_and_durations() {
        assert_eq!(RenewBefore::parse("33%"), Ok(RenewBefore::Percent(33)));
        assert_eq!(RenewBefore::parse("10d"), Ok(RenewBefore::Ahead(Duration::from_secs(864_000))));
        assert!(RenewBefore::parse("0%").is_err());
        assert!(RenewBefore::parse("100%").is_err());
        assert!(RenewBefore::parse("soon").unwrap_err().contains("33%"));
    }
}

#[cfg(test)]
mod config_tests {
    use super::super::tests::findings;

    const CA: &str = "version: 1
secretStores:
  local: { type: file }
services:
  ca:
    type: internal-ca-certificate
    ca_store: store://local/ca/root
    validity: 30d
envs:
  dev:
    TLS:
      from: { store: \"store://local/tls/api\", service: \"svc://ca?kind=tls_certificate\" }
";

    #[test]
    fn certificate_settings_are_checked_where_they_are_written() {
        let with = |rotation: &str| findings(&format!("{CA}      rotation: {rotation}\n"));
        assert_eq!(
            with("{ strategy: overlap, config: { names: [api.internal], renew_before: 25% } }"),
            Vec::<String>::new()
        );
        let missing = with("{ strategy: overlap }");
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(
            missing[0].contains(
                "envs.dev.TLS.rotation.config.names: the certificate's names are required"
            ),
            "{missing:?}"
        );
        let bad = with(
            "{ strategy: overlap, config: { names: [api.internal], renew_before: 120%, key_type: rsa-2048, lifetime: soon, endpoint: api } }",
        );
        let text = bad.join("\n");
        for field in ["renew_before", "key_type", "lifetime", "endpoint"] {
            assert!(
                text.contains(&format!("envs.dev.TLS.rotation.config.{field}:")),
                "{field}: {text}"
            );
        }
        let unknown = with("{ strategy: overlap, config: { names: [a.internal], sans: [b] } }");
        assert!(unknown.join("\n").contains("sans"), "{unknown:?}");
    }
}

/// When a certificate that was issued renews, ms since the epoch: the time its issuer suggested
/// (ACME renewal information) when it did, else `renew_after_ms` after it was issued. `None`
/// when it was never issued and nothing was suggested. The scheduler and `dsops rotation status`
/// both ask this.
pub fn renewal_at_ms(
    renew_after_ms: u64,
    issued_ms: Option<u64>,
    suggested_ms: Option<u64>,
) -> Option<u64> {
    suggested_ms.or_else(|| issued_ms.map(|issued| issued.saturating_add(renew_after_ms)))
}
