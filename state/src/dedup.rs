use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::Response;

/// How long a request id is remembered (by the log's clock, not the machine's).
pub const DEDUP_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;
/// The most request ids remembered at once.
pub const DEDUP_CAPACITY: usize = 100_000;

/// Remembers the response to each recent request id, so a retry is applied once.
///
/// Entries expire after [`DEDUP_WINDOW_MS`] of log time or when more than [`DEDUP_CAPACITY`]
/// are held (oldest first). Both rules depend only on the log, so every node forgets the same ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    // Ordered, so a snapshot of the same state is the same bytes on every node (and its hash,
    // which the golden log fixtures compare, is stable).
    responses: BTreeMap<String, Response>,
    /// (request id, time first applied) in order of application.
    order: VecDeque<(String, u64)>,
}

impl Dedup {
    /// The remembered response for a request id.
    pub fn get(&self, request_id: &str) -> Option<&Response> {
        self.responses.get(request_id)
    }

    /// Remembers a response, then expires old entries as of `now_ms`.
    pub fn remember(&mut self, request_id: &str, response: Response, now_ms: u64) {
        if self.responses.insert(request_id.to_owned(), response).is_none() {
            self.order.push_back((request_id.to_owned(), now_ms));
        }
        while let Some((id, at)) = self.order.front() {
            let expired = now_ms.saturating_sub(*at) > DEDUP_WINDOW_MS;
            if !(expired || self.order.len() > DEDUP_CAPACITY) {
                break;
            }
            self.responses.remove(id);
            self.order.pop_front();
        }
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.responses.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }
}
