//! Catalog queries: `list`, `describe`, `catalog validate`, and shell completions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

mod common;

use common::{dsops, root, stderr, stdout};

#[test]
fn list_services_filters_by_type_category_and_tags() {
    let output = dsops(&["list", "services", "--category", "database", "--tag", "env:prod"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("postgresql/orders-prod"), "{text}");
    assert!(text.contains("redis/sessions-prod"), "{text}");
    assert!(!text.contains("mysql/analytics-staging"), "staging filtered out: {text}");
    assert!(!text.contains("stripe/"), "not a database: {text}");

    let output = dsops(&["list", "services", "--type", "stripe", "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let ids: Vec<&str> =
        rows.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["stripe/payments-live"]);

    let output = dsops(&["list", "services", "--type", "postgres"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "error: unknown service type \"postgres\"; did you mean \"postgresql\"?\n"
    );
}

#[test]
fn list_types_and_policies() {
    let output = dsops(&["list", "types"]);
    let text = stdout(&output);
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
        assert!(
            text.lines().any(|l| l.split_whitespace().next() == Some(name)),
            "{name} missing:\n{text}"
        );
    }
    let output = dsops(&["list", "policies"]);
    let text = stdout(&output);
    let production = text
        .lines()
        .find(|l| {
            l.starts_with("database-production")
                || l.trim_start().starts_with("database-production")
        })
        .unwrap();
    assert!(production.contains("required"), "{production}");
}

#[test]
fn describe_a_type_an_instance_and_a_configured_service() {
    let output = dsops(&["describe", "service", "postgresql"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("Service type:   postgresql"), "{text}");
    assert!(text.contains("Category:       database"), "{text}");
    assert!(text.contains("Instances:      postgresql/orders-prod"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("db_password") && l.contains("^[A-Za-z0-9_-]{32,64}$")),
        "{text}"
    );

    let output = dsops(&["describe", "service", "orders-prod"]);
    let text = stdout(&output);
    assert!(text.contains("Instance:       postgresql/orders-prod"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("db_password")
            && l.contains("database-production")
            && l.contains("checkout-service")),
        "{text}"
    );

    let output =
        dsops(&["describe", "service", "pg-prod", "-f", "examples/dsops.yaml", "-o", "json"]);
    let body: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(body["type"], "postgresql");
    assert_eq!(body["segment"], "prod-db");
    assert_eq!(body["settings"]["host"], "orders-db.internal");

    let output = dsops(&["describe", "service", "postgresqll"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("did you mean \"postgresql\"?"), "{}", stderr(&output));
}

#[test]
fn catalog_validate_accepts_a_valid_directory_and_rejects_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("service-types/identity")).unwrap();
    std::fs::create_dir_all(dir.path().join("principals")).unwrap();
    std::fs::write(
        dir.path().join("service-types/identity/ldap.yaml"),
        "apiVersion: dsops-data/v1\nkind: ServiceType\nmetadata: {name: ldap, category: directory}\nspec:\n  credentialKinds:\n    - name: bind_password\n      capabilities: [rotate, verify]\n      constraints: {maxActive: 1, ttl: 30d, format: alphanumeric}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("principals/sre.yaml"), "apiVersion: dsops.io/v1\nkind: Principal\nmetadata: {name: sre}\nspec: {type: team, email: sre@example.com}\n").unwrap();
    let path = dir.path().display().to_string();
    let output = dsops(&["catalog", "validate", &path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "{path}: valid: 2 document(s): 1 service types, 0 instances, 0 rotation policies, 1 principals\n"
        )
    );

    let broken = root().join("examples/invalid/bad-catalog");
    let output = dsops(&["catalog", "validate", &broken.display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("ldap.yaml:5:3: error: metadata.categroy: unknown field \"categroy\"; did you mean \"category\"?"), "{text}");
    assert!(text.contains("error: 9 problems found"), "{text}");
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = dsops(&["completions", shell]);
        assert_eq!(output.status.code(), Some(0), "{shell}");
        assert!(stdout(&output).contains("validate"), "{shell}");
    }
}
