//! AWS Secrets Manager as a secret store, against moto (a local AWS), checked with boto3: a
//! rotation stages the new value as `AWSPENDING` with a `ClientRequestToken` made from the run
//! id, promotes it to `AWSCURRENT` (the old value becomes `AWSPREVIOUS`), and consumers reading
//! `AWSCURRENT` get it. A retried stage of the same run keeps the version it made; another
//! run's stage is refused while one is pending; a discard takes `AWSPENDING` off.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_agent::SecretValue;
use dsops_agent::from_config::open_store;
use dsops_agent::store::{Fields, Label};
use dsops_tests::RunView;
use dsops_tests::moto::Moto;
use dsops_tests::rotation::{Project, rotate};

fn project(moto: &Moto) -> Project {
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\n  aws-prod:\n    type: aws.secretsmanager\n    region: us-east-1\n    endpoint: {}\n    credentials: store://local/aws/admin\nenvs:\n  dev:\n    API_KEY:\n      from: {{ store: \"store://aws-prod/app/api-key\" }}\n      rotation: {{ strategy: random, config: {{ length: 40 }} }}\n",
        moto.endpoint
    ));
    project.put("aws/admin", "access_key_id", "AKIAADMINTESTING0001");
    project.put("aws/admin", "secret_access_key", "admin-secret-for-moto-only");
    project
}

fn stage_value(moto: &Moto, stage: &str) -> String {
    moto.boto3(&format!(
        "sm = boto3.client('secretsmanager', endpoint_url=iam.meta.endpoint_url, region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\ntry:\n    print(sm.get_secret_value(SecretId='app/api-key', VersionStage='{stage}')['SecretString'])\nexcept sm.exceptions.ResourceNotFoundException:\n    print('<none>')"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_moves_the_aws_staging_labels() {
    let moto = Moto::start();
    moto.boto3(
        "sm = boto3.client('secretsmanager', endpoint_url=iam.meta.endpoint_url, region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\nsm.create_secret(Name='app/api-key', SecretString='initial-value-0001')",
    );
    let project = project(&moto);
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "API_KEY").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    embedded.close().await;

    let loaded = project.loaded();
    let store = open_store(&loaded, "aws-prod", &project.state, project.dir.path()).unwrap();
    let current = store.read("app/api-key", Label::Current).unwrap().unwrap();
    let value = current["value"].expose().to_owned();
    assert_eq!(value.len(), 40);
    assert_eq!(stage_value(&moto, "AWSCURRENT"), value, "consumers of AWSCURRENT get it");
    assert_eq!(stage_value(&moto, "AWSPREVIOUS"), "initial-value-0001");
    assert_eq!(stage_value(&moto, "AWSPENDING"), "<none>");
    let labels = store.read_labels("app/api-key").unwrap();
    assert_eq!(labels[&Label::Current].0.run_id, run.run_id, "the version id names the run");

    // A retried stage keeps the version its first attempt made.
    let mut first = Fields::new();
    first.insert("value".into(), SecretValue::new("staged-first-attempt".into()));
    let mut second = Fields::new();
    second.insert("value".into(), SecretValue::new("staged-second-attempt".into()));
    let (info, kept) = store.stage("app/api-key", "run-retry000000000000", &first).unwrap();
    let (again, kept_again) = store.stage("app/api-key", "run-retry000000000000", &second).unwrap();
    assert_eq!(info.version, again.version);
    assert_eq!(kept_again["value"].expose(), "staged-first-attempt");
    assert_eq!(kept, kept_again);
    assert_eq!(stage_value(&moto, "AWSPENDING"), "staged-first-attempt");
    // Another run cannot stage over it.
    let refused = store.stage("app/api-key", "run-other000000000000", &second).unwrap_err();
    assert!(refused.to_string().contains("another run"), "{refused}");
    // Discarded: the pending label is gone, the current value untouched.
    store.discard("app/api-key", "run-retry000000000000").unwrap();
    assert_eq!(stage_value(&moto, "AWSPENDING"), "<none>");
    assert_eq!(stage_value(&moto, "AWSCURRENT"), value);
}
