//! An agent session inside the control plane's process (the embedded default and tests): jobs
//! arrive on a channel, receipts leave through `submit`. The executor and receipts are the same
//! as over the network; only the transport differs.

use std::future::Future;
use std::sync::Arc;

use dsops_proto::domain::{Job, SignedReceipt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::executor::Executor;

/// Runs jobs from `jobs` (at most `max_concurrent_jobs` at once) and hands each signed receipt to
/// `submit`. Ends when the sending side is dropped.
pub fn serve<F, Fut>(
    executor: Arc<Executor>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    submit: F,
) -> JoinHandle<()>
where
    F: Fn(SignedReceipt) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let submit = Arc::new(submit);
    let limit = Arc::new(Semaphore::new(executor.config().max_concurrent_jobs.max(1)));
    tokio::spawn(async move {
        while let Some(job) = jobs.recv().await {
            let Ok(permit) = limit.clone().acquire_owned().await else { return };
            let (executor, submit) = (executor.clone(), submit.clone());
            tokio::spawn(async move {
                let receipt = executor.execute(&job).await;
                submit(receipt).await;
                drop(permit);
            });
        }
    })
}
