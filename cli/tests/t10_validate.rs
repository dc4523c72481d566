//! `dsops validate` on the examples: the valid one passes, each invalid one gives exactly the
//! result documented beside it (`examples/invalid/NAME.expected`), with exit code 2.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

mod common;

use common::{dsops, root, stderr, stdout};

#[test]
fn the_example_configuration_is_valid() {
    let output = dsops(&["validate", "-f", "examples/dsops.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.starts_with("examples/dsops.yaml: valid: 2 environment(s), 6 secret(s) (5 rotated)"),
        "{text}"
    );
    assert!(text.contains("catalog: 11 service types"), "{text}");
}

#[test]
fn every_invalid_example_gives_its_documented_result() {
    let dir = root().join("examples/invalid");
    let mut checked = 0;
    let mut entries: Vec<_> =
        std::fs::read_dir(&dir).unwrap().filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let relative = format!("examples/invalid/{name}");
        let expected = std::fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{relative} has no .expected file documenting its result"));
        let output = dsops(&["validate", "-f", &relative]);
        assert_eq!(output.status.code(), Some(2), "{relative}: {}", stderr(&output));
        assert_eq!(stderr(&output), expected, "{relative}");
        assert_eq!(stdout(&output), "", "{relative}: nothing on stdout for a failure");
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} invalid examples found");
}

#[test]
fn json_output_reports_diagnostics_as_data() {
    let output = dsops(&["validate", "-f", "examples/invalid/typos.yaml", "--output", "json"]);
    assert_eq!(output.status.code(), Some(2));
    let body: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(body["ok"], false);
    let diagnostics = body["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 4);
    assert_eq!(diagnostics[1]["path"], "services.pg.hots");
    assert_eq!(diagnostics[1]["line"], 7);
    assert_eq!(diagnostics[1]["column"], 5);
    assert_eq!(diagnostics[1]["severity"], "error");

    let output = dsops(&["validate", "-f", "examples/dsops.yaml", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let body: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(body["ok"], true);
    assert_eq!(body["secrets"], 6);
}

#[test]
fn a_missing_file_is_invalid_input() {
    let output = dsops(&["validate", "-f", "no/such/dsops.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("no/such/dsops.yaml: error: cannot read configuration:"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_flags_exit_2_with_usage() {
    let output = dsops(&["plan"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--env <ENV>"), "{}", stderr(&output));
    let output = dsops(&["list", "services", "--tag", "prod"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("expected KEY:VALUE such as env:prod"), "{}", stderr(&output));
    let output = dsops(&["plan", "--env", "dev", "--at", "tomorrow", "-f", "examples/dsops.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("expected an RFC 3339 time"), "{}", stderr(&output));
}

#[test]
fn the_default_file_is_dsops_yaml_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("examples/dsops.yaml"), dir.path().join("dsops.yaml")).unwrap();
    let output = common::dsops_in(dir.path(), &["validate"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("dsops.yaml: valid"));
}

/// The example configuration of the project's vision (`examples/vision-dsops.yaml`, copied
/// verbatim), as a new user would try it: in a directory of its own, with the empty `dataDir`
/// it names beside it. It validates, and the vision's commands around it work as written.
#[test]
fn the_vision_example_validates_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(root().join("examples/vision-dsops.yaml"), d.join("dsops.yaml")).unwrap();
    std::fs::create_dir(d.join("dsops-data")).unwrap();
    let output = common::dsops_in(d, &["validate"]);
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    assert!(
        stdout(&output).contains("valid: 1 environment(s), 5 secret(s)"),
        "{}",
        stdout(&output)
    );

    // `dsops rotate --env production --dry-run`: what is due, without --key or --all.
    let dry = common::dsops_in(d, &["rotate", "--env", "production", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}{}", stdout(&dry), stderr(&dry));
    assert!(stdout(&dry).contains("DATABASE_URL"), "{}", stdout(&dry));

    // `svc://<type>/<service>` with --service: the service resolves (here to be refused, before
    // any run, as this version cannot rotate connection strings); a wrong type is named.
    let service = "svc://postgres/postgres-prod?kind=connection_string";
    let args = ["rotate", "--service", service, "--policy", "pg-app-user-rotation", "--dry-run"];
    let typed = common::dsops_in(d, &args);
    assert!(
        stdout(&typed)
            .contains("postgresql/connection_string credentials is not supported in this version"),
        "{}{}",
        stdout(&typed),
        stderr(&typed)
    );
    let wrong = common::dsops_in(
        d,
        &[
            "rotate",
            "--service",
            "svc://stripe/postgres-prod?kind=connection_string",
            "--policy",
            "pg-app-user-rotation",
        ],
    );
    assert_ne!(wrong.status.code(), Some(0));
    assert!(
        stderr(&wrong).contains(
            "names type \"stripe\", but service \"postgres-prod\" is of type \"postgresql\""
        ),
        "{}",
        stderr(&wrong)
    );

    // `--type` takes a type or a category; `--category` also a finer one.
    let databases = common::dsops_in(
        d,
        &["list", "services", "--type", "database", "--tag", "env:prod", "-o", "json"],
    );
    assert_eq!(databases.status.code(), Some(0), "{}", stderr(&databases));
    let rows: serde_json::Value = serde_json::from_slice(&databases.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty(), "no database instance tagged env:prod");
    assert!(rows.iter().all(|r| r["category"] == "database"), "{rows:?}");
    let payment = common::dsops_in(
        d,
        &["list", "services", "--type", "api-service", "--category", "payment", "-o", "json"],
    );
    assert_eq!(payment.status.code(), Some(0), "{}", stderr(&payment));
    let rows: serde_json::Value = serde_json::from_slice(&payment.stdout).unwrap();
    let types: Vec<&str> =
        rows.as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert!(!types.is_empty() && types.iter().all(|t| *t == "stripe"), "{types:?}");
}
