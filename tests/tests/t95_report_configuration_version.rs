//! A compliance report is judged against the configuration in force at its period's end, not
//! the one stored since: a secret added later is not in the population of an earlier period.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_control_plane::rotation::compliance::report;
use dsops_proto::wire::admin::ApplyConfigRequest;
use dsops_reports::Standard;
use dsops_tests::TestCluster;

fn config(keys: &[&str]) -> String {
    let mut yaml =
        String::from("version: 1\nsecretStores: { local: { type: file } }\nenvs:\n  dev:\n");
    for key in keys {
        yaml.push_str(&format!(
            "    {key}: {{ from: {{ store: \"store://local/{key}#v\" }}, rotation: {{ strategy: random }} }}\n"
        ));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_uses_the_configuration_in_force_at_the_end_of_its_period() {
    let cluster = TestCluster::start(1).await;
    let leader = cluster.leader().await;
    let apply = |yaml: String, id: &str| ApplyConfigRequest {
        request_id: id.into(),
        config_yaml: yaml,
        config_path: "dsops.yaml".into(),
        catalog_files: Default::default(),
        expected_version: 0,
    };
    let mut admin = cluster.admin_client(leader);
    admin.apply_config(apply(config(&["FIRST"]), "apply-version-one-01")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = dsops_proto::now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    admin.apply_config(apply(config(&["FIRST", "SECOND"]), "apply-version-two-02")).await.unwrap();
    let control = cluster.control(leader);
    let keys = |report: dsops_reports::ComplianceReport| {
        report.population.into_iter().map(|row| row.key).collect::<Vec<_>>()
    };
    // Current first (cached), then the earlier period, then the current again: each report
    // sees its own version, whichever the cache held before.
    let now = dsops_proto::now_ms() + 1_000;
    let current = report(control, Standard::PciDss, "dev", 0, now, None).await.unwrap();
    assert_eq!(keys(current), ["FIRST", "SECOND"]);
    let earlier = report(control, Standard::PciDss, "dev", 0, between, None).await.unwrap();
    assert_eq!(keys(earlier), ["FIRST"], "the period ended before SECOND was configured");
    let current = report(control, Standard::PciDss, "dev", 0, now, None).await.unwrap();
    assert_eq!(keys(current), ["FIRST", "SECOND"]);
    cluster.shutdown().await;
}
