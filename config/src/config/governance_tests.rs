//! Governance settings in dsops.yaml — notification targets and channels, approval rules —
//! each bad one asserting the exact message (file:line:column: field: what).

use std::path::Path;

use super::load_str;
use super::tests::{HEAD, assert_findings, findings};

#[test]
fn t33_bad_notification_target() {
    assert_findings(
        &format!("{HEAD}rotation:\n  defaults:\n    notification: {{ on_failure: [\"#ops\"] }}\n"),
        &[
            "dsops.yaml:12:34: error: rotation.defaults.notification.on_failure[0]: \"#ops\" is not a notification target: expected <kind>:<address> (kind one of slack, email, webhook, pagerduty, log) or a plain name (letters, digits, '_', '.', '-'); did you mean \"slack:#ops\"?",
        ],
    );
}

#[test]
fn t40_approval_rules_name_declared_environments_roles_and_bounds() {
    let text = format!(
        "{HEAD}rotation:\n  approvals:\n    prod: {{ required: 2, approvers: [\"role:approver\", carol], expires: 12h }}\n    dev: {{ required: 0, approvers: [\"role:root\", \"bad name\"], expires: 1s }}\n    stagin: {{ required: 1 }}\nenvs:\n  prod: {{}}\n  dev: {{}}\n  staging: {{}}\n"
    );
    assert_findings(
        &text,
        &[
            "dsops.yaml:13:22: error: rotation.approvals.dev.required: 0 is out of range; expected 1 to 16",
            "dsops.yaml:13:37: error: rotation.approvals.dev.approvers[0]: \"role:root\" names no role; expected role:approver, role:operator or role:admin",
            "dsops.yaml:13:50: error: rotation.approvals.dev.approvers[1]: operator name \"bad name\" must be 1-63 letters, digits, '-' or '_', starting with a letter or digit",
            "dsops.yaml:13:72: error: rotation.approvals.dev.expires: between 5s and 30d",
            "dsops.yaml:14:5: error: rotation.approvals.stagin: unknown environment \"stagin\"; did you mean \"staging\"?",
        ],
    );
    let good = format!(
        "{HEAD}rotation:\n  approvals:\n    prod: {{ required: 2, approvers: [\"role:approver\", carol], expires: 12h }}\nenvs:\n  prod: {{}}\n"
    );
    let loaded = load_str(&good, "dsops.yaml", Path::new(".")).unwrap();
    let rule = &loaded.config.rotation.approvals["prod"];
    assert_eq!((rule.required, rule.approvers.len(), rule.expires.as_secs()), (2, 2, 43_200));
}

#[test]
fn t41_notification_channels_and_targets_resolve_or_warn_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rotation-policies")).unwrap();
    std::fs::create_dir_all(dir.path().join("principals")).unwrap();
    std::fs::write(
        dir.path().join("rotation-policies/payments.yaml"),
        "apiVersion: dsops.io/v1\nkind: RotationPolicy\nmetadata:\n  name: payments\nspec:\n  strategy: random\n  notifications:\n    onFailure: [payments-team, oncall, billing]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("principals/billing.yaml"),
        "apiVersion: dsops.io/v1\nkind: Principal\nmetadata:\n  name: billing\nspec:\n  type: team\n  contact: { email: billing@example.com }\n",
    )
    .unwrap();
    let config = format!(
        "{HEAD}rotation:\n  dataDir: {}\nnotifications:\n  channels:\n    hook: {{ type: webhook, url: \"https://hooks.example.com/x\", credential: \"store://local/n/hook#secret\" }}\n    chat: {{ type: slack, channel: \"#payments\", credential: \"store://local/n/slack#url\" }}\n  targets:\n    payments-team: [\"slack:#payments\", \"webhook:hook\"]\nenvs:\n  dev:\n    K:\n      from: {{ store: \"store://local/a#b\" }}\n      rotation: {{ policy: payments, config: {{ length: 16 }} }}\n",
        dir.path().display()
    );
    let got = findings(&config);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].contains("payments.yaml:8:"), "{got:#?}");
    assert!(got[0].contains("warning: spec.notifications.onFailure[1]: notification target \"oncall\" resolves to no channel"), "{got:#?}");
    assert!(got[1].contains("warning: spec.notifications.onFailure[2]: notification target \"billing\" resolves to no channel: principal \"billing\" has no contact that resolves: no email channel"), "{got:#?}");
    // Channel errors: a type, a missing setting, a store that does not exist, a plain http URL.
    let bad = format!(
        "{HEAD}notifications:\n  channels:\n    a: {{ type: sms }}\n    b: {{ type: webhook, credential: \"store://nowhere/x#y\" }}\n    c: {{ type: webhook, url: \"http://hooks.example.com\", credential: \"store://local/h#s\" }}\n  targets:\n    t: [\"fax:123\"]\n"
    );
    let got = findings(&bad);
    let joined = got.join("\n");
    for expected in [
        "notifications.channels.a.type: \"sms\" is not one of: slack, webhook, pagerduty, email",
        "notifications.channels.b.url: is required",
        "notifications.channels.b.credential:",
        "notifications.channels.c.url: \"http://hooks.example.com\" must be https://",
        "notifications.targets.t[0]: \"fax:123\" is not a notification target",
    ] {
        assert!(joined.contains(expected), "{expected}\n{joined}");
    }
}
