//! `aws-iam` access keys with `overlap` against moto (a local AWS), set up and checked with boto3:
//! the second key is created and verified with `sts:GetCallerIdentity`, the old one is
//! deactivated at retire and deleted by the next rotation; a user that already holds a second
//! key dsops does not know is refused, naming it, and nothing changes. The new secret never
//! reaches the control plane.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_agent::store::Label;
use dsops_tests::moto::Moto;
use dsops_tests::rotation::{Project, rotate, tree_contains};
use dsops_tests::{RunView, StepView};

fn project(moto: &Moto) -> Project {
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  aws:\n    type: aws-iam\n    region: us-east-1\n    endpoint: {}\n    admin_store: store://local/aws/admin\nrotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    CI_KEY:\n      from: {{ store: \"store://local/app/ci\", service: \"svc://aws?kind=access_key\" }}\n      rotation: {{ strategy: overlap, config: {{ user_name: app-ci }} }}\n",
        moto.endpoint
    ));
    // moto takes any credential; the agent still signs every call with this one.
    project.put("aws/admin", "access_key_id", "AKIAADMINTESTING0001");
    project.put("aws/admin", "secret_access_key", "admin-secret-for-moto-only");
    project
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_overlap_then_the_old_one_is_deactivated_and_later_deleted() {
    let moto = Moto::start();
    let first = moto.boto3(
        "iam.create_user(UserName='app-ci')\nk = iam.create_access_key(UserName='app-ci')['AccessKey']\nprint(k['AccessKeyId'] + ' ' + k['SecretAccessKey'])",
    );
    let (first_id, first_secret) = first.split_once(' ').unwrap();
    let project = project(&moto);
    project.put("app/ci", "access_key_id", first_id);
    project.put("app/ci", "secret_access_key", first_secret);

    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "CI_KEY").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let names: Vec<&str> = run.steps.iter().map(|s| s.step_name()).collect();
    assert_eq!(names, ["stage", "apply", "verify", "promote", "retire"]);
    let verify = run.steps.iter().find(|s| s.step_name() == "verify").unwrap();
    assert!(verify.detail.contains("user/app-ci"), "{verify:?}");
    let second_id = project.read("app/ci", "access_key_id", Label::Current).unwrap();
    let second_secret = project.read("app/ci", "secret_access_key", Label::Current).unwrap();
    assert_ne!(second_id, first_id);
    assert_eq!(
        moto.keys("app-ci"),
        [(first_id.to_owned(), "Inactive".to_owned()), (second_id.clone(), "Active".to_owned())]
    );
    let retire = run.steps.iter().find(|s| s.step_name() == "retire").unwrap();
    // Key ids held in the store are masked in receipts like every stored value.
    assert!(retire.detail.contains("deactivated *** (never used)"), "{retire:?}");
    assert!(!retire.detail.contains(first_id), "{retire:?}");

    // The next rotation deletes the key the previous one deactivated.
    let next = rotate(&embedded, "dev", "CI_KEY").await;
    assert_eq!(next.state_name(), "Completed", "{next:?}");
    let stage = next.steps.iter().find(|s| s.step_name() == "stage").unwrap();
    assert!(
        stage.detail.contains("deleted *** (deactivated by the previous rotation)"),
        "{stage:?}"
    );
    let third_id = project.read("app/ci", "access_key_id", Label::Current).unwrap();
    assert_eq!(
        moto.keys("app-ci"),
        [(second_id.clone(), "Inactive".to_owned()), (third_id.clone(), "Active".to_owned())]
    );

    // A second key an operator made (and dsops does not know) is never deleted: refused.
    let operator = moto.boto3(&format!(
        "iam.delete_access_key(UserName='app-ci', AccessKeyId='{second_id}')\nprint(iam.create_access_key(UserName='app-ci')['AccessKey']['AccessKeyId'])"
    ));
    let refused = rotate(&embedded, "dev", "CI_KEY").await;
    assert_eq!(refused.state_name(), "RolledBack", "{refused:?}");
    assert!(refused.detail.contains(&operator), "{}", refused.detail);
    assert!(refused.detail.contains("already holds a second access key"), "{}", refused.detail);
    assert_eq!(
        project.read("app/ci", "access_key_id", Label::Current).as_deref(),
        Some(third_id.as_str())
    );
    assert_eq!(moto.keys("app-ci").len(), 2, "nothing created or deleted");
    embedded.close().await;

    for secret in [second_secret.as_str(), first_secret, "admin-secret-for-moto-only"] {
        let hits = tree_contains(&project.state.join("cluster"), secret.as_bytes());
        assert!(hits.is_empty(), "a secret is in {hits:?}");
    }
}
