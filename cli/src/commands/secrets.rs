//! The consumer side: `dsops get` prints a secret's current value and `dsops exec` runs a
//! command with an environment's secrets set, both reading the stores directly.

use std::collections::BTreeMap;

use dsops_agent::SecretValue;
use dsops_agent::from_config::open_store;
use dsops_agent::store::Label;
use dsops_config::config::{Loaded, SecretConfig};

use crate::args::{Cli, ExecArgs, SecretArgs};
use crate::backend::Backend;
use crate::context::require_config;
use crate::failure::Failure;

fn current(cli: &Cli, loaded: &Loaded, secret: &SecretConfig) -> Result<SecretValue, Failure> {
    let reference = &secret.store;
    let store =
        open_store(loaded, &reference.store, &cli.state_dir(), &super::store::base_dir(cli))
            .map_err(|e| Failure::invalid(format!("{e:#}")))?;
    let field = reference.value_field().to_owned();
    let fields = store
        .read(&reference.path, Label::Current)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
    fields.and_then(|mut f| f.remove(&field)).ok_or_else(|| {
        Failure::Runtime(anyhow::anyhow!(
            "{}/{} has no current value in {reference}; rotate it (dsops rotate) or set it (dsops store put)",
            secret.env,
            secret.key
        ))
    })
}

fn secret<'a>(loaded: &'a Loaded, env: &str, key: &str) -> Result<&'a SecretConfig, Failure> {
    let environment = loaded.config.envs.get(env).ok_or_else(|| {
        Failure::invalid(format!("environment {env:?} is not in {}", loaded.config.file))
    })?;
    environment.secrets.get(key).ok_or_else(|| {
        Failure::invalid(format!("{env} has no variable {key:?} in {}", loaded.config.file))
    })
}

/// Whether a secret's store entry holds a pending value: a run staged it and has not ended yet.
fn has_pending(cli: &Cli, loaded: &Loaded, secret: &SecretConfig) -> bool {
    let reference = &secret.store;
    open_store(loaded, &reference.store, &cli.state_dir(), &super::store::base_dir(cli))
        .ok()
        .and_then(|store| store.read(&reference.path, Label::Pending).ok())
        .is_some_and(|pending| pending.is_some())
}

/// On the embedded default, a pending value means a run may have been left in flight by an
/// interrupted command (its current value may no longer log in): start the embedded control
/// plane, which finishes such runs when it opens, before reading. A run another command is
/// driving right now holds the control plane; then the current value is read as it is.
fn finish_interrupted_runs(cli: &Cli, loaded: &Loaded, secrets: &[&SecretConfig]) {
    if cli.server.is_some()
        || !cli.state_dir().join("cluster").is_dir()
        || !secrets.iter().any(|s| has_pending(cli, loaded, s))
    {
        return;
    }
    let opened = crate::block_on(async {
        let backend = Backend::open(cli).await?;
        backend.close().await;
        Ok(())
    });
    if let Err(failure) = opened {
        eprintln!(
            "warning: a run is in flight and could not be finished first ({}); reading the current value as it is",
            match &failure {
                Failure::Runtime(error) => format!("{error:#}"),
                Failure::Invalid { message, .. } => message.clone().unwrap_or_default(),
            }
        );
    }
}

/// `dsops get`.
pub fn get(cli: &Cli, args: &SecretArgs) -> Result<(), Failure> {
    let loaded = require_config(cli)?;
    let wanted = secret(&loaded, &args.env, &args.key)?;
    finish_interrupted_runs(cli, &loaded, &[wanted]);
    let value = current(cli, &loaded, wanted)?;
    out!("{}", value.expose());
    Ok(())
}

/// `dsops exec`: the command's exit status becomes ours.
pub fn exec(cli: &Cli, args: &ExecArgs) -> Result<(), Failure> {
    let loaded = require_config(cli)?;
    let environment = loaded.config.envs.get(&args.env).ok_or_else(|| {
        Failure::invalid(format!("environment {:?} is not in {}", args.env, loaded.config.file))
    })?;
    finish_interrupted_runs(cli, &loaded, &environment.secrets.values().collect::<Vec<_>>());
    let mut values = BTreeMap::new();
    for (key, secret) in &environment.secrets {
        values.insert(key.clone(), current(cli, &loaded, secret)?);
    }
    let (program, rest) =
        args.command.split_first().ok_or_else(|| Failure::invalid("no command given after --"))?;
    let mut command = std::process::Command::new(program);
    command.args(rest);
    for (key, value) in &values {
        command.env(key, value.expose());
    }
    let status = command
        .status()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("running {program}: {e}")))?;
    drop(values);
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => Err(Failure::Runtime(anyhow::anyhow!("{program} was killed by a signal"))),
    }
}
