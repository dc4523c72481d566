//! `random` (application secrets): generate to the configured length and charset, stage, promote;
//! no target is touched and the previous value is kept for rollback.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_agent::store::Label;
use dsops_tests::rotation::{Project, rotate};
use dsops_tests::{RunView, StepView};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_secret_rotates_in_the_store() {
    let project = Project::new(
        "version: 1\nsecretStores:\n  local: { type: file }\nenvs:\n  dev:\n    JWT_SIGNING_KEY:\n      from: { store: \"store://local/app/jwt#key\" }\n      rotation: { strategy: random, config: { length: 64, charset: hex } }\n",
    );
    let embedded = project.open().await;
    let first = rotate(&embedded, "dev", "JWT_SIGNING_KEY").await;
    assert_eq!(first.state_name(), "Completed", "{first:?}");
    let steps: Vec<&str> = first.steps.iter().map(|s| s.step_name()).collect();
    assert_eq!(steps, ["stage", "promote"]);
    let key = project.read("app/jwt", "key", Label::Current).unwrap();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    let second = rotate(&embedded, "dev", "JWT_SIGNING_KEY").await;
    assert_eq!(second.state_name(), "Completed");
    assert_eq!(project.read("app/jwt", "key", Label::Previous).as_deref(), Some(key.as_str()));
    assert_ne!(project.read("app/jwt", "key", Label::Current).unwrap(), key);
    // The receipts carry the value's fingerprint, never the value.
    assert!(first.steps.iter().all(|s| !s.fingerprint.is_empty() && !s.detail.contains(&key)));
    embedded.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_status_pages_through_an_environment_in_name_order() {
    use dsops_proto::wire::admin::RotationStatusRequest;
    use dsops_proto::wire::admin::admin_server::Admin as _;
    let mut yaml =
        String::from("version: 1\nsecretStores:\n  local: { type: file }\nenvs:\n  dev:\n");
    for i in 0..25 {
        yaml.push_str(&format!(
            "    K{i:02}:\n      from: {{ store: \"store://local/app/k{i}#value\" }}\n      rotation: {{ strategy: random }}\n"
        ));
    }
    let project = Project::new(&yaml);
    let embedded = project.open().await;
    assert_eq!(rotate(&embedded, "dev", "K03").await.state_name(), "Completed");
    let page = |token: &str, size: u32| {
        let request = RotationStatusRequest {
            env: "dev".into(),
            page_size: size,
            page_token: token.to_owned(),
        };
        let admin = embedded.admin();
        let request = embedded.request(request);
        async move { admin.rotation_status(request).await }
    };
    let mut keys = Vec::new();
    let mut tokens = Vec::new();
    let mut token = String::new();
    loop {
        let response = page(&token, 10).await.unwrap().into_inner();
        assert!(response.secrets.len() <= 10);
        for row in &response.secrets {
            let key = row.secret.as_ref().unwrap().key.clone();
            assert_eq!(row.last_rotated.is_some(), key == "K03", "{row:?}");
            keys.push(key);
        }
        tokens.push(response.next_page_token.clone());
        if response.next_page_token.is_empty() {
            break;
        }
        token = response.next_page_token;
    }
    let expected: Vec<String> = (0..25).map(|i| format!("K{i:02}")).collect();
    assert_eq!(keys, expected, "every secret once, in name order");
    assert_eq!(tokens, ["K09", "K19", ""]);
    // No size: one page of up to 1,000.
    assert_eq!(page("", 0).await.unwrap().into_inner().secrets.len(), 25);
    // Out of bounds: refused, naming the field.
    let error = page("", 10_001).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().contains("page_size"), "{}", error.message());
    let error = page("../K01", 10).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.message().contains("page_token"), "{}", error.message());
    embedded.close().await;
}
