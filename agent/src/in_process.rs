//! An agent session inside the control plane's process (the embedded default and tests): jobs
//! arrive on a channel, receipts leave through `submit`. The executor and receipts are the same
//! as over the network; only the transport differs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dsops_proto::domain::{Job, SignedReceipt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::executor::Executor;

/// A crash point for tests: called after a step was performed, before its receipt is sent.
/// Returning true makes the agent die there: the receipt is lost and the session ends, as if the
/// process had been killed after the step's side effect.
pub type CrashHook = Arc<dyn Fn(&Job, &SignedReceipt) -> bool + Send + Sync>;

/// Runs jobs from `jobs` (at most `max_concurrent_jobs` at once) and hands each signed receipt to
/// `submit`. Ends when the sending side is dropped (or `crash` fires).
pub fn serve<F, Fut>(
    executor: Arc<Executor>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    submit: F,
    crash: Option<CrashHook>,
) -> JoinHandle<()>
where
    F: Fn(SignedReceipt) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let submit = Arc::new(submit);
    let limit = Arc::new(Semaphore::new(executor.config().max_concurrent_jobs.max(1)));
    let dead = Arc::new(AtomicBool::new(false));
    let (died, mut death) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        loop {
            let job = tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => job.arrived(std::time::SystemTime::now()),
                    None => return,
                },
                _ = death.recv() => return,
            };
            let Ok(permit) = limit.clone().acquire_owned().await else { return };
            let (executor, submit, crash, dead, died) =
                (executor.clone(), submit.clone(), crash.clone(), dead.clone(), died.clone());
            tokio::spawn(async move {
                if dead.load(Ordering::SeqCst) {
                    return;
                }
                let receipt = executor.execute(&job).await;
                if crash.is_some_and(|crash| crash(&job, &receipt)) {
                    dead.store(true, Ordering::SeqCst);
                    let _ = died.try_send(());
                    return;
                }
                if !dead.load(Ordering::SeqCst) {
                    submit(receipt).await;
                }
                drop(permit);
            });
        }
    })
}
