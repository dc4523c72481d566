//! No value leaves its segment: rotate and roll back with known canary values (PostgreSQL
//! `immediate`, `random`, Redis `overlap`), and rotate a certificate (its CA's and its own PEM
//! keys), a Stripe key (simulator) and an AWS secret access key (moto), then scan every
//! control-plane file, every log line (all crates, TRACE level) and every API response for them
//! — and for the values dsops generated. Zero hits.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_tests::RunView;
use std::io::Write;
use std::sync::{Arc, Mutex};

use dsops_agent::store::Label;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_server::Admin;
use dsops_tests::databases::Flavor;
use dsops_tests::rotation::{Project, database_service, rotate, tree_contains, wait_run};
use prost::Message;

/// Collects every log line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hits(haystack: &[u8], needle: &str) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_values_appear_nowhere_in_the_control_plane() {
    let canary_db = "CanaryDbValue-7f3a9c1e5b2d4f6a8c0e";
    let canary_app = "CanaryAppValue-1b2c3d4e5f6a7b8c9d0e";
    let canary_redis = "CanaryRedisValue-5e4d3c2b1a0f9e8d7c6b";
    let flavor = Flavor::Postgres;
    // The fixture's own CREATE ROLE carries the canary: make it before capturing logs.
    let user = flavor.create_user("t61_app", canary_db, false).await;
    let redis_user = Flavor::Redis.create_user("t61_cache", canary_redis, false).await;
    let redis = dsops_tests::databases::ServerUrl::parse(&Flavor::Redis.service().url());
    // The newer value types: a CA's private key (PEM), an API key (Stripe simulator), an AWS
    // secret access key (moto).
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap().pem();
    let ca_key = ca_key.serialize_pem();
    let canary_stripe = "sk_test_CanaryStripeKey0123456789abcd";
    let stripe_keys = dsops_tests::simulators::Keys::default();
    stripe_keys.lock().unwrap().insert(canary_stripe.into(), ("apikey_canary".into(), true));
    let stripe =
        dsops_tests::simulators::stripe("sk_test_CanaryStripeAdmin0123456", stripe_keys.clone())
            .await;
    let moto = dsops_tests::moto::Moto::start();
    let aws_first = moto.boto3(
        "iam.create_user(UserName='canary')\nk = iam.create_access_key(UserName='canary')['AccessKey']\nprint(k['AccessKeyId'] + ' ' + k['SecretAccessKey'])",
    );
    let (aws_id, canary_aws) = aws_first.split_once(' ').unwrap();
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let (service, admin) = database_service(flavor);
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n{service}  ca:\n    type: internal-ca-certificate\n    ca_store: store://local/ca/root\n  stripe-test:\n    type: stripe\n    endpoint: {}\n    auth: store://local/stripe/admin#key\n  aws:\n    type: aws-iam\n    region: us-east-1\n    endpoint: {}\n    admin_store: store://local/aws/admin\n  cache:\n    type: redis\n    host: {}\n    port: {}\n    admin_store: store://local/cache/admin\nenvs:\n  dev:\n    DB_PASSWORD:\n      from: {{ store: \"store://local/app/db#password\", service: \"svc://db?kind=db_password\" }}\n      rotation: {{ strategy: immediate, config: {{ username: {} }} }}\n    APP_KEY:\n      from: {{ store: \"store://local/app/key#value\" }}\n      rotation: {{ strategy: random, config: {{ length: 48 }} }}\n    REDIS_PASSWORD:\n      from: {{ store: \"store://local/app/cache#password\", service: \"svc://cache?kind=acl_password\" }}\n      rotation: {{ strategy: overlap, config: {{ username: {} }} }}\n    TLS:\n      from: {{ store: \"store://local/tls/api\", service: \"svc://ca?kind=tls_certificate\" }}\n      rotation: {{ strategy: overlap, config: {{ names: [api.internal] }} }}\n    STRIPE_KEY:\n      from: {{ store: \"store://local/app/stripe\", service: \"svc://stripe-test?kind=secret_key\" }}\n      rotation: {{ strategy: overlap }}\n    AWS_KEY:\n      from: {{ store: \"store://local/app/aws\", service: \"svc://aws?kind=access_key\" }}\n      rotation: {{ strategy: overlap, config: {{ user_name: canary }} }}\n",
        stripe.url, moto.endpoint, redis.host, redis.port, user.name, redis_user.name
    ));
    project.put("ca/root", "cert", &ca_cert);
    project.put("ca/root", "key", &ca_key);
    project.put("stripe/admin", "key", "sk_test_CanaryStripeAdmin0123456");
    project.put("app/stripe", "value", canary_stripe);
    project.put("app/stripe", "id", "apikey_canary");
    project.put("aws/admin", "access_key_id", "AKIAADMINTESTING0001");
    project.put("aws/admin", "secret_access_key", "CanaryAwsAdminSecret0123456789");
    project.put("app/aws", "access_key_id", aws_id);
    project.put("app/aws", "secret_access_key", canary_aws);
    project.put("cache/admin", "user", "default");
    project.put("cache/admin", "password", &redis.password);
    project.put("app/cache", "password", canary_redis);
    project.put("db/admin", "user", &admin.user);
    project.put("db/admin", "password", &admin.password);
    project.put("app/db", "password", canary_db);
    project.put("app/key", "value", canary_app);

    let embedded = project.open().await;
    let mut responses: Vec<u8> = Vec::new();
    for key in ["DB_PASSWORD", "APP_KEY", "REDIS_PASSWORD"] {
        let run = rotate(&embedded, "dev", key).await;
        assert_eq!(run.state_name(), "Completed", "{run:?}");
        responses.extend(run.encode_to_vec());
        // Roll back: the agent stages the canary (the previous value) again.
        let request = wire::RollbackRequest {
            request_id: dsops_cli::embedded::random_id(),
            secret: Some(wire::SecretKey { env: "dev".into(), key: key.into() }),
        };
        let started =
            embedded.admin().rollback(embedded.request(request)).await.unwrap().into_inner();
        responses.extend(started.encode_to_vec());
        let rolled = wait_run(&embedded, &started.runs[0].run_id).await;
        assert_eq!(rolled.state_name(), "Completed", "{rolled:?}");
        responses.extend(rolled.encode_to_vec());
        let history = wire::RotationHistoryRequest {
            secret: Some(wire::SecretKey { env: "dev".into(), key: key.into() }),
            limit: 0,
        };
        responses.extend(
            embedded
                .admin()
                .rotation_history(embedded.request(history))
                .await
                .unwrap()
                .into_inner()
                .encode_to_vec(),
        );
    }
    // The newer kinds rotate once (an API or AWS key cannot be rolled back to: its secret is
    // shown once).
    for key in ["TLS", "STRIPE_KEY", "AWS_KEY"] {
        let run = rotate(&embedded, "dev", key).await;
        assert_eq!(run.state_name(), "Completed", "{key}: {run:?}");
        responses.extend(run.encode_to_vec());
    }
    let status = wire::RotationStatusRequest { env: "dev".into(), ..Default::default() };
    responses.extend(
        embedded
            .admin()
            .rotation_status(embedded.request(status))
            .await
            .unwrap()
            .into_inner()
            .encode_to_vec(),
    );
    responses.extend(
        embedded
            .admin()
            .get_config(embedded.request(wire::GetConfigRequest {}))
            .await
            .unwrap()
            .into_inner()
            .encode_to_vec(),
    );
    // The rollback put the canaries back as current: they went through the whole protocol.
    assert_eq!(project.read("app/db", "password", Label::Current).as_deref(), Some(canary_db));
    assert_eq!(project.read("app/key", "value", Label::Current).as_deref(), Some(canary_app));
    let generated_db = project.read("app/db", "password", Label::Previous).unwrap();
    let generated_app = project.read("app/key", "value", Label::Previous).unwrap();
    assert_eq!(
        project.read("app/cache", "password", Label::Current).as_deref(),
        Some(canary_redis)
    );
    let generated_redis = project.read("app/cache", "password", Label::Previous).unwrap();
    let cert_key = project.read("tls/api", "key", Label::Current).unwrap();
    let generated_stripe = project.read("app/stripe", "value", Label::Current).unwrap();
    let generated_aws = project.read("app/aws", "secret_access_key", Label::Current).unwrap();
    // PEM keys are searched by their base64 body lines.
    let pem_lines = |pem: &str| -> Vec<String> {
        pem.lines().filter(|l| !l.starts_with("-----") && l.len() > 20).map(str::to_owned).collect()
    };
    let mut newer: Vec<String> = pem_lines(&ca_key);
    newer.extend(pem_lines(&cert_key));
    newer.extend([
        canary_stripe.to_owned(),
        generated_stripe,
        "sk_test_CanaryStripeAdmin0123456".to_owned(),
        canary_aws.to_owned(),
        generated_aws,
        "CanaryAwsAdminSecret0123456789".to_owned(),
    ]);
    embedded.close().await;

    let log_bytes = logs.0.lock().unwrap().clone();
    assert!(log_bytes.len() > 1_000, "the logs were captured ({} bytes)", log_bytes.len());
    assert!(hits(&log_bytes, "step done") >= 10, "the agent's step log lines were captured");
    for value in [
        canary_db,
        canary_app,
        generated_db.as_str(),
        generated_app.as_str(),
        canary_redis,
        generated_redis.as_str(),
        admin.password.as_str(),
        redis.password.as_str(),
    ]
    .into_iter()
    .chain(newer.iter().map(String::as_str))
    {
        let files = tree_contains(&project.state.join("cluster"), value.as_bytes());
        assert!(files.is_empty(), "a secret value is in control-plane files {files:?}");
        let leaking: Vec<String> = String::from_utf8_lossy(&log_bytes)
            .lines()
            .filter(|line| line.contains(value))
            .map(|line| line.replace(value, "<VALUE>"))
            .collect();
        assert!(leaking.is_empty(), "a secret value is in the logs: {leaking:#?}");
        assert_eq!(hits(&responses, value), 0, "a secret value is in an API response");
    }
    // The agent's store files hold them only encrypted.
    for value in [canary_db, canary_app, canary_redis] {
        assert!(tree_contains(&project.state.join("stores"), value.as_bytes()).is_empty());
    }
    user.drop_user().await;
    redis_user.drop_user().await;
}
