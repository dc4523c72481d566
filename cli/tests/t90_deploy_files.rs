//! The dsops.yaml files that ship in `deploy/` (the agent examples for systemd, compose and
//! Kubernetes) validate with `dsops validate`. The other artefacts are checked by the tools
//! their formats belong to (`scripts/check-deploy.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

mod common;

use common::{dsops, root, stderr, stdout};

/// `dsops validate -f path` passes.
fn valid(path: &str) {
    let output = dsops(&["validate", "-f", path]);
    assert_eq!(output.status.code(), Some(0), "{path}: {}", stderr(&output));
    assert!(stdout(&output).contains(": valid:"), "{path}: {}", stdout(&output));
}

#[test]
fn the_agent_configurations_in_deploy_validate() {
    for path in
        ["deploy/agent.yaml", "deploy/compose/agent-pg.yaml", "deploy/compose/agent-mysql.yaml"]
    {
        valid(path);
    }
}

#[test]
fn the_agent_configuration_in_the_kubernetes_configmap_validates() {
    let manifest =
        std::fs::read_to_string(root().join("deploy/kubernetes/agent-eu-db.yaml")).unwrap();
    // The block scalar under `dsops.yaml: |`, four spaces in.
    let mut lines = manifest.lines().skip_while(|l| l.trim() != "dsops.yaml: |").skip(1);
    let mut yaml = String::new();
    for line in lines.by_ref() {
        match line.strip_prefix("    ") {
            Some(rest) => yaml.push_str(&format!("{rest}\n")),
            None if line.trim().is_empty() => yaml.push('\n'),
            None => break,
        }
    }
    assert!(yaml.contains("secretStores:"), "{yaml}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsops.yaml");
    std::fs::write(&path, yaml).unwrap();
    valid(path.to_str().unwrap());
}
