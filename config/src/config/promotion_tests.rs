//! `rotation.promotion` and `health`: the issue's example loads into lines; each mistake is
//! reported with file, line and column.

use std::path::Path;

use super::load_str;
use super::promotion::{GateAction, HealthProbe};
use super::tests::{assert_findings, findings};

const BASE: &str = "version: 1
secretStores:
  local: { type: file }
  local-b: { type: file, segment: seg-b }
services:
  pg-prod:
    type: postgresql
    host: 127.0.0.1
    database: app
    admin_store: store://local-b/pg/admin
    segment: seg-b
";

fn envs() -> &'static str {
    "envs:
  dev:
    API_KEY: { from: { store: \"store://local/dev/api#key\" }, rotation: { strategy: random } }
    SIGNING: { from: { store: \"store://local/dev/sig#key\" }, rotation: { strategy: random }, promotion: { group: jwt } }
  staging:
    API_KEY: { from: { store: \"store://local/stg/api#key\" }, rotation: { strategy: random } }
    JWT_KEY: { from: { store: \"store://local/stg/jwt#key\" }, rotation: { strategy: random }, promotion: { group: jwt } }
  production:
    API_KEY: { from: { store: \"store://local/prod/api#key\" }, rotation: { strategy: random } }
    ALONE: { from: { store: \"store://local/prod/alone#key\" }, rotation: { strategy: random } }
"
}

#[test]
fn the_issue_example_loads_into_lines_in_stage_order() {
    let text = format!(
        "{BASE}rotation:
  promotion:
    - env: dev
      soak: 10m
    - env: staging
      soak: 24h
      gates: [staging-api]
    - env: production
      gates: [prod-db-ready]
health:
  staging-api:   {{ type: http, segment: seg-a, url: \"https://api.staging.internal/healthz\", expect: 200, every: 1m, failures: 3 }}
  prod-db-ready: {{ type: sql, service: pg-prod, query: \"select 1\", every: 5m }}
{}",
        envs()
    );
    let loaded = load_str(&text, "dsops.yaml", Path::new(".")).expect("valid");
    let config = &loaded.config;
    let soaks: Vec<u64> = config.rotation.promotion.iter().map(|s| s.soak.as_secs()).collect();
    assert_eq!(soaks, [600, 86_400, 0]);
    let api = &config.health["staging-api"];
    assert_eq!((api.segment.as_str(), api.every.as_secs(), api.failures), ("seg-a", 60, 3));
    assert_eq!((api.on_fail, api.on_inconclusive), (GateAction::Halt, GateAction::Wait));
    let db = &config.health["prod-db-ready"];
    assert_eq!(db.segment, "seg-b", "a SQL check runs in its service's segment");
    assert!(
        matches!(&db.probe, HealthProbe::Sql { query, expect: None, .. } if query == "select 1")
    );
    let lines: Vec<(String, Vec<String>)> = config
        .promotion_lines()
        .iter()
        .map(|l| {
            (l.name.clone(), l.stages.iter().map(|s| format!("{}/{}", s.env, s.key)).collect())
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                "API_KEY".to_owned(),
                vec!["dev/API_KEY".into(), "staging/API_KEY".into(), "production/API_KEY".into()]
            ),
            ("jwt".to_owned(), vec!["dev/SIGNING".into(), "staging/JWT_KEY".into()]),
        ]
    );
    let (line, at) = config.line_of("staging", "JWT_KEY").expect("in a line");
    assert_eq!((line.name.as_str(), at), ("jwt", 1));
    assert!(config.line_of("production", "ALONE").is_none(), "one stage is no line");
}

#[test]
fn promotion_and_health_mistakes_are_named_where_they_are() {
    let text = format!(
        "{BASE}rotation:
  promotion:
    - env: dev
      soak: 31d
    - env: stagin
    - env: production
      gates: [prod-db-redy]
    - env: production
health:
  web: {{ type: http, url: \"ftp://x\" }}
  db: {{ type: sql, service: pg-prod }}
  odd: {{ type: tcp }}
  wrong: {{ type: sql, service: pg-prod, query: \"select 1\", segment: seg-a, every: 1s, on_fail: stop }}
  prod-db-ready: {{ type: sql, service: pg-prod, query: \"select 1\" }}
{}",
        envs()
    );
    assert_findings(
        &text,
        &[
            "dsops.yaml:15:13: error: rotation.promotion[0].soak: at most 30d",
            "dsops.yaml:16:12: error: rotation.promotion[1].env: unknown environment \"stagin\"; did you mean \"staging\"?",
            "dsops.yaml:18:15: error: rotation.promotion[2].gates[0]: unknown health check \"prod-db-redy\"; did you mean \"prod-db-ready\"?",
            "dsops.yaml:19:12: error: rotation.promotion[3].env: production is already a stage; each environment is one stage",
            "dsops.yaml:21:27: error: health.web.url: \"ftp://x\" is not an http:// or https:// URL",
            "dsops.yaml:22:7: error: health.db.query: is required: a query such as select 1",
            "dsops.yaml:23:16: error: health.odd.type: unknown health check type \"tcp\"; expected one of: http, sql, script",
            "dsops.yaml:24:69: error: health.wrong.segment: a sql or script check runs in its service's segment; remove segment",
        ],
    );
}

#[test]
fn two_variables_of_one_environment_cannot_share_a_line() {
    let text = format!(
        "{BASE}rotation:
  promotion:
    - env: dev
    - env: staging
envs:
  dev:
    A: {{ from: {{ store: \"store://local/a#k\" }}, rotation: {{ strategy: random }}, promotion: {{ group: g }} }}
    B: {{ from: {{ store: \"store://local/b#k\" }}, rotation: {{ strategy: random }}, promotion: {{ group: g }} }}
  staging:
    A: {{ from: {{ store: \"store://local/c#k\" }}, rotation: {{ strategy: random }}, promotion: {{ group: \"bad group\" }} }}
"
    );
    let got = findings(&text);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[1].contains("envs.staging.A.promotion.group: promotion group name \"bad group\""),
        "{got:#?}"
    );
    assert!(
        got[0].contains(
            "19:91: error: envs.dev.B.promotion.group: B and A of dev are both in promotion line \"g\""
        ),
        "{got:#?}"
    );
}
