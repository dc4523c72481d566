//! Preflight on a 3-node cluster with a remote agent and the real PostgreSQL and MariaDB: for
//! each secret of an environment the agent of its segment says whether its admin credential is
//! there, the target answers, the credential may change passwords, the users exist and two-key
//! users hold the same grants — and catches an admin without the privilege, a missing
//! credential, and two-key users with different grants. Nothing is changed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::collections::BTreeMap;

use dsops_proto::wire::admin as wire;
use dsops_tests::TestCluster;
use dsops_tests::agents::{AgentProject, agent_token, enroll, wait_connected};
use dsops_tests::databases::Flavor;
use dsops_tests::rotation::database_service_at;

/// Check name → (ok, detail) for each secret.
type Found = BTreeMap<String, BTreeMap<String, (bool, String)>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_catches_a_missing_privilege_a_missing_credential_and_unequal_grants() {
    let weak = Flavor::Postgres.create_user("pfweak", "weak-admin-pw", false).await;
    let app = Flavor::Postgres.create_user("pfapp", "x", true).await;
    let blue = Flavor::MariaDb.create_user("pfblue", "x", true).await;
    let green = Flavor::MariaDb.create_user("pfgreen", "x", false).await;
    let (pg, pg_admin) = database_service_at(Flavor::Postgres, "pg", None, "local");
    let (weak_pg, _) = database_service_at(Flavor::Postgres, "weakpg", None, "local");
    let weak_pg = weak_pg.replace("store://local/db/admin", "store://local/weak/admin");
    let (nocred, _) = database_service_at(Flavor::Postgres, "nocred", None, "local");
    let nocred = nocred.replace("store://local/db/admin", "store://local/none/admin");
    let (maria, maria_admin) = database_service_at(Flavor::MariaDb, "maria", None, "local");
    let maria = maria.replace("store://local/db/admin", "store://local/maria/admin");
    let config = format!(
        "version: 1
secretStores:
  local: {{ type: file }}
services:
{pg}{weak_pg}{nocred}{maria}envs:
  prod:
    GOOD: {{ from: {{ store: \"store://local/app/good#password\", service: \"svc://pg?kind=db_password\" }}, rotation: {{ strategy: immediate, config: {{ username: {app} }} }} }}
    WEAK: {{ from: {{ store: \"store://local/app/weak#password\", service: \"svc://weakpg?kind=db_password\" }}, rotation: {{ strategy: immediate, config: {{ username: {app} }} }} }}
    NOCRED: {{ from: {{ store: \"store://local/app/nocred#password\", service: \"svc://nocred?kind=db_password\" }}, rotation: {{ strategy: immediate, config: {{ username: {app} }} }} }}
    PAIR: {{ from: {{ store: \"store://local/app/pair#password\", service: \"svc://maria?kind=db_password\" }}, rotation: {{ strategy: two-key, config: {{ usernames: [{blue}, {green}] }} }} }}
",
        app = app.name,
        blue = blue.name,
        green = green.name,
    );
    let project = AgentProject::new(&config);
    project.put("a", "local", "db/admin", "user", &pg_admin.user);
    project.put("a", "local", "db/admin", "password", &pg_admin.password);
    project.put("a", "local", "weak/admin", "user", &weak.name);
    project.put("a", "local", "weak/admin", "password", "weak-admin-pw");
    project.put("a", "local", "maria/admin", "user", &maria_admin.user);
    project.put("a", "local", "maria/admin", "password", &maria_admin.password);

    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    // Before any agent: each secret says so.
    project.apply(&cluster).await;
    let request = wire::PreflightRequest { env: "prod".into() };
    let alone = cluster.admin_client(leader).preflight(request.clone()).await.unwrap().into_inner();
    assert!(
        alone.secrets.iter().all(|s| s.checks.iter().any(|c| c.name == "agent" && !c.ok)),
        "{alone:?}"
    );
    let token = agent_token(&cluster, "default", 600).await;
    enroll(&project.data_dir("a"), cluster.address(leader), &token).await.unwrap();
    let agent = project.start("a", &[cluster.address(leader)]);
    wait_connected(&agent).await;

    let answer = cluster.admin_client(leader).preflight(request).await.unwrap().into_inner();
    let found: Found = answer
        .secrets
        .iter()
        .map(|s| {
            let checks =
                s.checks.iter().map(|c| (c.name.clone(), (c.ok, c.detail.clone()))).collect();
            (s.key.clone(), checks)
        })
        .collect();
    let good = &found["GOOD"];
    for name in ["credential", "reach", "privilege"] {
        assert!(good[name].0, "GOOD {name}: {good:?}");
    }
    let weak_found = &found["WEAK"];
    assert!(weak_found["reach"].0, "the weak admin logs in: {weak_found:?}");
    assert!(!weak_found["privilege"].0, "{weak_found:?}");
    assert!(
        weak_found["privilege"].1.contains("neither superuser nor CREATEROLE"),
        "{weak_found:?}"
    );
    let missing = &found["NOCRED"];
    assert!(!missing["credential"].0, "{missing:?}");
    assert!(missing["credential"].1.contains("store://local/none/admin"), "{missing:?}");
    let pair = &found["PAIR"];
    assert!(pair["privilege"].0, "the MariaDB test admin may CREATE USER: {pair:?}");
    assert!(!pair["grants"].0, "{pair:?}");
    assert!(pair["grants"].1.contains("hold different grants"), "{pair:?}");
    // Nothing changed: the weak admin is still weak, the users still log in as before.
    assert_eq!(Flavor::Postgres.login_with_client(&app.name, "x"), Ok(true));
    assert_eq!(Flavor::MariaDb.login_with_client(&blue.name, "x"), Ok(true));

    drop(agent);
    cluster.shutdown().await;
    for user in [weak, app, blue, green] {
        user.drop_user().await;
    }
}
