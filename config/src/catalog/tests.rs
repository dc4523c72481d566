//! Catalog loading: the bundled catalog, user directories, and each way a catalog can be wrong.

use std::path::Path;

use super::{Catalog, Layer};
use crate::document::Diagnostics;

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Loads the bundled catalog plus a directory built from `files`; returns the diagnostics.
fn load_with(files: &[(&str, &str)]) -> (Catalog, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        write(dir.path(), rel, text);
    }
    let mut diagnostics = Diagnostics::new();
    let layer = Layer::from_dir(dir.path(), &mut diagnostics).unwrap();
    let catalog = Catalog::load(&[Layer::bundled(), layer], &mut diagnostics);
    let root = format!("{}/", dir.path().display());
    let messages = diagnostics.sorted().iter().map(|d| d.to_string().replace(&root, "")).collect();
    (catalog, messages)
}

#[test]
fn bundled_catalog_loads_without_findings() {
    let mut diagnostics = Diagnostics::new();
    let catalog = Catalog::load(&[Layer::bundled()], &mut diagnostics);
    let findings: Vec<String> = diagnostics.sorted().iter().map(ToString::to_string).collect();
    assert!(findings.is_empty(), "{findings:#?}");
    for name in [
        "postgresql",
        "mysql",
        "redis",
        "app-secret",
        "stripe",
        "github",
        "aws-iam",
        "acme-certificate",
        "internal-ca-certificate",
        "webhook",
        "script",
    ] {
        assert!(catalog.service_type(name).is_some(), "missing service type {name}");
    }
    assert!(catalog.service_instances.contains_key("postgresql/orders-prod"));
    assert!(catalog.policy("database-production").unwrap().requires_approval());
    assert_eq!(catalog.policy_windows("database-production").len(), 1);
    assert!(catalog.principals.contains_key("checkout-service"));
}

const TYPE_OK: &str = "apiVersion: dsops-data/v1\nkind: ServiceType\nmetadata:\n  name: vault-token\n  category: secrets\nspec:\n  credentialKinds:\n    - name: token\n      capabilities: [create, revoke]\n";

#[test]
fn a_valid_external_directory_adds_and_overrides() {
    let override_pg = "apiVersion: dsops.io/v1alpha1\nkind: ServiceType\nmetadata:\n  name: postgresql\nspec:\n  credentialKinds:\n    - name: db_password\n      capabilities: [rotate]\n      constraints: {maxActive: 1}\n";
    let (catalog, messages) = load_with(&[
        ("service-types/custom/vault-token.yaml", TYPE_OK),
        ("service-types/postgresql.yml", override_pg),
        ("README.md", "# not a document"),
    ]);
    assert!(messages.is_empty(), "{messages:#?}");
    assert!(catalog.service_type("vault-token").is_some());
    let pg = catalog.service_types.get("postgresql").unwrap();
    assert!(!pg.bundled);
    assert_eq!(
        pg.value.spec.credential_kinds[0]
            .constraints
            .as_ref()
            .unwrap()
            .max_active
            .unwrap()
            .to_string(),
        "1"
    );
}

#[test]
fn duplicate_keys_in_one_layer_name_both_files() {
    let (_, messages) =
        load_with(&[("service-types/a.yaml", TYPE_OK), ("service-types/b/again.yaml", TYPE_OK)]);
    assert_eq!(
        messages,
        [
            "service-types/b/again.yaml:4:9: error: metadata.name: duplicate ServiceType \"vault-token\": also defined in service-types/a.yaml"
        ]
    );
}

#[test]
fn kind_must_match_folder() {
    let (_, messages) = load_with(&[("principals/x.yaml", TYPE_OK)]);
    assert_eq!(
        messages,
        [
            "principals/x.yaml:2:7: error: kind: a ServiceType document belongs in service-types/, but this file is in principals/"
        ]
    );
    let (_, messages) = load_with(&[(
        "principals/x.yaml",
        &TYPE_OK.replace("kind: ServiceType", "kind: Principle"),
    )]);
    assert_eq!(
        messages,
        [
            "principals/x.yaml:2:7: error: kind: unknown kind \"Principle\"; did you mean \"Principal\"?"
        ]
    );
}

#[test]
fn schema_violations_carry_line_and_field_path() {
    let bad = "apiVersion: dsops.io/v2\nkind: ServiceType\nmetadata:\n  name: x\n  colour: red\nspec:\n  credentialKinds:\n    - name: k\n      capabilites: [rotate]\n";
    let (_, messages) = load_with(&[("service-types/x.yaml", bad)]);
    assert_eq!(
        messages,
        [
            "service-types/x.yaml:1:13: error: apiVersion: \"dsops.io/v2\" is not one of: dsops.io/v1, dsops-data/v1, dsops.io/v1alpha1; did you mean \"dsops.io/v1\"?",
            "service-types/x.yaml:5:3: error: metadata.colour: unknown field \"colour\"; expected one of: category, description, name, subcategories",
            "service-types/x.yaml:8:7: error: spec.credentialKinds[0].capabilities: missing required field",
            "service-types/x.yaml:9:7: error: spec.credentialKinds[0].capabilites: unknown field \"capabilites\"; did you mean \"capabilities\"?",
        ]
    );
}

#[test]
fn values_that_must_parse_are_checked() {
    let bad_type = "apiVersion: dsops.io/v1\nkind: ServiceType\nmetadata: {name: y}\nspec:\n  credentialKinds:\n    - name: k\n      capabilities: [rotate]\n      constraints: {format: \"([a-z\"}\n";
    let bad_policy = "apiVersion: dsops.io/v1\nkind: RotationPolicy\nmetadata: {name: p}\nspec:\n  strategy: two-key\n  schedule: \"0 3 * *\"\n  constraints:\n    maintenanceWindows:\n      - {cron: \"0 1 * * 6\", duration: 4h, timezone: Mars/Base}\n";
    let (_, messages) =
        load_with(&[("service-types/y.yaml", bad_type), ("rotation-policies/p.yaml", bad_policy)]);
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(messages[0].starts_with("rotation-policies/p.yaml:6:13: error: spec.schedule: invalid cron schedule \"0 3 * *\": it has 4 fields"), "{}", messages[0]);
    assert!(messages[1].starts_with("rotation-policies/p.yaml:9:9: error: spec.constraints.maintenanceWindows[0]: unknown time zone \"Mars/Base\""), "{}", messages[1]);
    assert!(messages[2].starts_with("service-types/y.yaml:8:29: error: spec.credentialKinds[0].constraints.format: neither a charset"), "{}", messages[2]);
}

#[test]
fn references_across_files_must_resolve() {
    let instance = "apiVersion: dsops.io/v1\nkind: ServiceInstance\nmetadata: {type: postgresq, id: a}\nspec:\n  endpoint: x\n  credentialKinds:\n    - {name: db_password, policy: database-standart, principals: [nobody]}\n";
    let instance2 = "apiVersion: dsops.io/v1\nkind: ServiceInstance\nmetadata: {type: mysql, id: b}\nspec:\n  endpoint: x\n  credentialKinds:\n    - {name: api_key}\n";
    let (_, messages) = load_with(&[
        ("service-instances/a.yaml", instance),
        ("service-instances/b.yaml", instance2),
    ]);
    assert_eq!(
        messages,
        [
            "service-instances/a.yaml:3:18: error: metadata.type: unknown service type \"postgresq\"; did you mean \"postgresql\"?",
            "service-instances/a.yaml:7:35: error: spec.credentialKinds[0].policy: unknown rotation policy \"database-standart\"; did you mean \"database-standard\"?",
            "service-instances/a.yaml:7:67: error: spec.credentialKinds[0].principals[0]: unknown principal \"nobody\"",
            "service-instances/b.yaml:7:14: error: spec.credentialKinds[0].name: service type \"mysql\" has no credential kind \"api_key\" (it has: db_password)",
        ]
    );
}

#[test]
fn a_missing_directory_is_an_error() {
    let mut diagnostics = Diagnostics::new();
    assert!(Layer::from_dir(Path::new("/nonexistent/dsops-catalog"), &mut diagnostics).is_none());
    assert!(diagnostics.has_errors());
}

#[test]
fn own_schemas_of_a_directory_are_enforced_too() {
    // A stricter schema shipped with the directory: principals need an email.
    let schema =
        r#"{"type":"object","properties":{"spec":{"type":"object","required":["email"]}}}"#;
    let principal =
        "apiVersion: dsops.io/v1\nkind: Principal\nmetadata: {name: bob}\nspec: {type: user}\n";
    let (_, messages) =
        load_with(&[("schemas/principal.schema.json", schema), ("principals/bob.yaml", principal)]);
    assert_eq!(messages, ["principals/bob.yaml:4:7: error: spec.email: missing required field"]);
}
