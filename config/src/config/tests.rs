//! Bad configurations, each asserting the exact message (file:line:column: field: what).

use std::path::Path;

use super::load_str;

/// A valid head that the cases below extend.
pub(super) const HEAD: &str = "version: 1
secretStores:
  local: { type: file }
services:
  pg:
    type: postgresql
    host: 127.0.0.1
    database: app
    admin_store: store://local/pg/admin
";

/// Validates `text`; returns every finding as displayed.
pub(super) fn findings(text: &str) -> Vec<String> {
    match load_str(text, "dsops.yaml", Path::new(".")) {
        Ok(loaded) => loaded.warnings.iter().map(ToString::to_string).collect(),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    }
}

/// HEAD plus an `envs.dev` section with one variable.
fn with_var(var: &str) -> String {
    format!("{HEAD}envs:\n  dev:\n{var}")
}

pub(super) fn assert_findings(text: &str, expected: &[&str]) {
    let got = findings(text);
    assert_eq!(got, expected, "\n--- config ---\n{text}");
}

#[test]
fn valid_example_has_no_findings() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/dsops.yaml"))
            .unwrap();
    assert_findings(&text, &[]);
}

#[test]
fn t01_unknown_top_level_key_suggests() {
    assert_findings(
        &format!("{HEAD}envz: {{}}\n"),
        &["dsops.yaml:10:1: error: envz: unknown field \"envz\"; did you mean \"envs\"?"],
    );
}

#[test]
fn t02_missing_version() {
    assert_findings(
        "secretStores: {}\n",
        &["dsops.yaml:1:1: error: version: is required: the configuration format version, 1"],
    );
}

#[test]
fn t03_unsupported_version() {
    assert_findings(
        &HEAD.replace("version: 1", "version: 2"),
        &["dsops.yaml:1:10: error: version: unsupported version 2; this dsops reads version 1"],
    );
}

#[test]
fn t04_unknown_store_type_suggests() {
    assert_findings(
        "version: 1\nsecretStores:\n  v: { type: valt, address: \"https://vault:8200\" }\n",
        &[
            "dsops.yaml:3:14: error: secretStores.v.type: unknown store type \"valt\"; did you mean \"vault\"?",
        ],
    );
}

#[test]
fn t05_service_field_typo_and_missing_required() {
    let text = HEAD.replace("    host: 127.0.0.1\n", "    hots: 127.0.0.1\n");
    assert_findings(
        &text,
        &[
            "dsops.yaml:6:5: error: services.pg.host: is required: a host name or IP address",
            "dsops.yaml:7:5: error: services.pg.hots: unknown field \"hots\"; did you mean \"host\"?",
        ],
    );
}

#[test]
fn t06_port_out_of_range() {
    let text = HEAD.replace("    database: app\n", "    database: app\n    port: 70000\n");
    assert_findings(
        &text,
        &["dsops.yaml:9:11: error: services.pg.port: 70000 is out of range; expected 1 to 65535"],
    );
}

#[test]
fn t07_host_given_as_url() {
    let text = HEAD.replace("host: 127.0.0.1", "host: postgres://db:5432");
    assert_findings(
        &text,
        &[
            "dsops.yaml:7:11: error: services.pg.host: expected a host name, not a URL: \"postgres://db:5432\" (put the port in `port`)",
        ],
    );
}

#[test]
fn t08_admin_store_names_unknown_store() {
    let text = HEAD.replace("store://local/pg/admin", "store://locl/pg/admin");
    assert_findings(
        &text,
        &[
            "dsops.yaml:9:18: error: services.pg.admin_store: unknown secret store \"locl\"; did you mean \"local\"?",
        ],
    );
}

#[test]
fn t09_admin_store_must_be_a_whole_entry() {
    let text = HEAD.replace("store://local/pg/admin", "store://local/pg/admin#password");
    assert_findings(
        &text,
        &[
            "dsops.yaml:9:18: error: services.pg.admin_store: \"store://local/pg/admin#password\" must name a whole entry, without a #field (the entry holds `user` and `password`)",
        ],
    );
}

#[test]
fn t10_unknown_service_type_suggests() {
    let text = HEAD.replace("type: postgresql", "type: postgres");
    assert_findings(
        &text,
        &[
            "dsops.yaml:6:11: error: services.pg.type: unknown service type \"postgres\"; did you mean \"postgresql\"?",
        ],
    );
}

#[test]
fn t11_store_reference_without_field_means_the_whole_value() {
    assert_findings(&with_var("    K:\n      from: { store: \"store://local/app/db\" }\n"), &[]);
}

#[test]
fn t12_malformed_store_reference() {
    assert_findings(
        &with_var("    K:\n      from: { store: \"vault://x/y#z\" }\n"),
        &[
            "dsops.yaml:13:22: error: envs.dev.K.from.store: it does not start with \"store://\" in \"vault://x/y#z\" (expected store://<store>/<path>#<field>)",
        ],
    );
}

#[test]
fn t13_unknown_service_reference_suggests() {
    assert_findings(
        &with_var(
            "    K:\n      from: { store: \"store://local/a#b\", service: \"svc://pgg?kind=db_password\" }\n      rotation: { strategy: immediate, config: { username: u } }\n",
        ),
        &[
            "dsops.yaml:13:52: error: envs.dev.K.from.service: unknown service \"pgg\"; did you mean \"pg\"?",
        ],
    );
}

#[test]
fn t14_service_reference_without_kind() {
    assert_findings(
        &with_var("    K:\n      from: { store: \"store://local/a#b\", service: \"svc://pg\" }\n"),
        &[
            "dsops.yaml:13:52: error: envs.dev.K.from.service: \"svc://pg\" must name a credential kind: svc://<service>?kind=<kind>",
        ],
    );
}

#[test]
fn t15_unknown_credential_kind() {
    assert_findings(
        &with_var(
            "    K:\n      from: { store: \"store://local/a#b\", service: \"svc://pg?kind=db_pasword\" }\n      rotation: { strategy: immediate, config: { username: u } }\n",
        ),
        &[
            "dsops.yaml:13:52: error: envs.dev.K.from.service: service type \"postgresql\" has no credential kind \"db_pasword\"; did you mean \"db_password\"?",
        ],
    );
}

#[test]
fn t16_unknown_strategy_suggests() {
    assert_findings(
        &with_var(
            "    K:\n      from: { store: \"store://local/a#b\" }\n      rotation: { strategy: randmo }\n",
        ),
        &[
            "dsops.yaml:14:29: error: envs.dev.K.rotation.strategy: unknown strategy \"randmo\"; did you mean \"random\"?",
        ],
    );
}

#[test]
fn t17_bad_cron_schedule() {
    assert_findings(
        &with_var(
            "    K:\n      from: { store: \"store://local/a#b\" }\n      rotation: { strategy: random, schedule: \"0 3 * *\" }\n",
        ),
        &[
            "dsops.yaml:14:47: error: envs.dev.K.rotation.schedule: invalid cron schedule \"0 3 * *\": it has 4 fields (expected five fields, minute hour day-of-month month day-of-week, e.g. \"0 3 * * 0\")",
        ],
    );
}

#[test]
fn t18_bad_grace_period() {
    assert_findings(
        &format!("{HEAD}rotation:\n  defaults:\n    grace_period: 24\n"),
        &[
            "dsops.yaml:12:19: error: rotation.defaults.grace_period: invalid duration \"24\": the number has no unit (examples: 30s, 15m, 24h, 90d, 2w, 1h30m)",
        ],
    );
}

#[test]
fn t19_unknown_policy_suggests() {
    assert_findings(
        &with_var(
            "    K:\n      from: { store: \"store://local/a#b\", service: \"svc://pg?kind=db_password\" }\n      rotation: { policy: database-standart, config: { usernames: [a, b] } }\n",
        ),
        &[
            "dsops.yaml:14:27: error: envs.dev.K.rotation.policy: unknown rotation policy \"database-standart\"; did you mean \"database-standard\"?",
        ],
    );
}

#[test]
fn t20_policy_excludes_environment() {
    assert_findings(
        &with_var(
            "    K:\n      from: { store: \"store://local/a#b\", service: \"svc://pg?kind=db_password\" }\n      rotation: { policy: database-production, config: { usernames: [a, b] } }\n",
        ),
        &[
            "dsops.yaml:1:1: warning: notifications: no channel is configured under notifications.channels, so these targets reach nobody: email:dba@example.com, pagerduty:database-oncall, slack:#db-changes",
            "dsops.yaml:14:27: error: envs.dev.K.rotation.policy: policy \"database-production\" excludes environment \"dev\"",
        ],
    );
}

#[test]
fn t21_overlap_rejected_for_single_credential_targets() {
    let text = format!(
        "{HEAD}  hook:\n    type: webhook\n    url: https://rotator.internal/hook\nenvs:\n  dev:\n    K:\n      from: {{ store: \"store://local/a#b\", service: \"svc://hook?kind=secret\" }}\n      rotation: {{ strategy: overlap }}\n"
    );
    assert_findings(
        &text,
        &[
            "dsops.yaml:17:29: error: envs.dev.K.rotation.strategy: `overlap` needs two valid credentials at once, but webhook/secret allows maxActive 1; use two-key (two users taking turns) or immediate",
        ],
    );
}

#[test]
fn t21b_webhook_urls_must_not_expose_values() {
    let hook = |url: &str| {
        format!(
            "{HEAD}  hook:\n    type: webhook\n    url: {url}\nenvs:\n  dev:\n    K:\n      from: {{ store: \"store://local/a#b\", service: \"svc://hook?kind=secret\" }}\n      rotation: {{ strategy: webhook }}\n"
        )
    };
    assert_findings(&hook("https://rotator.internal/hook"), &[]);
    assert_findings(&hook("http://127.0.0.1:9000/hook"), &[]);
    assert_findings(&hook("http://[::1]/hook"), &[]);
    assert_findings(
        &hook("http://rotator.internal/hook"),
        &[
            "dsops.yaml:12:10: error: services.hook.url: \"http://rotator.internal/hook\" must be https://: secret values travel in its requests (http:// is accepted only to a loopback address)",
        ],
    );
    assert_findings(
        &hook("https://ops:pw@rotator.internal/hook"),
        &[
            "dsops.yaml:12:10: error: services.hook.url: \"https://ops:pw@rotator.internal/hook\" carries credentials in the URL; put the signing secret in auth_store",
        ],
    );
}

#[test]
fn t22_two_key_needs_two_distinct_users() {
    assert_findings(
        &with_var(
            "    K:\n      from: { store: \"store://local/a#b\", service: \"svc://pg?kind=db_password\" }\n      rotation: { strategy: two-key, config: { usernames: [app, app] } }\n",
        ),
        &[
            "dsops.yaml:14:59: error: envs.dev.K.rotation.config.usernames: the two users must differ, both are \"app\"",
        ],
    );
}

#[test]
fn t23_immediate_needs_a_username() {
    assert_findings(
        &with_var(
            "    K:\n      from: { store: \"store://local/a#b\", service: \"svc://pg?kind=db_password\" }\n      rotation: { strategy: immediate }\n",
        ),
        &[
            "dsops.yaml:14:17: error: envs.dev.K.rotation.config.username: is required: the database user whose password `immediate` changes",
        ],
    );
}

#[test]
fn t24_random_with_a_database_target() {
    assert_findings(
        &with_var(
            "    K:\n      from: { store: \"store://local/a#b\", service: \"svc://pg?kind=db_password\" }\n      rotation: { strategy: random }\n",
        ),
        &[
            "dsops.yaml:14:29: error: envs.dev.K.rotation.strategy: `random` generates a value with no target, but from.service points at a postgresql service; remove from.service or choose immediate, two-key or overlap",
        ],
    );
}

#[test]
fn t25_immediate_without_a_service() {
    assert_findings(
        &with_var(
            "    K:\n      from: { store: \"store://local/a#b\" }\n      rotation: { strategy: immediate }\n",
        ),
        &[
            "dsops.yaml:13:13: error: envs.dev.K.from.service: the `immediate` strategy changes a credential on a service: set from.service to svc://<service>?kind=<kind>",
        ],
    );
}

#[test]
fn t26_two_variables_write_one_location() {
    assert_findings(
        &with_var(
            "    A:\n      from: { store: \"store://local/a#b\" }\n      rotation: { strategy: random }\n    B:\n      from: { store: \"store://local/a#b\" }\n      rotation: { strategy: random }\n",
        ),
        &[
            "dsops.yaml:16:22: error: envs.dev.B.from.store: store://local/a#b is also rotated by envs.dev.A; two rotations writing one location would overwrite each other",
        ],
    );
}

#[test]
fn t27_two_variables_rotate_one_user() {
    assert_findings(
        &with_var(
            "    A:\n      from: { store: \"store://local/a#p\", service: \"svc://pg?kind=db_password\" }\n      rotation: { strategy: immediate, config: { username: app } }\n    B:\n      from: { store: \"store://local/b#p\", service: \"svc://pg?kind=db_password\" }\n      rotation: { strategy: two-key, config: { usernames: [app, app_b] } }\n",
        ),
        &[
            "dsops.yaml:17:46: error: envs.dev.B.rotation.config: user \"app\" on service \"pg\" is also rotated by envs.dev.A; one user's password cannot belong to two variables",
        ],
    );
}

#[test]
fn t28_invalid_variable_and_environment_names() {
    assert_findings(
        &format!(
            "{HEAD}envs:\n  dev env:\n    X: {{}}\n  prod:\n    9LIVES:\n      from: {{ store: \"store://local/a#b\" }}\n"
        ),
        &[
            "dsops.yaml:11:3: error: envs.dev env: environment name \"dev env\" must be 1-63 letters, digits, '-' or '_', starting with a letter or digit",
            "dsops.yaml:14:5: error: envs.prod.9LIVES: \"9LIVES\" is not a valid environment variable name (letters, digits and '_', not starting with a digit)",
        ],
    );
}

#[test]
fn t29_every_problem_is_reported_at_once() {
    let text = "version: 3\nsecretStores:\n  local: { type: file, pth: x }\nrotation:\n  defaults: { schedule: \"* * *\", grace_period: 1y }\n";
    assert_findings(
        text,
        &[
            "dsops.yaml:1:10: error: version: unsupported version 3; this dsops reads version 1",
            "dsops.yaml:3:24: error: secretStores.local.pth: unknown field \"pth\"; did you mean \"path\"?",
            "dsops.yaml:5:25: error: rotation.defaults.schedule: invalid cron schedule \"* * *\": it has 3 fields (expected five fields, minute hour day-of-month month day-of-week, e.g. \"0 3 * * 0\")",
            "dsops.yaml:5:48: error: rotation.defaults.grace_period: invalid duration \"1y\": unknown unit 'y'; use s, m, h, d or w (examples: 30s, 15m, 24h, 90d, 2w, 1h30m)",
        ],
    );
}

#[test]
fn t30_duplicate_keys_and_yaml_syntax() {
    assert_findings(
        &format!("{HEAD}version: 1\n"),
        &["dsops.yaml:10:1: error: duplicate key \"version\" (first defined on line 1)"],
    );
    let got = findings("version: 1\nenvs: [\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("dsops.yaml:3:1: error: invalid YAML:"), "{got:?}");
}

#[test]
fn t31_wrong_types() {
    assert_findings(
        &format!("{HEAD}envs:\n  dev:\n    K:\n      from: \"store://local/a#b\"\n"),
        &["dsops.yaml:13:13: error: envs.dev.K.from: expected a mapping, found a string"],
    );
    assert_findings(
        "version: \"one\"\n",
        &["dsops.yaml:1:10: error: version: expected an integer, found a string"],
    );
}

#[test]
fn t32_missing_data_dir() {
    assert_findings(
        &format!("{HEAD}rotation:\n  dataDir: ./no-such-catalog\n"),
        &[
            "dsops.yaml:11:12: error: rotation.dataDir: catalog directory ./no-such-catalog does not exist or is not a directory",
        ],
    );
}

#[test]
fn data_dir_catalog_adds_types_and_reports_its_own_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("service-types")).unwrap();
    std::fs::write(
        dir.path().join("service-types/ldap.yaml"),
        "apiVersion: dsops.io/v1\nkind: ServiceType\nmetadata: {name: ldap, category: directory}\nspec:\n  credentialKinds:\n    - {name: bind_password, capabilities: [rotate, verify]}\n",
    )
    .unwrap();
    let text = format!(
        "{HEAD}  ldap:\n    type: ldap\n    url: ldaps://ldap.internal\nrotation:\n  dataDir: {}\nenvs:\n  dev:\n    BIND:\n      from: {{ store: \"store://local/ldap#pw\", service: \"svc://ldap?kind=bind_password\" }}\n      rotation: {{ strategy: script, config: {{ command: /opt/rotate-ldap }} }}\n",
        dir.path().display()
    );
    let loaded = load_str(&text, "dsops.yaml", Path::new(".")).unwrap();
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "dsops.yaml:11:11: warning: services.ldap.type: dsops has no adapter for \"ldap\"; only the script and webhook strategies can rotate its credentials"
        ]
    );
    std::fs::write(
        dir.path().join("service-types/broken.yaml"),
        "apiVersion: dsops.io/v1\nkind: ServiceType\nmetadata: {name: broken}\n",
    )
    .unwrap();
    let errors = load_str(&text, "dsops.yaml", Path::new(".")).unwrap_err();
    let errors: Vec<String> = errors
        .iter()
        .filter(|d| d.severity == crate::document::Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        [format!(
            "{}/service-types/broken.yaml:1:1: error: spec: missing required field",
            dir.path().display()
        )]
    );
}

#[test]
fn t34_unknown_strategy_config_key_suggests() {
    assert_findings(
        &with_var(
            "    K:\n      from: { store: \"store://local/a#b\" }\n      rotation: { strategy: random, config: { lenght: 32 } }\n",
        ),
        &[
            "dsops.yaml:14:47: error: envs.dev.K.rotation.config.lenght: unknown field \"lenght\"; did you mean \"length\"?",
        ],
    );
}

#[test]
fn t35_host_with_a_port() {
    let text = HEAD.replace("host: 127.0.0.1", "host: db.internal:5432");
    assert_findings(
        &text,
        &[
            "dsops.yaml:7:11: error: services.pg.host: expected a host name without a port: \"db.internal:5432\" (put the port in `port`)",
        ],
    );
    let ipv6 = HEAD.replace("host: 127.0.0.1", "host: \"::1\"");
    assert_findings(&ipv6, &[]);
}

#[test]
fn t36_a_broken_store_does_not_make_its_references_unknown() {
    let text = HEAD.replace("local: { type: file }", "local: { type: s3 }");
    assert_findings(
        &text,
        &[
            "dsops.yaml:3:18: error: secretStores.local.type: unknown store type \"s3\"; expected one of: file, vault, aws.secretsmanager, onepassword, gcp.secretmanager, azure.keyvault",
        ],
    );
}

#[test]
fn t37_segment_names_follow_the_name_rules() {
    let text = HEAD.replace("    database: app\n", "    database: app\n    segment: \"prod db\"\n");
    assert_findings(
        &text,
        &[
            "dsops.yaml:9:14: error: services.pg.segment: segment name \"prod db\" must be 1-63 letters, digits, '-' or '_', starting with a letter or digit",
        ],
    );
}

#[test]
fn t38_present_but_empty_required_field() {
    let text = HEAD.replace("host: 127.0.0.1", "host:");
    assert_findings(
        &text,
        &["dsops.yaml:7:9: error: services.pg.host: must not be empty: a host name or IP address"],
    );
}

#[test]
fn t39_numbers_in_other_notations_and_overflow() {
    let text = HEAD.replace("    database: app\n", "    database: app\n    port: 0x1538\n");
    assert_findings(&text, &[]);
    let text =
        HEAD.replace("    database: app\n", "    database: app\n    port: 99999999999999999999\n");
    assert_findings(
        &text,
        &[
            "dsops.yaml:9:11: error: services.pg.port: 99999999999999999999 is out of range; expected 1 to 65535",
        ],
    );
    assert_findings(
        &HEAD.replace("version: 1", "version: -1"),
        &["dsops.yaml:1:10: error: version: unsupported version -1; this dsops reads version 1"],
    );
}

#[test]
fn t40_a_service_and_its_stores_share_a_segment() {
    let text = "version: 1
secretStores:
  local: { type: file }
  far: { type: file, segment: seg-b }
services:
  pg:
    type: postgresql
    segment: seg-b
    host: 127.0.0.1
    database: app
    admin_store: store://local/pg/admin
envs:
  dev:
    K:
      from: { store: \"store://local/a#b\", service: \"svc://pg?kind=db_password\" }
      rotation: { strategy: immediate, config: { username: u } }
    OK:
      from: { store: \"store://far/a#b\", service: \"svc://pg?kind=db_password\" }
      rotation: { strategy: immediate, config: { username: v } }
";
    assert_findings(
        text,
        &[
            "dsops.yaml:11:18: error: services.pg.admin_store: store \"local\" is in segment \"default\" but the service is in segment \"seg-b\"; the agents of \"seg-b\" hold the stores of their own segment only, so none could read store://local/pg/admin",
            "dsops.yaml:15:22: error: envs.dev.K.from.store: store \"local\" is in segment \"default\" but service \"pg\" is in segment \"seg-b\"; an agent holds the stores and services of its own segment only, so no agent could rotate it: use a store of segment \"seg-b\"",
        ],
    );
}
