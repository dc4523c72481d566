//! `dsops get` and `dsops exec` read a secret kept in AWS Secrets Manager at `AWSCURRENT`
//! (against moto, a local AWS, the secret made with boto3); the agent's AWS credentials come from
//! a file store entry named by the store's `credentials`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

#[allow(dead_code)] // Uses the commands that run dsops in a directory only.
mod common;

use common::{dsops_in, stderr, stdout};
use dsops_tests::moto::Moto;

#[test]
fn get_and_exec_read_awscurrent() {
    let moto = Moto::start();
    moto.boto3(
        "sm = boto3.client('secretsmanager', endpoint_url=iam.meta.endpoint_url, region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\nsm.create_secret(Name='app/token', SecretString='first-0001')\nsm.put_secret_value(SecretId='app/token', SecretString='second-0002')",
    );
    let project = dsops_tests::rotation::Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\n  aws-prod:\n    type: aws.secretsmanager\n    region: us-east-1\n    endpoint: {}\n    credentials: store://local/aws/admin\nenvs:\n  dev:\n    TOKEN: {{ from: {{ store: \"store://aws-prod/app/token\" }} }}\n",
        moto.endpoint
    ));
    project.put("aws/admin", "access_key_id", "AKIAADMINTESTING0001");
    project.put("aws/admin", "secret_access_key", "admin-secret-for-moto-only");
    let d = project.dir.path();
    let get = dsops_in(d, &["get", "--env", "dev", "--key", "TOKEN"]);
    assert_eq!(get.status.code(), Some(0), "{}", stderr(&get));
    assert_eq!(stdout(&get).trim(), "second-0002", "AWSCURRENT, not the first version");
    let exec = dsops_in(d, &["exec", "--env", "dev", "--", "sh", "-c", "echo $TOKEN"]);
    assert_eq!(exec.status.code(), Some(0), "{}", stderr(&exec));
    assert_eq!(stdout(&exec).trim(), "second-0002");
}
