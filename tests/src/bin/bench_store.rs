//! `dsops-bench-store`: what the agent's encrypted file store costs per rotation. Each rotation
//! does what a strategy does to its entry: read `current`, stage a new value, read every label,
//! promote. The first round creates the entries; the rounds after it rotate them again, as a
//! steady schedule does. Prints, per round kind, the wall time and this process's CPU time per
//! rotation (`/proc/self/stat`, so a round must be long enough for its 10 ms ticks); asserts
//! nothing beyond each call succeeding. The store lives in a temporary directory under `--dir`
//! (default: the system's temporary directory), so the figures are that filesystem's.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use dsops_store::secret::SecretValue;
use dsops_store::{Fields, Label, SecretStore as _};
use dsops_store::{FileStore, FileStoreOptions};
use dsops_tests::usage::cpu_ms;

struct Args {
    entries: usize,
    rounds: usize,
    threads: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args { entries: 500, rounds: 4, threads: 1, dir: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--entries" => args.entries = value()?.parse().context("--entries takes a number")?,
            "--rounds" => args.rounds = value()?.parse().context("--rounds takes a number")?,
            "--threads" => args.threads = value()?.parse().context("--threads takes a number")?,
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                println!(
                    "dsops-bench-store [--entries 500] [--rounds 4] [--threads 1] [--dir PATH]"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(args.entries > 0 && args.threads > 0, "--entries and --threads must be > 0");
    anyhow::ensure!(args.rounds >= 2, "--rounds must be at least 2 (one creates the entries)");
    Ok(args)
}

/// One rotation of `entry` by run `run`, as a strategy does it.
fn rotate(store: &FileStore, entry: &str, run: &str) -> anyhow::Result<()> {
    let current = store.read(entry, Label::Current)?;
    let value = SecretValue::new(format!("{run}-{}", current.map_or(0, |f| f.len())));
    let fields = Fields::from([("password".to_owned(), value)]);
    store.stage(entry, run, &fields)?;
    let labels = store.read_labels(entry)?;
    anyhow::ensure!(labels.contains_key(&Label::Pending), "{entry}: nothing staged");
    store.promote(entry, run)?;
    Ok(())
}

/// Runs one round over every entry on `threads` threads; returns (wall µs, CPU µs) per rotation.
fn round(store: &FileStore, args: &Args, number: usize) -> anyhow::Result<(f64, f64)> {
    let cpu = cpu_ms("self")?;
    let started = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.threads)
            .map(|t| {
                scope.spawn(move || {
                    for i in (t..args.entries).step_by(args.threads) {
                        rotate(store, &format!("bench/entry-{i}"), &format!("run-{number}-{i}"))?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().expect("a worker panicked"))
    })?;
    let wall = started.elapsed().as_secs_f64() * 1e6 / args.entries as f64;
    let cpu = (cpu_ms("self")? - cpu) as f64 * 1e3 / args.entries as f64;
    Ok((wall, cpu))
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let base = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .context("creating the store's directory")?;
    let options = FileStoreOptions {
        dir: base.path().join("entries"),
        key_file: base.path().join("store.key"),
    };
    let store = FileStore::open("bench", &options)?;
    println!(
        "file store in {}: {} entries, {} thread(s); per rotation (read, stage, read labels, promote)",
        base.path().display(),
        args.entries,
        args.threads
    );
    let (wall, cpu) = round(&store, &args, 0)?;
    println!("first round (creates the entries): {wall:8.1} µs wall {cpu:8.1} µs CPU");
    let mut steady = Vec::new();
    for number in 1..args.rounds {
        steady.push(round(&store, &args, number)?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let wall = median(steady.iter().map(|s| s.0).collect());
    let cpu = median(steady.iter().map(|s| s.1).collect());
    println!(
        "later rounds (median of {}):       {wall:8.1} µs wall {cpu:8.1} µs CPU",
        steady.len()
    );
    Ok(())
}
