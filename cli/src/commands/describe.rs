use dsops_config::catalog::{Catalog, ServiceInstance, ServiceType};
use dsops_config::config::ServiceConfig;

use crate::args::{Cli, DescribeCommand, OutputFormat};
use crate::context::catalog;
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};

/// `dsops describe service NAME`: a configured service, a catalog instance, or a service type,
/// looked up in that order.
pub fn run(cli: &Cli, command: &DescribeCommand) -> Result<(), Failure> {
    let DescribeCommand::Service { name } = command;
    let context = catalog(cli)?;
    let catalog = &context.catalog;
    if let Some(service) = context.loaded.as_ref().and_then(|l| l.config.services.get(name)) {
        return configured(cli, catalog, service);
    }
    let by_id: Vec<&ServiceInstance> = catalog
        .service_instances
        .values()
        .map(|e| &e.value)
        .filter(|i| &i.metadata.id == name)
        .collect();
    if by_id.len() > 1 && !catalog.service_instances.contains_key(name) {
        let keys: Vec<String> = by_id.iter().map(|i| i.key()).collect();
        return Err(Failure::invalid(format!(
            "{name:?} is the id of several instances; name one of: {}",
            keys.join(", ")
        )));
    }
    let instance = catalog.service_instances.get(name).map(|e| &e.value).or(by_id.first().copied());
    if let Some(instance) = instance {
        return describe_instance(cli, catalog, instance);
    }
    if let Some(entry) = catalog.service_types.get(name) {
        return describe_type(cli, catalog, &entry.value, &entry.file);
    }
    let mut candidates: Vec<&str> = catalog.service_types.keys().map(String::as_str).collect();
    candidates.extend(catalog.service_instances.keys().map(String::as_str));
    if let Some(loaded) = &context.loaded {
        candidates.extend(loaded.config.services.keys().map(String::as_str));
    }
    let mut message = format!("no service, service instance or service type is named {name:?}");
    if let Some(hint) = dsops_config::document::suggest(name, candidates) {
        message.push_str(&format!("; did you mean {hint:?}?"));
    } else {
        message.push_str("; see `dsops list services` and `dsops list types`");
    }
    Err(Failure::invalid(message))
}

fn field(label: &str, value: impl std::fmt::Display) {
    out!("{:<16}{value}", format!("{label}:"));
}

fn configured(cli: &Cli, catalog: &Catalog, service: &ServiceConfig) -> Result<(), Failure> {
    if cli.output == OutputFormat::Json {
        return print_json(&serde_json::json!({
            "name": service.name,
            "type": service.service_type,
            "segment": service.segment,
            "settings": service.settings,
        }));
    }
    field("Service", &service.name);
    field("Type", &service.service_type);
    field("Segment", service.segment.as_deref().unwrap_or("default"));
    for (key, value) in &service.settings {
        let shown = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        field(key, shown);
    }
    if let Some(service_type) = catalog.service_type(&service.service_type) {
        out!();
        kinds_table(service_type);
    }
    Ok(())
}

fn describe_instance(
    cli: &Cli,
    catalog: &Catalog,
    instance: &ServiceInstance,
) -> Result<(), Failure> {
    if cli.output == OutputFormat::Json {
        return print_json(instance);
    }
    field("Instance", instance.key());
    if let Some(name) = &instance.metadata.name {
        field("Name", name);
    }
    if let Some(description) = &instance.metadata.description {
        field("Description", description);
    }
    field("Type", &instance.metadata.type_name);
    field("Endpoint", &instance.spec.endpoint);
    if let Some(auth) = &instance.spec.auth {
        field("Auth", auth);
    }
    field(
        "Tags",
        if instance.metadata.tags.is_empty() {
            "-".to_owned()
        } else {
            instance.metadata.tags.join(" ")
        },
    );
    out!();
    let mut out = table(&["CREDENTIAL KIND", "POLICY", "STRATEGY", "SCHEDULE", "PRINCIPALS"]);
    for credential in &instance.spec.credential_kinds {
        let policy = credential.policy.as_deref().and_then(|p| catalog.policy(p));
        out.add_row(vec![
            credential.name.clone(),
            credential.policy.clone().unwrap_or_else(|| "-".into()),
            policy.map_or_else(|| "-".into(), |p| p.spec.strategy.to_string()),
            policy.and_then(|p| p.spec.schedule.clone()).unwrap_or_else(|| "-".into()),
            if credential.principals.is_empty() {
                "-".into()
            } else {
                credential.principals.join(", ")
            },
        ]);
    }
    print_table(&out);
    Ok(())
}

fn describe_type(
    cli: &Cli,
    catalog: &Catalog,
    service_type: &ServiceType,
    file: &str,
) -> Result<(), Failure> {
    if cli.output == OutputFormat::Json {
        return print_json(service_type);
    }
    field("Service type", &service_type.metadata.name);
    if let Some(description) = &service_type.metadata.description {
        field("Description", description);
    }
    field("Category", service_type.metadata.category.as_deref().unwrap_or("-"));
    let defaults = service_type.spec.defaults.as_ref();
    field(
        "Strategy",
        defaults.and_then(|d| d.rotation_strategy).map_or_else(|| "-".into(), |s| s.to_string()),
    );
    field("Rate limit", defaults.and_then(|d| d.rate_limit.clone()).unwrap_or_else(|| "-".into()));
    field("Defined in", file);
    let instances: Vec<String> = catalog
        .service_instances
        .values()
        .filter(|e| e.value.metadata.type_name == service_type.metadata.name)
        .map(|e| e.value.key())
        .collect();
    field("Instances", if instances.is_empty() { "-".to_owned() } else { instances.join(", ") });
    out!();
    kinds_table(service_type);
    Ok(())
}

fn kinds_table(service_type: &ServiceType) {
    let mut out = table(&["CREDENTIAL KIND", "CAPABILITIES", "MAX ACTIVE", "TTL", "FORMAT"]);
    for kind in &service_type.spec.credential_kinds {
        let constraints = kind.constraints.clone().unwrap_or_default();
        let capabilities: Vec<String> =
            kind.capabilities.iter().map(|c| format!("{c:?}").to_lowercase()).collect();
        out.add_row(vec![
            kind.name.clone(),
            capabilities.join(", "),
            constraints.max_active.map_or_else(|| "-".into(), |m| m.to_string()),
            constraints.ttl.unwrap_or_else(|| "-".into()),
            constraints.format.unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&out);
}
