//! Checks a JSON Schema cannot express: values that must parse (durations, cron, regular
//! expressions, time zones) and references between documents.

use std::collections::BTreeSet;

use super::{Catalog, Entry};
use crate::document::{Diagnostics, unknown_hinted};
use crate::time::{Duration, MaintenanceWindow, Schedule};

/// Named charsets accepted in `constraints.format` instead of a regular expression.
pub const CHARSETS: [&str; 7] =
    ["alphanumeric", "alpha", "numeric", "hex", "base64", "base64url", "ascii-printable"];

fn check_duration<T>(
    entry: &Entry<T>,
    pointer: &str,
    value: Option<&String>,
    diagnostics: &mut Diagnostics,
) -> Option<Duration> {
    let text = value?;
    match Duration::parse(text) {
        Ok(duration) => Some(duration),
        Err(error) => {
            diagnostics.error(
                &entry.file,
                entry.pos(pointer),
                &super::schema::pointer_to_path(pointer),
                error.to_string(),
            );
            None
        }
    }
}

/// The last line of a regex error (its first lines repeat the pattern with a caret).
fn regex_reason(error: &regex::Error) -> String {
    error
        .to_string()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("error: ")
        .to_owned()
}

/// Per-document checks; also parses each policy's maintenance windows into the catalog.
pub(super) fn check_documents(catalog: &mut Catalog, diagnostics: &mut Diagnostics) {
    for entry in catalog.service_types.values() {
        let mut names = BTreeSet::new();
        for (index, kind) in entry.value.spec.credential_kinds.iter().enumerate() {
            let base = format!("/spec/credentialKinds/{index}");
            if !names.insert(kind.name.as_str()) {
                diagnostics.error(
                    &entry.file,
                    entry.pos(&format!("{base}/name")),
                    &format!("spec.credentialKinds[{index}].name"),
                    format!("credential kind {:?} is defined twice", kind.name),
                );
            }
            let Some(constraints) = &kind.constraints else { continue };
            check_duration(
                entry,
                &format!("{base}/constraints/ttl"),
                constraints.ttl.as_ref(),
                diagnostics,
            );
            if let Some(format) = &constraints.format
                && !CHARSETS.contains(&format.as_str())
                && let Err(error) = regex::Regex::new(format)
            {
                let pointer = format!("{base}/constraints/format");
                diagnostics.error(
                    &entry.file,
                    entry.pos(&pointer),
                    &super::schema::pointer_to_path(&pointer),
                    format!(
                        "neither a charset ({}) nor a valid regular expression: {}",
                        CHARSETS.join(", "),
                        regex_reason(&error)
                    ),
                );
            }
        }
    }
    let mut windows = std::collections::BTreeMap::new();
    for (name, entry) in &catalog.rotation_policies {
        let spec = &entry.value.spec;
        if let Some(schedule) = &spec.schedule
            && let Err(error) = Schedule::parse(schedule)
        {
            diagnostics.error(
                &entry.file,
                entry.pos("/spec/schedule"),
                "spec.schedule",
                error.to_string(),
            );
        }
        if let Some(verification) = &spec.verification {
            check_duration(
                entry,
                "/spec/verification/timeout",
                verification.timeout.as_ref(),
                diagnostics,
            );
        }
        if let Some(cutover) = &spec.cutover {
            check_duration(
                entry,
                "/spec/cutover/gracePeriod",
                cutover.grace_period.as_ref(),
                diagnostics,
            );
            check_duration(
                entry,
                "/spec/cutover/rollbackWindow",
                cutover.rollback_window.as_ref(),
                diagnostics,
            );
        }
        if let Some(before) = spec.notifications.as_ref().and_then(|n| n.before_expiry.as_ref()) {
            check_duration(
                entry,
                "/spec/notifications/beforeExpiry/advance",
                Some(&before.advance),
                diagnostics,
            );
        }
        let mut parsed = Vec::new();
        for (index, window) in
            spec.constraints.iter().flat_map(|c| c.maintenance_windows.iter()).enumerate()
        {
            let base = format!("/spec/constraints/maintenanceWindows/{index}");
            let path = format!("spec.constraints.maintenanceWindows[{index}]");
            let start = match Schedule::parse(&window.cron) {
                Ok(start) => Some(start),
                Err(error) => {
                    diagnostics.error(
                        &entry.file,
                        entry.pos(&format!("{base}/cron")),
                        &format!("{path}.cron"),
                        error.to_string(),
                    );
                    None
                }
            };
            let duration = check_duration(
                entry,
                &format!("{base}/duration"),
                Some(&window.duration),
                diagnostics,
            );
            if let (Some(start), Some(duration)) = (start, duration) {
                match MaintenanceWindow::new(start, duration, window.timezone.as_deref()) {
                    Ok(window) => parsed.push(window),
                    Err(error) => {
                        diagnostics.error(&entry.file, entry.pos(&base), &path, error.to_string())
                    }
                }
            }
        }
        windows.insert(name.clone(), parsed);
    }
    catalog.windows = windows;
    for entry in catalog.principals.values() {
        let ttl = entry.value.spec.permissions.as_ref().and_then(|p| p.max_credential_ttl.as_ref());
        check_duration(entry, "/spec/permissions/maxCredentialTTL", ttl, diagnostics);
    }
}

/// Cross-file checks: every reference must resolve.
pub(super) fn check_references(catalog: &Catalog, diagnostics: &mut Diagnostics) {
    for entry in catalog.service_instances.values() {
        let instance = &entry.value;
        let type_name = &instance.metadata.type_name;
        let service_type = catalog.service_type(type_name);
        if service_type.is_none() {
            let message = unknown_hinted(
                "service type",
                type_name,
                catalog.service_types.keys().map(String::as_str),
            );
            diagnostics.error(&entry.file, entry.pos("/metadata/type"), "metadata.type", message);
        }
        let mut seen = BTreeSet::new();
        for (index, credential) in instance.spec.credential_kinds.iter().enumerate() {
            let base = format!("/spec/credentialKinds/{index}");
            let path = format!("spec.credentialKinds[{index}]");
            if !seen.insert(credential.name.as_str()) {
                diagnostics.error(
                    &entry.file,
                    entry.pos(&format!("{base}/name")),
                    &format!("{path}.name"),
                    format!("credential kind {:?} is listed twice", credential.name),
                );
            }
            if let Some(service_type) = service_type
                && service_type.credential_kind(&credential.name).is_none()
            {
                let known: Vec<&str> =
                    service_type.spec.credential_kinds.iter().map(|k| k.name.as_str()).collect();
                diagnostics.error(
                    &entry.file,
                    entry.pos(&format!("{base}/name")),
                    &format!("{path}.name"),
                    format!(
                        "service type {type_name:?} has no credential kind {:?} (it has: {})",
                        credential.name,
                        known.join(", ")
                    ),
                );
            }
            if let Some(policy) = &credential.policy
                && !catalog.rotation_policies.contains_key(policy)
            {
                let message = unknown_hinted(
                    "rotation policy",
                    policy,
                    catalog.rotation_policies.keys().map(String::as_str),
                );
                diagnostics.error(
                    &entry.file,
                    entry.pos(&format!("{base}/policy")),
                    &format!("{path}.policy"),
                    message,
                );
            }
            for (p, principal) in credential.principals.iter().enumerate() {
                if !catalog.principals.contains_key(principal) {
                    let message = unknown_hinted(
                        "principal",
                        principal,
                        catalog.principals.keys().map(String::as_str),
                    );
                    diagnostics.error(
                        &entry.file,
                        entry.pos(&format!("{base}/principals/{p}")),
                        &format!("{path}.principals[{p}]"),
                        message,
                    );
                }
            }
        }
    }
    for entry in catalog.principals.values() {
        let Some(permissions) = &entry.value.spec.permissions else { continue };
        for (index, service) in permissions.allowed_services.iter().enumerate() {
            if !catalog.service_types.contains_key(service)
                && !catalog.service_instances.contains_key(service)
            {
                diagnostics.warning(
                    &entry.file,
                    entry.pos(&format!("/spec/permissions/allowedServices/{index}")),
                    &format!("spec.permissions.allowedServices[{index}]"),
                    format!("{service:?} is neither a service type nor a service instance (type/id) in the catalog"),
                );
            }
        }
    }
}
