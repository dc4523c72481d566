//! The real `dsops rotate`, SIGKILLed at random moments, over and over: each time the next
//! `dsops rotate` (every other time a `dsops get` before it) finishes what the killed one left in
//! flight (saying so), then rotates, and `dsops get` prints a value that logs in through the
//! server's own client (`psql`, `mariadb`).
//! For `immediate` and `two-key`, on PostgreSQL and MariaDB.
//!
//! A third of the kills land at a uniformly random moment of the whole command (start-up
//! included), a third a random few milliseconds after the run staged its value, and a third as
//! soon as the staged value logs in: there a kill leaves the target and the store disagreeing (an
//! `immediate` run killed between apply and promote: the database has the new password, the
//! store's current value is the old one).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

#[allow(dead_code)] // Each test binary uses part of the shared helpers.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dsops_agent::store::Label;
use dsops_tests::databases::{Flavor, TestUser};
use dsops_tests::rotation::{Project, database_service};

use common::{dsops_in, stderr, stdout};

/// Kills per strategy and server: 4 × 13 = 52.
const KILLS: usize = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Immediate,
    TwoKey,
}

/// What the kills did, for the report and the checks.
#[derive(Debug, Default)]
struct Tally {
    kills: usize,
    /// Kills after which the store held a pending value: the run was in flight.
    mid_run: usize,
    /// Kills after which the store's current value did not log in (only a finished run puts
    /// that right).
    broken: usize,
    /// Runs the next command reported finishing.
    recovered: usize,
}

async fn project(flavor: Flavor, strategy: Strategy) -> (Project, Vec<TestUser>) {
    let (service, admin) = database_service(flavor);
    let initial = "Initial-password-0000000000000001";
    let (users, rotation) = match strategy {
        Strategy::Immediate => {
            let user = flavor.create_user("kill_imm", initial, true).await;
            let rotation =
                format!("{{ strategy: immediate, config: {{ username: {} }} }}", user.name);
            (vec![user], rotation)
        }
        Strategy::TwoKey => {
            let a = flavor.create_user("kill_a", initial, true).await;
            let b = flavor.create_user("kill_b", "Other-password-00000000000000002", true).await;
            let rotation = format!(
                "{{ strategy: two-key, config: {{ usernames: [{}, {}] }} }}",
                a.name, b.name
            );
            (vec![a, b], rotation)
        }
    };
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n{service}rotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    DB:\n      from: {{ store: \"store://local/app/db#password\", service: \"svc://db?kind=db_password\" }}\n      rotation: {rotation}\n    DB_USER:\n      from: {{ store: \"store://local/app/db#username\" }}\n"
    ));
    project.put("db/admin", "user", &admin.user);
    project.put("db/admin", "password", &admin.password);
    project.put("app/db", "password", initial);
    project.put("app/db", "username", &users[0].name);
    (project, users)
}

/// `dsops get` of the password and the user, logged in with through the server's own client;
/// returns how many interrupted runs the two commands said they finished first.
fn get_logs_in(dir: &Path, flavor: Flavor) -> Result<usize, String> {
    let mut finished = 0;
    let mut get = |key: &str| {
        let output = dsops_in(dir, &["get", "--env", "dev", "--key", key]);
        finished +=
            stderr(&output).matches("left in flight by an interrupted dsops command").count();
        if output.status.success() {
            Ok(stdout(&output).trim_end_matches('\n').to_owned())
        } else {
            Err(format!("dsops get {key}: {}", stderr(&output)))
        }
    };
    let (user, password) = (get("DB_USER")?, get("DB")?);
    match flavor.login_with_client(&user, &password)? {
        true => Ok(finished),
        false => Err(format!("{user} does not log in with the value dsops get prints")),
    }
}

/// Whether the store's current value logs in (checked through the server's client).
fn current_logs_in(project: &Project, flavor: Flavor) -> bool {
    let user = project.read("app/db", "username", Label::Current).unwrap_or_default();
    let password = project.read("app/db", "password", Label::Current).unwrap_or_default();
    flavor.login_with_client(&user, &password).unwrap_or(false)
}

fn rotate(dir: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_dsops"))
        .args(["rotate", "--env", "dev", "--key", "DB"])
        .current_dir(dir)
        .env_remove("DSOPS_CONFIG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// How long an uninterrupted `dsops rotate` takes here.
fn timed_rotate(dir: &Path) -> Duration {
    let started = Instant::now();
    let output = dsops_in(dir, &["rotate", "--env", "dev", "--key", "DB"]);
    assert!(output.status.success(), "{}{}", stdout(&output), stderr(&output));
    assert!(stdout(&output).contains("Completed"), "{}", stdout(&output));
    started.elapsed()
}

async fn kill_again_and_again(flavor: Flavor, strategy: Strategy) {
    let (project, users) = project(flavor, strategy).await;
    let dir = project.dir.path().to_owned();
    // The first run initialises `.dsops/`; the second measures a whole command.
    timed_rotate(&dir);
    let whole = timed_rotate(&dir);
    get_logs_in(&dir, flavor).unwrap();

    let mut tally = Tally::default();
    let mut attempt = 0u64;
    // Immediate runs go on until a kill has landed between apply and promote (the case of the
    // report this test is for), within a bound.
    let want_broken = strategy == Strategy::Immediate;
    while tally.kills < KILLS || (want_broken && tally.broken == 0 && tally.kills < 4 * KILLS) {
        attempt += 1;
        let mut child = rotate(&dir);
        let started = Instant::now();
        if attempt.is_multiple_of(3) {
            // Right after the pending value starts to log in: the target changed, the store's
            // current value is still the old one.
            while started.elapsed() < whole * 2 && child.try_wait().unwrap().is_none() {
                let pending = project.read("app/db", "password", Label::Pending);
                let user = project.read("app/db", "username", Label::Pending);
                if let (Some(password), Some(user)) = (pending, user)
                    && flavor.login_with_client(&user, &password) == Ok(true)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        } else if attempt % 3 == 1 {
            // Anywhere in the command.
            let delay = whole.mul_f64(rand::random_range(0.0..1.0));
            std::thread::sleep(delay);
        } else {
            // A few milliseconds after the value was staged (or at the latest when a whole
            // command's time has passed).
            while started.elapsed() < whole * 2
                && project.read("app/db", "password", Label::Pending).is_none()
                && child.try_wait().unwrap().is_none()
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(rand::random_range(0..40)));
        }
        if child.try_wait().unwrap().is_some() {
            continue; // It finished first: not a kill.
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        tally.kills += 1;
        if project.read("app/db", "password", Label::Pending).is_some() {
            tally.mid_run += 1;
        }
        if !current_logs_in(&project, flavor) {
            tally.broken += 1;
        }

        // Every other time `dsops get` comes first: it finishes the run left in flight before it
        // reads, so the value it prints logs in.
        if tally.kills.is_multiple_of(2) {
            tally.recovered += get_logs_in(&dir, flavor).unwrap_or_else(|why| {
                panic!("{flavor:?} {strategy:?}, get right after kill {}: {why}", tally.kills)
            });
        }
        // The next command finishes what was left, then does what it was asked.
        let next = dsops_in(&dir, &["rotate", "--env", "dev", "--key", "DB"]);
        let (out, err) = (stdout(&next), stderr(&next));
        assert!(
            next.status.success() && out.contains("Completed"),
            "{flavor:?} {strategy:?}, kill {}: the next rotate failed:\n{out}{err}",
            tally.kills
        );
        tally.recovered += err.matches("left in flight by an interrupted dsops command").count();
        assert!(
            project.read("app/db", "password", Label::Pending).is_none(),
            "no pending value is left behind"
        );
        tally.recovered += get_logs_in(&dir, flavor)
            .unwrap_or_else(|why| panic!("{flavor:?} {strategy:?}, kill {}: {why}", tally.kills));
    }
    eprintln!("{flavor:?} {strategy:?}: {tally:?} ({attempt} attempts, {whole:?} per command)");
    // The kills landed inside runs, and some of them where only finishing the run puts the
    // credential right: the checks above ran against the case this test is for.
    assert!(tally.mid_run >= 3, "{tally:?}");
    assert!(tally.recovered >= tally.mid_run, "{tally:?}");
    if strategy == Strategy::Immediate {
        assert!(tally.broken >= 1, "{tally:?}");
    }
    for user in users {
        user.drop_user().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_immediate_survives_sigkill() {
    kill_again_and_again(Flavor::Postgres, Strategy::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_key_survives_sigkill() {
    kill_again_and_again(Flavor::Postgres, Strategy::TwoKey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_immediate_survives_sigkill() {
    kill_again_and_again(Flavor::MariaDb, Strategy::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_two_key_survives_sigkill() {
    kill_again_and_again(Flavor::MariaDb, Strategy::TwoKey).await;
}
