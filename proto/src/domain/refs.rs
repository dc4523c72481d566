//! The two reference forms users write in dsops.yaml and that jobs carry:
//! `store://<store>/<path>#<field>` and `svc://<service>?kind=<kind>`.
//!
//! The parsers are strict: anything not in the grammar below is an error that says which part is
//! wrong, so a typo never silently points at another secret.
//!
//! ```text
//! store-ref   = "store://" store "/" segment *( "/" segment ) [ "#" field ]
//! service-ref = "svc://" service [ "?kind=" kind ]
//! store, service: config names; field, kind: catalog names (see `names`)
//! segment     = 1*128( ALPHA / DIGIT / "_" / "-" / "." )  ; not "." or ".."
//! ```

use std::fmt;
use std::str::FromStr;

use super::names::{check_catalog_name, check_config_name};

/// Why a reference does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} in {input:?} (expected {expected})")]
pub struct RefError {
    /// The text that was parsed.
    pub input: String,
    /// What is wrong.
    pub reason: String,
    /// The form that was expected.
    pub expected: &'static str,
}

const STORE_FORM: &str = "store://<store>/<path>#<field>";
const SERVICE_FORM: &str = "svc://<service>?kind=<kind>";

fn check_segment(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("the path has an empty segment (double or trailing '/')".to_owned());
    }
    if value == "." || value == ".." {
        return Err(format!("the path may not contain a {value:?} segment"));
    }
    if value.len() > 128 {
        return Err("a path segment is longer than 128 characters".to_owned());
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || "_-.".contains(*c))) {
        return Err(format!("the path segment {value:?} contains {bad:?}"));
    }
    Ok(())
}

/// `store://<store>/<path>#<field>`: where a secret value lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreRef {
    /// The store's name in `secretStores`.
    pub store: String,
    /// The entry's path within the store, `/`-separated.
    pub path: String,
    /// The field within the entry; `None` refers to the whole entry (e.g. an admin credential
    /// with `user` and `password` fields).
    pub field: Option<String>,
}

/// The field a store reference means when it names none: the whole value of an entry in a
/// store that holds one value per path (AWS Secrets Manager's secret string), and the one
/// field dsops keeps it under in its file store.
pub const WHOLE_VALUE_FIELD: &str = "value";

impl StoreRef {
    /// The field the reference reads and writes: its own, or [`WHOLE_VALUE_FIELD`].
    pub fn value_field(&self) -> &str {
        self.field.as_deref().unwrap_or(WHOLE_VALUE_FIELD)
    }

    /// Parses a store reference.
    pub fn parse(input: &str) -> Result<StoreRef, RefError> {
        let fail =
            |reason: String| RefError { input: input.to_owned(), reason, expected: STORE_FORM };
        let rest = input
            .strip_prefix("store://")
            .ok_or_else(|| fail("it does not start with \"store://\"".to_owned()))?;
        let (location, field) = match rest.split_once('#') {
            Some((location, field)) => {
                check_catalog_name(field, "field").map_err(&fail)?;
                (location, Some(field.to_owned()))
            }
            None => (rest, None),
        };
        if location.contains('?') {
            return Err(fail("a store reference takes no '?' query".to_owned()));
        }
        let (store, path) = location
            .split_once('/')
            .ok_or_else(|| fail("there is no path after the store name".to_owned()))?;
        check_config_name(store, "store").map_err(&fail)?;
        if path.is_empty() {
            return Err(fail("the path is empty".to_owned()));
        }
        path.split('/').try_for_each(check_segment).map_err(&fail)?;
        Ok(StoreRef { store: store.to_owned(), path: path.to_owned(), field })
    }

    /// The same entry without a field.
    pub fn entry(&self) -> StoreRef {
        StoreRef { field: None, ..self.clone() }
    }
}

impl fmt::Display for StoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store://{}/{}", self.store, self.path)?;
        if let Some(field) = &self.field {
            write!(f, "#{field}")?;
        }
        Ok(())
    }
}

impl FromStr for StoreRef {
    type Err = RefError;
    fn from_str(s: &str) -> Result<StoreRef, RefError> {
        StoreRef::parse(s)
    }
}

/// `svc://<service>?kind=<kind>`: a service from `services` (or a catalog instance's id) and one
/// of its credential kinds. `svc://<type>/<service>?kind=<kind>` also names the service's type,
/// which must then match it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    /// The service type written before the name, when it is (`postgresql` in
    /// `svc://postgresql/prod-db`).
    pub service_type: Option<String>,
    /// The service's name in `services`.
    pub service: String,
    /// The credential kind, a `credentialKinds[].name` of the service's type.
    pub kind: Option<String>,
}

impl ServiceRef {
    /// Parses a service reference.
    pub fn parse(input: &str) -> Result<ServiceRef, RefError> {
        let fail =
            |reason: String| RefError { input: input.to_owned(), reason, expected: SERVICE_FORM };
        let rest = input
            .strip_prefix("svc://")
            .ok_or_else(|| fail("it does not start with \"svc://\"".to_owned()))?;
        let (service, query) = match rest.split_once('?') {
            Some((service, query)) => (service, Some(query)),
            None => (rest, None),
        };
        let (service_type, service) = match service.split_once('/') {
            Some((_, name)) if name.contains('/') => {
                return Err(fail(
                    "a service reference has no path after the service name (svc://<type>/<service> at most)"
                        .to_owned(),
                ));
            }
            Some((service_type, name)) => {
                check_catalog_name(service_type, "service type").map_err(&fail)?;
                (Some(service_type.to_owned()), name)
            }
            None => (None, service),
        };
        if service.contains('#') {
            return Err(fail("a service reference takes no '#' field".to_owned()));
        }
        check_config_name(service, "service").map_err(&fail)?;
        let kind = match query {
            None => None,
            Some(query) => {
                let mut kind = None;
                for pair in query.split('&') {
                    let (key, value) = pair.split_once('=').ok_or_else(|| {
                        fail(format!("the query part {pair:?} is not of the form key=value"))
                    })?;
                    if key != "kind" {
                        return Err(fail(format!(
                            "unknown query parameter {key:?}; the only parameter is \"kind\""
                        )));
                    }
                    if kind.is_some() {
                        return Err(fail("\"kind\" is given twice".to_owned()));
                    }
                    check_catalog_name(value, "kind").map_err(&fail)?;
                    kind = Some(value.to_owned());
                }
                kind
            }
        };
        Ok(ServiceRef { service_type, service: service.to_owned(), kind })
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.service_type {
            Some(service_type) => write!(f, "svc://{service_type}/{}", self.service)?,
            None => write!(f, "svc://{}", self.service)?,
        }
        if let Some(kind) = &self.kind {
            write!(f, "?kind={kind}")?;
        }
        Ok(())
    }
}

impl FromStr for ServiceRef {
    type Err = RefError;
    fn from_str(s: &str) -> Result<ServiceRef, RefError> {
        ServiceRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn store_refs_parse_with_and_without_field() {
        let r = StoreRef::parse("store://local/app/db#password").unwrap();
        assert_eq!(
            (r.store.as_str(), r.path.as_str(), r.field.as_deref()),
            ("local", "app/db", Some("password"))
        );
        let r = StoreRef::parse("store://local/pg/admin").unwrap();
        assert_eq!(r.field, None);
        assert_eq!(r.to_string(), "store://local/pg/admin");
    }

    #[test]
    fn store_refs_reject_each_malformed_part() {
        let cases = [
            ("local/app#x", "does not start with \"store://\""),
            ("store://local#x", "no path after the store name"),
            ("store://local/#x", "the path is empty"),
            ("store://local/a//b#x", "empty segment"),
            ("store://local/a/../b#x", "\"..\" segment"),
            ("store://local/a#", "the field is empty"),
            ("store://lo cal/a#x", "store name \"lo cal\" must be 1-63 letters"),
            ("store://local/a?x=1#f", "no '?' query"),
            ("store:///a#x", "the store name is empty"),
            ("store://local/a b#x", "path segment \"a b\" contains ' '"),
        ];
        for (input, expected) in cases {
            let error = StoreRef::parse(input).unwrap_err();
            assert!(error.to_string().contains(expected), "{input}: {error}");
            assert!(error.to_string().contains(STORE_FORM), "{input}: {error}");
        }
    }

    #[test]
    fn service_refs_parse_and_reject() {
        let r = ServiceRef::parse("svc://pg-dev?kind=db_password").unwrap();
        assert_eq!((r.service.as_str(), r.kind.as_deref()), ("pg-dev", Some("db_password")));
        assert_eq!(ServiceRef::parse("svc://pg").unwrap().kind, None);
        let typed = ServiceRef::parse("svc://postgres/prod-db?kind=db_password").unwrap();
        assert_eq!(
            (typed.service_type.as_deref(), typed.service.as_str(), typed.kind.as_deref()),
            (Some("postgres"), "prod-db", Some("db_password"))
        );
        assert_eq!(typed.to_string(), "svc://postgres/prod-db?kind=db_password");
        let cases = [
            ("pg-dev?kind=x", "does not start with \"svc://\""),
            ("svc://pg/x/y?kind=y", "no path"),
            ("svc://p g/x?kind=y", "service type"),
            ("svc://pg?type=y", "unknown query parameter \"type\""),
            ("svc://pg?kind=a&kind=b", "given twice"),
            ("svc://pg?kind=", "the kind is empty"),
            ("svc://pg?kind", "not of the form key=value"),
            ("svc://?kind=a", "the service name is empty"),
            ("svc://pg#f", "no '#' field"),
        ];
        for (input, expected) in cases {
            let error = ServiceRef::parse(input).unwrap_err();
            assert!(error.to_string().contains(expected), "{input}: {error}");
        }
    }

    proptest! {
        #[test]
        fn store_ref_display_round_trips(
            store in "[a-z0-9][a-z0-9_-]{0,20}",
            path in proptest::collection::vec("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", 1..4),
            field in proptest::option::of("[a-z_][a-z0-9_]{0,10}"),
        ) {
            let path = path.join("/");
            prop_assume!(!path.split('/').any(|s| s == "." || s == ".."));
            let original = StoreRef { store, path, field };
            prop_assert_eq!(StoreRef::parse(&original.to_string()), Ok(original));
        }

        #[test]
        fn parsers_never_panic(input in "\\PC{0,40}") {
            let _ = StoreRef::parse(&input);
            let _ = ServiceRef::parse(&input);
            let _ = StoreRef::parse(&format!("store://{input}"));
            let _ = ServiceRef::parse(&format!("svc://{input}"));
        }
    }
}
