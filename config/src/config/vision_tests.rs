//! The configuration as the project's vision writes it: store type names, notification targets
//! as URIs.

use std::path::Path;

use super::load_str;
use super::tests::{HEAD, assert_findings, findings};

#[test]
fn store_types_as_the_vision_spells_them_validate_and_the_old_spelling_still_does() {
    let text = HEAD.replace(
        "  local: { type: file }\n",
        "  local: { type: file }
  aws-prod: { type: aws.secretsmanager, region: us-east-1 }
  legacy: { type: aws-secrets-manager, region: eu-west-1 }
  vault-prod: { type: vault, address: \"https://vault.company.com\" }
  1password-ops: { type: onepassword, vault: Operations }
  gcp: { type: gcp.secretmanager, project: acme-prod }
  azure: { type: azure.keyvault, vault_url: \"https://acme.vault.azure.net\" }
",
    );
    assert_findings(&text, &[]);
    let loaded = load_str(&text, "dsops.yaml", Path::new(".")).unwrap();
    let type_of = |name: &str| loaded.config.secret_stores[name].store_type.clone();
    assert_eq!(type_of("legacy"), "aws.secretsmanager", "the earlier spelling is resolved");
    assert_eq!(type_of("1password-ops"), "onepassword");
    // Their own settings are checked as for any store.
    let missing = HEAD.replace(
        "  local: { type: file }\n",
        "  local: { type: file }\n  gcp: { type: gcp.secretmanager }\n",
    );
    assert_eq!(
        findings(&missing),
        ["dsops.yaml:4:8: error: secretStores.gcp.project: is required: a text value"]
    );
}

#[test]
fn file_and_aws_stores_run_in_this_version_and_the_others_say_so() {
    assert!(super::store_type_runs("local", "file").is_ok());
    assert!(super::store_type_runs("aws", "aws.secretsmanager").is_ok());
    for store_type in ["vault", "onepassword", "gcp.secretmanager", "azure.keyvault"] {
        let why = super::store_type_runs("s", store_type).unwrap_err();
        assert!(why.contains("not supported in this version"), "{why}");
        assert!(why.contains(store_type), "{why}");
    }
}

#[test]
fn a_notification_uri_is_a_target_for_every_outcome() {
    let text = format!("{HEAD}rotation:\n  defaults:\n    notification: slack://security-ops\n");
    let loaded = load_str(&text, "dsops.yaml", Path::new(".")).unwrap();
    let notification = &loaded.config.rotation.defaults.notification;
    assert_eq!(notification.on_success, ["slack:security-ops"]);
    assert_eq!(notification.on_failure, ["slack:security-ops"]);
    let list = format!(
        "{HEAD}rotation:\n  defaults:\n    notification: [\"email://ops@example.com\", oncall]\n"
    );
    let loaded = load_str(&list, "dsops.yaml", Path::new(".")).unwrap();
    assert_eq!(
        loaded.config.rotation.defaults.notification.on_failure,
        ["email:ops@example.com", "oncall"]
    );
    let bad = format!("{HEAD}rotation:\n  defaults:\n    notification: \"sms://555\"\n");
    let got = findings(&bad);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("rotation.defaults.notification"), "{got:?}");
}

#[test]
fn the_whole_value_and_its_field_are_one_location() {
    let text = format!(
        "{HEAD}envs:
  dev:
    A: {{ from: {{ store: \"store://local/app/k\" }}, rotation: {{ strategy: random }} }}
    B: {{ from: {{ store: \"store://local/app/k#value\" }}, rotation: {{ strategy: random }} }}
"
    );
    let got = findings(&text);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("envs.dev.B.from.store") && got[0].contains("also rotated by envs.dev.A"),
        "{got:?}"
    );
}

#[test]
fn a_typed_service_reference_must_name_the_services_type() {
    let var = |service: &str| {
        format!(
            "{HEAD}envs:\n  dev:\n    DB: {{ from: {{ store: \"store://local/app/db#password\", service: \"{service}\" }}, rotation: {{ strategy: immediate, config: {{ username: app }} }} }}\n"
        )
    };
    assert_findings(&var("svc://postgres/pg?kind=db_password"), &[]);
    assert_findings(&var("svc://postgresql/pg?kind=db_password"), &[]);
    let got = findings(&var("svc://mysql/pg?kind=db_password"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("names type \"mysql\", but service \"pg\" is of type \"postgresql\""),
        "{got:?}"
    );
}
