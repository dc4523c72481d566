//! The generic HTTP adapter follows catalog definitions, each run here against a **simulator**
//! of the provider (the real ones cannot be reached from this machine; see
//! `dsops_tests::simulators`): the bundled Stripe definition rolls a secret key and lets the old
//! one expire; the bundled GitHub definition creates an App installation token with a signed JWT
//! and revokes the old token at retire; and a service type that exists only in a test's
//! `dataDir` rotates with no Rust change. No key reaches the control plane.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::process::Command;

use dsops_agent::store::Label;
use dsops_tests::rotation::{Project, rotate, tree_contains};
use dsops_tests::simulators::{self, Keys, valid};
use dsops_tests::{RunView, StepView};

fn keys() -> Keys {
    Keys::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_simulator_rolls_the_secret_key() {
    let keys = keys();
    keys.lock()
        .unwrap()
        .insert("sk_test_initialkey000000000000000".into(), ("apikey_first".into(), true));
    let stripe = simulators::stripe("sk_test_adminkey0000000000000000", keys.clone()).await;
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  stripe-test:\n    type: stripe\n    environment: test\n    endpoint: {}\n    auth: store://local/stripe/admin#key\nenvs:\n  dev:\n    STRIPE_SECRET_KEY:\n      from: {{ store: \"store://local/app/stripe\", service: \"svc://stripe-test?kind=secret_key\" }}\n      rotation: {{ strategy: overlap, config: {{ expire_minutes: 0 }} }}\n",
        stripe.url
    ));
    project.put("stripe/admin", "key", "sk_test_adminkey0000000000000000");
    project.put("app/stripe", "value", "sk_test_initialkey000000000000000");
    project.put("app/stripe", "id", "apikey_first");
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "STRIPE_SECRET_KEY").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let new = project.read("app/stripe", "value", Label::Current).unwrap();
    assert!(new.starts_with("sk_test_"), "{new}");
    assert!(valid(&keys, &new), "the simulator knows the new key");
    assert!(!valid(&keys, "sk_test_initialkey000000000000000"), "the old one expired");
    let retire = run.steps.iter().find(|s| s.step_name() == "retire").unwrap();
    assert!(retire.detail.contains("expires as the provider set it"), "{retire:?}");
    embedded.close().await;
    assert!(tree_contains(&project.state.join("cluster"), new.as_bytes()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_simulator_installation_tokens_rotate_and_the_old_one_is_revoked() {
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("app.pem");
    let der = work.path().join("app.der");
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["genrsa", "-traditional", "-out", key.to_str().unwrap(), "2048"]);
    run(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-RSAPublicKey_out",
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    let keys = keys();
    let github =
        simulators::github("12345", "678", std::fs::read(&der).unwrap(), keys.clone()).await;
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  gh:\n    type: github\n    org: acme\n    endpoint: {}\n    auth: store://local/gh/app#key\n    app_id: \"12345\"\n    installation_id: \"678\"\nrotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    GITHUB_TOKEN:\n      from: {{ store: \"store://local/app/gh\", service: \"svc://gh?kind=app_installation_token\" }}\n      rotation: {{ strategy: overlap }}\n",
        github.url
    ));
    project.put("gh/app", "key", &std::fs::read_to_string(&key).unwrap());
    let embedded = project.open().await;
    let first = rotate(&embedded, "dev", "GITHUB_TOKEN").await;
    assert_eq!(first.state_name(), "Completed", "{first:?}");
    let token = project.read("app/gh", "value", Label::Current).unwrap();
    assert!(token.starts_with("ghs_") && valid(&keys, &token));
    let second = rotate(&embedded, "dev", "GITHUB_TOKEN").await;
    assert_eq!(second.state_name(), "Completed", "{second:?}");
    let newer = project.read("app/gh", "value", Label::Current).unwrap();
    assert_ne!(newer, token);
    assert!(valid(&keys, &newer));
    assert!(!valid(&keys, &token), "retire revoked the old token");
    let retire = second.steps.iter().find(|s| s.step_name() == "retire").unwrap();
    assert!(retire.detail.contains("the old key is revoked"), "{retire:?}");
    embedded.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_type_from_a_data_dir_rotates_with_no_code_change() {
    let work = tempfile::tempdir().unwrap();
    let types = work.path().join("catalog/service-types");
    std::fs::create_dir_all(&types).unwrap();
    std::fs::write(
        types.join("tokensvc.yaml"),
        r#"apiVersion: dsops.io/v1
kind: ServiceType
metadata:
  name: tokensvc
  description: A made-up token service, defined only here.
  category: api-service
spec:
  credentialKinds:
    - name: api_token
      capabilities: [create, verify, revoke]
      constraints:
        maxActive: 2
      http:
        baseUrl: https://tokens.invalid
        create:
          method: POST
          path: /keys
          headers: { X-Admin-Key: "{admin}" }
          success: [201]
          value: /key/secret
          id: /key/key_id
        verify:
          method: GET
          path: /whoami
          headers: { X-Api-Key: "{new}" }
          success: [200]
          notApplied: [401]
        revoke:
          method: DELETE
          path: /keys/{old_id}
          headers: { X-Admin-Key: "{admin}" }
          success: [204]
  defaults:
    rotationStrategy: overlap
"#,
    )
    .unwrap();
    let keys = keys();
    let tokens = simulators::token_service("admin-key-0001", keys.clone()).await;
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  tok:\n    type: tokensvc\n    endpoint: {}\n    auth: store://local/tok/admin#key\nrotation:\n  dataDir: {}\nenvs:\n  dev:\n    API_TOKEN:\n      from: {{ store: \"store://local/app/tok\", service: \"svc://tok?kind=api_token\" }}\n      rotation: {{ strategy: overlap }}\n",
        tokens.url,
        work.path().join("catalog").display()
    ));
    project.put("tok/admin", "key", "admin-key-0001");
    let embedded = project.open().await;
    let first = rotate(&embedded, "dev", "API_TOKEN").await;
    assert_eq!(first.state_name(), "Completed", "{first:?}");
    let token = project.read("app/tok", "value", Label::Current).unwrap();
    assert!(project.read("app/tok", "id", Label::Current).unwrap().starts_with("kid_"));
    let second = rotate(&embedded, "dev", "API_TOKEN").await;
    assert_eq!(second.state_name(), "Completed", "{second:?}");
    let newer = project.read("app/tok", "value", Label::Current).unwrap();
    assert!(valid(&keys, &newer));
    assert!(!valid(&keys, &token), "the old token was revoked by id");
    embedded.close().await;
    for secret in [token.as_str(), newer.as_str(), "admin-key-0001"] {
        assert!(tree_contains(&project.state.join("cluster"), secret.as_bytes()).is_empty());
    }
}
