use dsops_config::catalog::{Catalog, ServiceInstance};
use serde::Serialize;

use crate::args::{Cli, ListCommand, ListServicesArgs, OutputFormat};
use crate::context::catalog;
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};

/// One row of `dsops list services`.
#[derive(Debug, Serialize)]
struct ServiceRow<'a> {
    id: String,
    #[serde(rename = "type")]
    service_type: &'a str,
    category: Option<&'a str>,
    endpoint: &'a str,
    tags: &'a [String],
    credentials: Vec<CredentialRow<'a>>,
    source: &'a str,
}

#[derive(Debug, Serialize)]
struct CredentialRow<'a> {
    kind: &'a str,
    policy: Option<&'a str>,
    principals: &'a [String],
}

/// `dsops list ...`.
pub fn run(cli: &Cli, command: &ListCommand) -> Result<(), Failure> {
    let context = catalog(cli)?;
    match command {
        ListCommand::Services(args) => services(cli, &context.catalog, args),
        ListCommand::Types => types(cli, &context.catalog),
        ListCommand::Policies => policies(cli, &context.catalog),
    }
}

/// Whether `wanted` names a category of the type `type_name`: its category or, with `finer`,
/// one of its finer ones.
fn in_category(catalog: &Catalog, type_name: &str, wanted: &str, finer: bool) -> bool {
    let Some(service_type) = catalog.service_type(type_name) else { return false };
    service_type.metadata.category.as_deref() == Some(wanted)
        || (finer && service_type.metadata.subcategories.iter().any(|c| c == wanted))
}

fn matches(catalog: &Catalog, instance: &ServiceInstance, args: &ListServicesArgs) -> bool {
    let type_name = &instance.metadata.type_name;
    // `--type` takes a type name or a category (`database`, `api-service`).
    if let Some(wanted) = &args.service_type
        && wanted != type_name
        && !in_category(catalog, type_name, wanted, false)
    {
        return false;
    }
    // `--category` takes a category or a finer one (`payment`).
    if let Some(category) = &args.category
        && !in_category(catalog, type_name, category, true)
    {
        return false;
    }
    args.tags.iter().all(|(key, value)| instance.has_tag(key, value))
}

fn services(cli: &Cli, catalog: &Catalog, args: &ListServicesArgs) -> Result<(), Failure> {
    let categories: Vec<&str> = catalog
        .service_types
        .values()
        .filter_map(|t| t.value.metadata.category.as_deref())
        .collect();
    if let Some(name) = &args.service_type
        && catalog.service_type(name).is_none()
        && !categories.contains(&name.as_str())
    {
        let message = dsops_config::document::unknown_hinted(
            "service type",
            name,
            catalog.service_types.keys().map(String::as_str),
        );
        return Err(Failure::invalid(message));
    }
    let rows: Vec<ServiceRow<'_>> = catalog
        .service_instances
        .values()
        .filter(|entry| matches(catalog, &entry.value, args))
        .map(|entry| {
            let instance = &entry.value;
            ServiceRow {
                id: instance.key(),
                service_type: &instance.metadata.type_name,
                category: catalog
                    .service_type(&instance.metadata.type_name)
                    .and_then(|t| t.metadata.category.as_deref()),
                endpoint: &instance.spec.endpoint,
                tags: &instance.metadata.tags,
                credentials: instance
                    .spec
                    .credential_kinds
                    .iter()
                    .map(|c| CredentialRow {
                        kind: &c.name,
                        policy: c.policy.as_deref(),
                        principals: &c.principals,
                    })
                    .collect(),
                source: &entry.layer,
            }
        })
        .collect();
    if cli.output == OutputFormat::Json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        out!("no service instances match");
        return Ok(());
    }
    let mut out = table(&["ID", "TYPE", "CATEGORY", "ENDPOINT", "CREDENTIALS", "TAGS"]);
    for row in &rows {
        let credentials: Vec<String> = row
            .credentials
            .iter()
            .map(|c| match c.policy {
                Some(policy) => format!("{} ({policy})", c.kind),
                None => c.kind.to_owned(),
            })
            .collect();
        out.add_row(vec![
            row.id.clone(),
            row.service_type.to_owned(),
            row.category.unwrap_or("-").to_owned(),
            row.endpoint.to_owned(),
            credentials.join(", "),
            row.tags.join(" "),
        ]);
    }
    print_table(&out);
    Ok(())
}

fn types(cli: &Cli, catalog: &Catalog) -> Result<(), Failure> {
    if cli.output == OutputFormat::Json {
        let values: Vec<_> = catalog.service_types.values().map(|e| &e.value).collect();
        return print_json(&values);
    }
    let mut out = table(&["NAME", "CATEGORY", "CREDENTIAL KINDS", "DEFAULT STRATEGY", "SOURCE"]);
    for entry in catalog.service_types.values() {
        let service_type = &entry.value;
        let kinds: Vec<&str> =
            service_type.spec.credential_kinds.iter().map(|k| k.name.as_str()).collect();
        out.add_row(vec![
            service_type.metadata.name.clone(),
            service_type.metadata.category.clone().unwrap_or_else(|| "-".into()),
            kinds.join(", "),
            service_type.default_strategy().map_or_else(|| "-".into(), |s| s.to_string()),
            entry.layer.clone(),
        ]);
    }
    print_table(&out);
    Ok(())
}

fn policies(cli: &Cli, catalog: &Catalog) -> Result<(), Failure> {
    if cli.output == OutputFormat::Json {
        let values: Vec<_> = catalog.rotation_policies.values().map(|e| &e.value).collect();
        return print_json(&values);
    }
    let mut out = table(&["NAME", "STRATEGY", "SCHEDULE", "APPROVAL", "WINDOWS", "GRACE"]);
    for (name, entry) in &catalog.rotation_policies {
        let spec = &entry.value.spec;
        let windows: Vec<String> =
            catalog.policy_windows(name).iter().map(|w| w.describe()).collect();
        out.add_row(vec![
            name.clone(),
            spec.strategy.to_string(),
            spec.schedule.clone().unwrap_or_else(|| "-".into()),
            if entry.value.requires_approval() { "required" } else { "-" }.to_owned(),
            if windows.is_empty() { "-".into() } else { windows.join("; ") },
            spec.cutover
                .as_ref()
                .and_then(|c| c.grace_period.clone())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&out);
    Ok(())
}
