//! Crash safety of the newer families, as `t60_crash_points.rs` does for databases: the agent
//! dies right after performing each step (stage, apply, verify, promote, retire) with its
//! receipt lost, and either the agent restarts or the whole control plane is killed and reopened
//! from disk. Throughout, a watcher checks that the store's current value (or, mid-run, its
//! pending one) works against the real peer: a certificate (from the internal CA, or from a
//! real ACME CA, Debian's pebble) passes the in-memory TLS handshakes against its chain; an AWS access key is an active key of the user in moto; an API key is
//! valid at the token service **simulator**. Afterwards the run has ended and the current value
//! works.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dsops_agent::store::{Fields, Label};
use dsops_cli::embedded::{Embedded, EmbeddedOptions};
use dsops_proto::domain::{Job, Step};
use dsops_proto::wire::admin::admin_server::Admin as _;
use dsops_tests::probe::current_or_pending_works;
use dsops_tests::rotation::{Project, rotate_request, wait_run};
use dsops_tests::{RunView, StepView, wait_for};

const STEPS: [Step; 5] = [Step::Stage, Step::Apply, Step::Verify, Step::Promote, Step::Retire];

/// Whether a version's fields work against the peer.
type Works = Arc<dyn Fn(Fields) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// The current value works, else the pending one ([`current_or_pending_works`]).
async fn some_value_works(project: &Project, entry: &str, works: &Works) -> Result<(), String> {
    let store = project.store();
    current_or_pending_works(store.as_ref(), entry, |_, fields| async move {
        if works(fields).await { Ok(()) } else { Err("refused".to_owned()) }
    })
    .await
}

async fn reopen(project: &Project, options: EmbeddedOptions) -> Embedded {
    wait_for("the embedded control plane to reopen", Duration::from_secs(20), || {
        let options = options.clone();
        async move {
            Embedded::open_with(&project.state, &project.config, &project.loaded(), options)
                .await
                .ok()
        }
    })
    .await
}

/// Every crash point of `key` (stored at `entry`); returns the watcher's checks.
async fn all_crash_points(project: Arc<Project>, key: &str, entry: &str, works: Works) -> usize {
    let mut checks = 0;
    for crash_at in STEPS {
        for restart_control_plane in [false, true] {
            let fired = Arc::new(AtomicBool::new(false));
            let hook = {
                let fired = fired.clone();
                Arc::new(move |job: &Job, _: &dsops_proto::domain::SignedReceipt| {
                    job.step == crash_at && !fired.swap(true, Ordering::SeqCst)
                })
            };
            let options = EmbeddedOptions { crash: Some(hook), ..Default::default() };
            let mut embedded = reopen(&project, options).await;
            let stop = Arc::new(AtomicBool::new(false));
            let count = Arc::new(AtomicUsize::new(0));
            let failures: Arc<Mutex<Vec<String>>> = Arc::default();
            let watcher = {
                let (stop, count, failures) = (stop.clone(), count.clone(), failures.clone());
                let (project, works, entry) = (project.clone(), works.clone(), entry.to_owned());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        if let Err(why) = some_value_works(&project, &entry, &works).await {
                            failures.lock().unwrap().push(why);
                        }
                        count.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            };
            let response = embedded
                .admin()
                .rotate(embedded.request(rotate_request("dev", key)))
                .await
                .unwrap()
                .into_inner();
            let run_id = response.runs[0].run_id.clone();
            wait_for("the crash point", Duration::from_secs(90), || async {
                fired.load(Ordering::SeqCst).then_some(())
            })
            .await;
            some_value_works(&project, entry, &works)
                .await
                .unwrap_or_else(|why| panic!("{key}: crash after {crash_at}: {why}"));
            embedded = if restart_control_plane {
                embedded.kill();
                reopen(&project, EmbeddedOptions::default()).await
            } else {
                embedded.restart_agents().await.unwrap();
                embedded
            };
            let run = wait_run(&embedded, &run_id).await;
            stop.store(true, Ordering::SeqCst);
            watcher.await.unwrap();
            let failures = failures.lock().unwrap().clone();
            assert!(failures.is_empty(), "{key}: crash after {crash_at}: {failures:?}");
            assert!(
                matches!(run.state_name(), "Completed" | "RolledBack"),
                "{key}: crash after {crash_at} (control plane restarted: {restart_control_plane}): {run:?}"
            );
            assert!(
                run.steps.iter().any(|s| s.step_name() == crash_at.to_string()
                    || s.checked_name() == crash_at.to_string()),
                "{run:?}"
            );
            some_value_works(&project, entry, &works).await.unwrap();
            let labels = project.store().read_labels(entry).unwrap();
            assert!(!labels.contains_key(&Label::Pending), "no pending value is left behind");
            embedded.close().await;
            checks += count.load(Ordering::SeqCst);
        }
    }
    eprintln!("{key}: 10 crash points, {checks} invariant checks");
    checks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_ca_certificate_crash_points() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "crash test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap();
    let project = Arc::new(Project::new(
        "version: 1\nsecretStores:\n  local: { type: file }\nservices:\n  ca:\n    type: internal-ca-certificate\n    ca_store: store://local/ca/root\nrotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    TLS:\n      from: { store: \"store://local/tls/api\", service: \"svc://ca?kind=tls_certificate\" }\n      rotation: { strategy: overlap, config: { names: [api.internal] } }\n",
    ));
    project.put("ca/root", "cert", &ca.pem());
    project.put("ca/root", "key", &key.serialize_pem());
    // A first certificate, so that a value is current from the start.
    let embedded = project.open().await;
    assert_eq!(
        dsops_tests::rotation::rotate(&embedded, "dev", "TLS").await.state_name(),
        "Completed"
    );
    embedded.close().await;
    let works: Works = Arc::new(|fields| {
        Box::pin(async move {
            dsops_agent::certificate::check(&fields, &["api.internal".to_owned()]).await.is_ok()
        })
    });
    assert!(all_crash_points(project, "TLS", "tls/api", works).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_certificate_crash_points() {
    let pebble = dsops_tests::pebble::Pebble::start();
    let domain = "crash.dsops-test.example";
    let project = Arc::new(Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  acme:\n    type: acme-certificate\n    directory: {}\n    account_store: store://local/acme/account\n    domains: [{domain}]\n    ca_bundle: {}\n    challenge: http-01\n    http01_listen: 127.0.0.1:{}\nrotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    TLS:\n      from: {{ store: \"store://local/tls/api\", service: \"svc://acme?kind=tls_certificate\" }}\n      rotation: {{ strategy: overlap }}\n",
        pebble.directory,
        pebble.ca_bundle.display(),
        pebble.http_port
    )));
    let embedded = project.open().await;
    let first = dsops_tests::rotation::rotate(&embedded, "dev", "TLS").await;
    assert_eq!(first.state_name(), "Completed", "{first:?}\n{}", pebble.log());
    embedded.close().await;
    let works: Works = Arc::new(move |fields| {
        Box::pin(async move {
            dsops_agent::certificate::check(&fields, &[domain.to_owned()]).await.is_ok()
        })
    });
    assert!(all_crash_points(project, "TLS", "tls/api", works).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_key_crash_points() {
    let dir = tempfile::tempdir().unwrap();
    let types = dir.path().join("catalog/service-types");
    std::fs::create_dir_all(&types).unwrap();
    std::fs::write(
        types.join("tokensvc.yaml"),
        "apiVersion: dsops.io/v1\nkind: ServiceType\nmetadata: { name: tokensvc, category: api-service }\nspec:\n  credentialKinds:\n    - name: api_token\n      capabilities: [create, verify, revoke]\n      constraints: { maxActive: 2 }\n      http:\n        baseUrl: https://tokens.invalid\n        create: { method: POST, path: /keys, headers: { X-Admin-Key: \"{admin}\" }, success: [201], value: /key/secret, id: /key/key_id }\n        verify: { method: GET, path: /whoami, headers: { X-Api-Key: \"{new}\" }, success: [200], notApplied: [401] }\n        revoke: { method: DELETE, path: \"/keys/{old_id}\", headers: { X-Admin-Key: \"{admin}\" }, success: [204] }\n",
    )
    .unwrap();
    let keys = dsops_tests::simulators::Keys::default();
    let tokens = dsops_tests::simulators::token_service("admin-key-0001", keys.clone()).await;
    let project = Arc::new(Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  tok:\n    type: tokensvc\n    endpoint: {}\n    auth: store://local/tok/admin#key\nrotation:\n  dataDir: {}\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    API_TOKEN:\n      from: {{ store: \"store://local/app/tok\", service: \"svc://tok?kind=api_token\" }}\n      rotation: {{ strategy: overlap }}\n",
        tokens.url,
        dir.path().join("catalog").display()
    )));
    project.put("tok/admin", "key", "admin-key-0001");
    let embedded = project.open().await;
    assert_eq!(
        dsops_tests::rotation::rotate(&embedded, "dev", "API_TOKEN").await.state_name(),
        "Completed"
    );
    embedded.close().await;
    let works: Works = Arc::new(move |fields| {
        let keys = keys.clone();
        Box::pin(async move {
            fields.get("value").is_some_and(|v| dsops_tests::simulators::valid(&keys, v.expose()))
        })
    });
    assert!(all_crash_points(project, "API_TOKEN", "app/tok", works).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_access_key_crash_points() {
    let moto = dsops_tests::moto::Moto::start();
    let first = moto.boto3(
        "iam.create_user(UserName='crash-ci')\nk = iam.create_access_key(UserName='crash-ci')['AccessKey']\nprint(k['AccessKeyId'] + ' ' + k['SecretAccessKey'])",
    );
    let (id, secret) = first.split_once(' ').unwrap();
    let project = Arc::new(Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  aws:\n    type: aws-iam\n    region: us-east-1\n    endpoint: {}\n    admin_store: store://local/aws/admin\nrotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    CI_KEY:\n      from: {{ store: \"store://local/app/ci\", service: \"svc://aws?kind=access_key\" }}\n      rotation: {{ strategy: overlap, config: {{ user_name: crash-ci }} }}\n",
        moto.endpoint
    )));
    project.put("aws/admin", "access_key_id", "AKIAADMINTESTING0001");
    project.put("aws/admin", "secret_access_key", "admin-secret-for-moto-only");
    project.put("app/ci", "access_key_id", id);
    project.put("app/ci", "secret_access_key", secret);
    let spec = dsops_agent::aws::AwsSpec {
        region: "us-east-1".into(),
        endpoint: Some(moto.endpoint.clone()),
        admin: None,
    };
    let mut admin = Fields::new();
    admin.insert("access_key_id".into(), dsops_agent::SecretValue::new("AKIAADMIN".into()));
    admin.insert("secret_access_key".into(), dsops_agent::SecretValue::new("x".into()));
    let iam = Arc::new(dsops_agent::aws::Iam::new(&spec, Some(&admin)).await.unwrap());
    // The key works when it is an active key of the user.
    let works: Works = Arc::new(move |fields| {
        let iam = iam.clone();
        Box::pin(async move {
            let Some(id) = fields.get("access_key_id").map(|v| v.expose().to_owned()) else {
                return false;
            };
            iam.keys("crash-ci").await.is_ok_and(|keys| keys.iter().any(|k| k.id == id && k.active))
        })
    });
    assert!(all_crash_points(project, "CI_KEY", "app/ci", works).await > 0);
}
