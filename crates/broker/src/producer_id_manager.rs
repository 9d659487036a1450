//! Producer ids in cluster mode, as Kafka's `RPCProducerIdManager`: the
//! broker hands out ids from blocks the active controller allocates
//! (AllocateProducerIds with this broker's id and epoch), fetching the next
//! block in the background once 90% of the current one is used. With no id
//! left and the next block not there yet, InitProducerId is answered
//! COORDINATOR_LOAD_IN_PROGRESS (the producer retries), as in Kafka.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AllocateProducerIdsRequest, BrokerId};
use parking_lot::Mutex;

use crate::alter_partition_manager::BrokerEpoch;
use crate::controller_channel::ControllerChannel;
use crate::error::BrokerError;

#[derive(Default)]
struct Blocks {
    current: Range<i64>,
    /// The size of the block `current` came from.
    current_len: i64,
    next: Option<Range<i64>>,
    requesting: bool,
}

/// Hands out producer ids from controller-allocated blocks (see the module doc).
pub struct ProducerIdManager {
    channel: Arc<ControllerChannel>,
    broker_id: i32,
    broker_epoch: BrokerEpoch,
    request_deadline: Duration,
    blocks: Mutex<Blocks>,
}

impl ProducerIdManager {
    /// A manager asking the controller as broker `broker_id`.
    pub fn new(channel: Arc<ControllerChannel>, broker_id: i32, broker_epoch: BrokerEpoch, request_deadline: Duration) -> Arc<Self> {
        Arc::new(ProducerIdManager { channel, broker_id, broker_epoch, request_deadline, blocks: Mutex::new(Blocks::default()) })
    }

    /// The next producer id, or COORDINATOR_LOAD_IN_PROGRESS while the
    /// next block is being fetched. Must run inside the tokio runtime.
    pub fn generate(self: &Arc<Self>) -> Result<i64, BrokerError> {
        let mut blocks = self.blocks.lock();
        if blocks.current.is_empty() {
            if let Some(next) = blocks.next.take() {
                blocks.current_len = next.end - next.start;
                blocks.current = next;
            }
        }
        let id = (!blocks.current.is_empty()).then(|| {
            let id = blocks.current.start;
            blocks.current.start += 1;
            id
        });
        // Kafka's threshold: ask for the next block once 90% of this one is used.
        let low = (blocks.current.end - blocks.current.start) * 10 <= blocks.current_len;
        if low && blocks.next.is_none() && !blocks.requesting {
            blocks.requesting = true;
            let me = Arc::clone(self);
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(me.fetch());
                }
                Err(_) => blocks.requesting = false,
            }
        }
        id.ok_or_else(|| {
            BrokerError::kafka(ResponseError::CoordinatorLoadInProgress, "Producer ID block is not ready yet, retry later.")
        })
    }

    async fn fetch(self: Arc<Self>) {
        let block = self.request().await;
        let mut blocks = self.blocks.lock();
        blocks.requesting = false;
        match block {
            Ok(block) => blocks.next = Some(block),
            Err(e) => tracing::warn!(error = %e, "cannot get a producer id block from the controller"),
        }
    }

    async fn request(&self) -> Result<Range<i64>, String> {
        let epoch = (self.broker_epoch)().ok_or("this broker is not registered yet")?;
        let request = AllocateProducerIdsRequest::default().with_broker_id(BrokerId(self.broker_id)).with_broker_epoch(epoch);
        let answer = self.channel.send(&request, self.request_deadline).await.map_err(|e| e.to_string())?;
        if answer.error_code != 0 {
            return Err(format!("the controller answered {:?}", ResponseError::try_from_code(answer.error_code)));
        }
        let start = answer.producer_id_start.0;
        if start < 0 || answer.producer_id_len <= 0 {
            return Err(format!("the controller answered an empty block ({start}, {})", answer.producer_id_len));
        }
        Ok(start..start + i64::from(answer.producer_id_len))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::controller_api::testing::{eventually, TestController};

    #[tokio::test]
    async fn ids_come_from_controller_blocks_and_the_next_block_is_fetched_ahead() {
        let controller = TestController::start(true).await;
        controller.decisions.lock().brokers.insert(2, 7);
        let channel = controller.channel("producer-ids");
        let ids = ProducerIdManager::new(channel, 2, Arc::new(|| Some(7)), Duration::from_secs(30));
        // The first call starts the fetch and asks the producer to retry.
        let first = ids.generate().expect_err("no block yet");
        assert_eq!(first.response_error(), ResponseError::CoordinatorLoadInProgress);
        eventually("a block", || ids.blocks.lock().next.is_some()).await;
        // The fake controller's blocks are 0..1000, 1000..2000, ...
        let handed: Vec<i64> = (0..900).map(|_| ids.generate().expect("an id")).collect();
        assert_eq!(handed, (0..900).collect::<Vec<_>>());
        // 90% used: the next block is on its way before this one runs out.
        eventually("the next block", || ids.blocks.lock().next.is_some()).await;
        let rest: Vec<i64> = (0..101).map(|_| ids.generate().expect("an id")).collect();
        assert_eq!(rest, (900..1001).collect::<Vec<_>>());
        assert_eq!(controller.refused.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_stale_broker_epoch_gets_no_block() {
        let controller = TestController::start(true).await;
        controller.decisions.lock().brokers.insert(2, 8);
        let channel = controller.channel("producer-ids");
        let ids = ProducerIdManager::new(channel, 2, Arc::new(|| Some(7)), Duration::from_secs(30));
        let refused = ids.request().await.expect_err("stale");
        assert!(refused.contains("StaleBrokerEpoch"), "{refused}");
    }
}
