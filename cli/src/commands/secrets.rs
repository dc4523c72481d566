//! The consumer side: `dsops get` prints a secret's current value and `dsops exec` runs a
//! command with an environment's secrets set, both reading the stores directly.

use std::collections::BTreeMap;

use dsops_agent::SecretValue;
use dsops_agent::store::{Label, SecretStore};
use dsops_cli::embedded::open_store;
use dsops_control_plane::config::{Loaded, SecretConfig};

use crate::args::{Cli, ExecArgs, SecretArgs};
use crate::context::require_config;
use crate::failure::Failure;

fn current(cli: &Cli, loaded: &Loaded, secret: &SecretConfig) -> Result<SecretValue, Failure> {
    let reference = &secret.store;
    let store =
        open_store(loaded, &reference.store, &cli.state_dir(), &super::store::base_dir(cli))
            .map_err(|e| Failure::invalid(format!("{e:#}")))?;
    let field = reference.field.clone().unwrap_or_else(|| "value".to_owned());
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

/// `dsops get`.
pub fn get(cli: &Cli, args: &SecretArgs) -> Result<(), Failure> {
    let loaded = require_config(cli)?;
    let value = current(cli, &loaded, secret(&loaded, &args.env, &args.key)?)?;
    out!("{}", value.expose());
    Ok(())
}

/// `dsops exec`: the command's exit status becomes ours.
pub fn exec(cli: &Cli, args: &ExecArgs) -> Result<(), Failure> {
    let loaded = require_config(cli)?;
    let environment = loaded.config.envs.get(&args.env).ok_or_else(|| {
        Failure::invalid(format!("environment {:?} is not in {}", args.env, loaded.config.file))
    })?;
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
