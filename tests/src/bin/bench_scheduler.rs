//! `dsops-bench-scheduler`: what one scheduler tick costs as the agenda grows. For each size
//! (default 1,000 / 10,000 / 100,000 scheduled secrets over 10 environments, `random`), 100 of
//! them hourly and the rest weekly, the tick at the first hourly firing takes the 100 due
//! entries off the agenda, re-reads them in the state and resolves them, as the leader's
//! scheduler does before it starts their runs. Prints the configuration's load time, the
//! agenda's build time (once per configuration version) and the tick's median and worst time;
//! asserts nothing. A tick that is O(due) costs the same at every size. For comparison it also
//! times the tick as it was before (the whole configuration resolved whenever anything is due).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{TimeZone as _, Utc};
use dsops_config::config::{CatalogFiles, load_with};
use dsops_control_plane::rotation::scheduler::{Agenda, resolve_due};
use dsops_state::{State, StoredConfig};

const ENVS: usize = 10;
const DUE: usize = 100;

fn parse_args() -> anyhow::Result<(Vec<usize>, usize)> {
    let mut sizes = vec![1_000, 10_000, 100_000];
    let mut samples = 7;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => {
                sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--sizes takes numbers, e.g. 1000,10000,100000")?;
                anyhow::ensure!(
                    sizes.iter().all(|n| *n >= DUE),
                    "each size must be at least {DUE}"
                );
            }
            "--samples" => samples = value()?.parse()?,
            "--help" | "-h" => {
                println!("dsops-bench-scheduler [--sizes 1000,10000,100000] [--samples N]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(samples > 0, "--samples must be at least 1");
    Ok((sizes, samples))
}

/// A configuration of `n` random secrets over [`ENVS`] environments; the first [`DUE`] rotate
/// hourly, the others weekly. Returns it with the fingerprint paths of its variables.
fn configuration(n: usize) -> (String, Vec<String>) {
    let mut yaml = String::from("version: 1\nsecretStores:\n  local: { type: file }\nenvs:\n");
    let mut paths = Vec::with_capacity(n);
    for env in 0..ENVS {
        let _ = writeln!(yaml, "  e{env}:");
        for i in (env..n).step_by(ENVS) {
            let schedule = if i < DUE { "0 * * * *" } else { "0 3 * * 0" };
            let _ = writeln!(
                yaml,
                "    S{i}:\n      from: {{ store: \"store://local/e{env}/s{i}#value\" }}\n      rotation: {{ strategy: random, schedule: \"{schedule}\" }}"
            );
            paths.push(format!("envs.e{env}.S{i}"));
        }
    }
    (yaml, paths)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let (sizes, samples) = parse_args()?;
    // Stored on Saturday 2026-11-28 at 12:30: the first hourly firing is 13:00, the first
    // weekly one Sunday 03:00.
    let applied = Utc.with_ymd_and_hms(2026, 11, 28, 12, 30, 0).unwrap().timestamp_millis();
    let tick_at = Utc.with_ymd_and_hms(2026, 11, 28, 13, 0, 5).unwrap().timestamp_millis();
    println!(
        "scheduler tick: {DUE} due among N scheduled `random` secrets over {ENVS} environments (median of {samples})"
    );
    for n in sizes {
        let (yaml, paths) = configuration(n);
        let started = Instant::now();
        let files = BTreeMap::new();
        let loaded = load_with(&yaml, "dsops.yaml", CatalogFiles::Given(&files))
            .map_err(|d| anyhow::anyhow!("the generated configuration does not validate: {d:?}"))?;
        let load = started.elapsed();
        let mut state = State::default();
        state.configs.push(StoredConfig {
            version: 1,
            config_yaml: String::new(),
            config_path: "dsops.yaml".into(),
            catalog_files: BTreeMap::new(),
            fingerprints: paths.into_iter().map(|p| (p, "f".to_owned())).collect(),
            changes: Vec::new(),
            applied_at_ms: applied as u64,
            applied_by: "bench".into(),
            index: 1,
        });
        let mut builds = Vec::new();
        let mut ticks = Vec::new();
        let mut whole = Vec::new();
        for _ in 0..samples {
            let started = Instant::now();
            let mut agenda = Agenda::build(1, &loaded, &state);
            builds.push(started.elapsed());
            anyhow::ensure!(agenda.len() == n, "{} entries on the agenda, not {n}", agenda.len());
            let started = Instant::now();
            let due =
                if agenda.has_due(tick_at) { agenda.take_due(tick_at, &state) } else { vec![] };
            let resolved = resolve_due(&loaded, due);
            ticks.push(started.elapsed());
            anyhow::ensure!(resolved.len() == DUE, "{} due, not {DUE}", resolved.len());

            let mut agenda = Agenda::build(1, &loaded, &state);
            let started = Instant::now();
            let due = agenda.take_due(tick_at, &state);
            let items: std::collections::HashMap<String, _> = loaded
                .resolved()
                .into_iter()
                .map(|item| (dsops_state::secret_id(&item.secret.env, &item.secret.key), item))
                .collect();
            let picked = due.iter().filter(|d| items.contains_key(&d.id)).count();
            whole.push(started.elapsed());
            anyhow::ensure!(picked == DUE, "{picked} due, not {DUE}");
        }
        let worst = ticks.iter().max().copied().unwrap_or_default();
        println!(
            "  {n:>7} entries: tick {:>8.1} µs (worst {:>8.1} µs; before, resolving everything: {:>9.1} µs)   agenda build {:>7.1} ms   configuration load {:>7.1} ms ({:.1} MB of YAML)",
            median(ticks).as_secs_f64() * 1e6,
            worst.as_secs_f64() * 1e6,
            median(whole).as_secs_f64() * 1e6,
            median(builds).as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            yaml.len() as f64 / 1e6
        );
    }
    Ok(())
}
