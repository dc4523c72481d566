//! Reading a promotion line in tests: the state machine's record and what `dsops promotion
//! status` shows.

use dsops_proto::wire::admin as wire;
use dsops_state::PromotionLine;

use crate::TestCluster;

/// The leader's record of promotion line `key` (empty before its first wave).
pub async fn line(cluster: &TestCluster, key: &str) -> PromotionLine {
    let leader = cluster.leader().await;
    let key = key.to_owned();
    cluster
        .control(leader)
        .read_local(move |s| s.promotions.get(&key).cloned())
        .await
        .unwrap_or_default()
}

/// Line `key` as `dsops promotion status --key KEY` shows it.
pub async fn status(cluster: &TestCluster, key: &str) -> wire::PromotionLineStatus {
    let leader = cluster.leader().await;
    let request = wire::PromotionStatusRequest { env: String::new(), key: key.into() };
    let response =
        cluster.admin_client(leader).promotion_status(request).await.expect("status").into_inner();
    response.lines.into_iter().next().expect("the line")
}
