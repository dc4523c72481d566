//! `from.service` names that are not under `services`: the id of a catalog ServiceInstance (the
//! bundled `letsencrypt-acme`, or one of a `dataDir`) stands in as a service of that instance's
//! type, with its endpoint; any other name is an unknown service, reported where it is used. A
//! reference that names a type (`svc://<type>/<service>`) must name the service's.

use std::collections::BTreeMap;

use crate::catalog::Catalog;
use crate::document::{Diagnostics, Node, unknown_name};

use super::model::{Config, ServiceConfig};
use super::parse::declared;

/// Adds a service for each `from.service` that names a catalog instance, and reports the names
/// that are neither a service nor an instance. Names declared under `services` with an error
/// of their own are left alone (reported where they are defined).
pub(super) fn add_catalog_services(
    root: &Node,
    config: &mut Config,
    catalog: &Catalog,
    diagnostics: &mut Diagnostics,
) {
    let declared_services = declared(root.get("services"));
    let mut added: BTreeMap<String, ServiceConfig> = BTreeMap::new();
    for env in config.envs.values() {
        for secret in env.secrets.values() {
            let Some(reference) = &secret.service else { continue };
            let name = reference.service.as_str();
            if declared_services.contains(&name) || added.contains_key(name) {
                continue;
            }
            let at = secret.node.at_pointer("/from/service");
            let instance = catalog
                .service_instances
                .values()
                .map(|entry| &entry.value)
                .find(|instance| instance.metadata.id == name);
            let Some(instance) = instance else {
                let message = unknown_name(
                    "service",
                    name,
                    &declared_services,
                    Some(
                        "it must be defined under `services` or be the id of a catalog service instance",
                    ),
                );
                diagnostics.error(
                    &config.file,
                    at.pos,
                    &format!("envs.{}.{}.from.service", secret.env, secret.key),
                    message,
                );
                continue;
            };
            let mut settings = BTreeMap::new();
            settings.insert("endpoint".to_owned(), instance.spec.endpoint.clone().into());
            added.insert(
                name.to_owned(),
                ServiceConfig {
                    name: name.to_owned(),
                    service_type: instance.metadata.type_name.clone(),
                    segment: None,
                    admin_store: None,
                    settings,
                    rate_limit: None,
                    node: at.clone(),
                },
            );
        }
    }
    config.services.extend(added);
    // `svc://<type>/<service>`: the type written must be the service's.
    for env in config.envs.values() {
        for secret in env.secrets.values() {
            let Some(reference) = &secret.service else { continue };
            let (Some(written), Some(service)) =
                (&reference.service_type, config.services.get(&reference.service))
            else {
                continue;
            };
            if !super::fields_table::service_type_is(written, &service.service_type) {
                diagnostics.error(
                    &config.file,
                    secret.node.at_pointer("/from/service").pos,
                    &format!("envs.{}.{}.from.service", secret.env, secret.key),
                    format!(
                        "{reference} names type {written:?}, but service {:?} is of type {:?}",
                        service.name, service.service_type
                    ),
                );
            }
        }
    }
}
