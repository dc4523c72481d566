//! `dsops-bench-log-flush`: what one durable raft-log append costs on this disk, for each way of
//! storing the log that ADR 0004 weighs. Each iteration writes one entry of `--bytes` bytes and
//! waits until it is on disk, as the leader does before it replicates and a follower before it
//! acknowledges:
//!
//! - redb: one write transaction per append (the entry and the committed index), committed with
//!   immediate durability, as `raft::log_store` does;
//! - an append-only segment growing as it is written, `fdatasync` after each record;
//! - an append-only segment preallocated with zeros, `fdatasync` after each record (a data-only
//!   sync: the file's size and blocks do not change);
//! - raft-log (the openraft author's write-ahead log crate), `append` then `flush` and wait,
//!   with its batching wait set to zero (built with `--features raft-log-bench` only, so that no
//!   other build compiles it).
//!
//! Prints the mean, p50 and p99 in µs per store; asserts nothing. Run it where the nodes keep
//! their data (`--dir`, default a temporary directory under /var/tmp).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
#[cfg(feature = "raft-log-bench")]
use raft_log::api::raft_log_writer::RaftLogWriter as _;
use redb::{Database, Durability, TableDefinition};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

struct Args {
    appends: usize,
    bytes: usize,
    dir: PathBuf,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args { appends: 3000, bytes: 400, dir: PathBuf::from("/var/tmp") };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--appends" => args.appends = value()?.parse()?,
            "--bytes" => args.bytes = value()?.parse()?,
            "--dir" => args.dir = PathBuf::from(value()?),
            "--help" | "-h" => {
                println!("dsops-bench-log-flush [--appends N] [--bytes N] [--dir DIR]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(args.appends > 0 && args.bytes > 0, "--appends and --bytes must be positive");
    Ok(args)
}

fn entry(bytes: usize, index: u64) -> Vec<u8> {
    let mut body = format!("{{\"index\":{index},\"payload\":\"").into_bytes();
    body.resize(bytes.saturating_sub(2).max(body.len()), b'x');
    body.extend_from_slice(b"\"}");
    body
}

/// Runs `append` for indexes 1..=n and returns each call's time.
fn time_appends(
    n: usize,
    mut append: impl FnMut(u64) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    // A few unmeasured appends first: file creation and the first page allocations.
    for index in 1..=20 {
        append(index)?;
    }
    let mut times = Vec::with_capacity(n);
    for index in 21..21 + n as u64 {
        let started = Instant::now();
        append(index)?;
        times.push(started.elapsed());
    }
    Ok(times)
}

fn redb_store(dir: &Path, args: &Args) -> anyhow::Result<Vec<Duration>> {
    let db = Database::create(dir.join("raft-log.redb"))?;
    time_appends(args.appends, |index| {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut logs = txn.open_table(LOGS)?;
            logs.insert(index, entry(args.bytes, index).as_slice())?;
            let mut meta = txn.open_table(META)?;
            meta.insert("committed", format!("{}", index - 1).as_bytes())?;
        }
        txn.commit()?;
        Ok(())
    })
}

/// A segment record: length, CRC-32 of the rest, sequence number, entry.
fn record(bytes: usize, index: u64) -> Vec<u8> {
    let body = entry(bytes, index);
    let mut record = Vec::with_capacity(body.len() + 16);
    record.extend_from_slice(&(body.len() as u32).to_le_bytes());
    record.extend_from_slice(&[0; 4]);
    record.extend_from_slice(&index.to_le_bytes());
    record.extend_from_slice(&body);
    let crc = crc32fast::hash(&record[8..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    record
}

fn growing_segment(dir: &Path, args: &Args) -> anyhow::Result<Vec<Duration>> {
    let mut file = OpenOptions::new().create(true).append(true).open(dir.join("growing.log"))?;
    time_appends(args.appends, |index| {
        file.write_all(&record(args.bytes, index))?;
        file.sync_data()?;
        Ok(())
    })
}

fn preallocated_segment(dir: &Path, args: &Args) -> anyhow::Result<Vec<Duration>> {
    let path = dir.join("preallocated.log");
    let size = (args.appends + 40) * (args.bytes + 64);
    {
        // Zeros written, not fallocate'd: unwritten extents would make each sync a metadata one.
        let mut file = File::create(&path)?;
        let zeros = vec![0u8; 1 << 20];
        let mut written = 0;
        while written < size {
            file.write_all(&zeros)?;
            written += zeros.len();
        }
        file.sync_all()?;
    }
    let file = OpenOptions::new().write(true).open(&path)?;
    let mut offset = 0u64;
    time_appends(args.appends, |index| {
        let record = record(args.bytes, index);
        file.write_all_at(&record, offset)?;
        offset += record.len() as u64;
        file.sync_data()?;
        Ok(())
    })
}

#[cfg(feature = "raft-log-bench")]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct RaftLogTypes;

#[cfg(feature = "raft-log-bench")]
impl raft_log::Types for RaftLogTypes {
    type LogId = (u64, u64);
    type LogPayload = String;
    type Vote = (u64, u64);
    type UserData = String;
    type Callback = std::sync::mpsc::SyncSender<std::io::Result<()>>;

    fn log_index(log_id: &Self::LogId) -> u64 {
        log_id.1
    }

    fn payload_size(payload: &Self::LogPayload) -> u64 {
        payload.len() as u64
    }
}

#[cfg(feature = "raft-log-bench")]
fn raft_log_store(dir: &Path, args: &Args) -> anyhow::Result<Vec<Duration>> {
    let path = dir.join("raft-log");
    std::fs::create_dir_all(&path)?;
    let mut config = raft_log::Config::new(path.to_str().context("directory name")?);
    // No waiting for more writes to batch: each append is flushed on its own, as openraft 0.9
    // asks for them.
    config.wal.flush_batch_wait = Some(Duration::ZERO);
    let mut log = raft_log::RaftLog::<RaftLogTypes>::open(std::sync::Arc::new(config))?;
    time_appends(args.appends, |index| {
        let payload = String::from_utf8(entry(args.bytes, index))?;
        log.append([((1, index), payload)])?;
        if index > 1 {
            log.commit((1, index - 1))?;
        }
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        log.flush(true, Some(done))?;
        wait.recv()??;
        Ok(())
    })
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = times.iter().map(|d| micros(*d)).sum::<f64>() / times.len() as f64;
    let at = |q: f64| micros(times[((times.len() - 1) as f64 * q) as usize]);
    println!(
        "  {name:<36} mean {mean:7.1} µs   p50 {:7.1} µs   p99 {:7.1} µs   ({:.0} appends/s)",
        at(0.5),
        at(0.99),
        1e6 / mean
    );
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let dir = tempfile::Builder::new().prefix("dsops-bench-log-flush").tempdir_in(&args.dir)?;
    println!(
        "{} durable appends of {} bytes each, one at a time, in {}",
        args.appends,
        args.bytes,
        args.dir.display()
    );
    report("redb, one transaction per append", redb_store(dir.path(), &args)?);
    report("segment, growing, fdatasync", growing_segment(dir.path(), &args)?);
    report("segment, preallocated, fdatasync", preallocated_segment(dir.path(), &args)?);
    #[cfg(feature = "raft-log-bench")]
    report("raft-log 0.4, append + flush", raft_log_store(dir.path(), &args)?);
    #[cfg(not(feature = "raft-log-bench"))]
    println!("  (raft-log: build with --features raft-log-bench to include it)");
    Ok(())
}
