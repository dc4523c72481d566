//! The newest entries of the raft log, in memory.
//!
//! The cache always holds a contiguous tail of the log: appends add at the end, truncation cuts
//! the end, purges and trimming cut the front. An entry is *pending* until the writer has made it
//! durable, and only durable entries are ever trimmed. So the cache answers every read that starts
//! at or after its first index, which is what replication and the state machine ask for (the
//! entries just appended), without a disk read or a decode.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use openraft::{Entry, LogId};

use super::{NodeId, TypeConfig};

/// Durable entries kept beyond the pending ones: at most this many...
const KEEP_ENTRIES: usize = 4096;
/// ...and at most this many encoded bytes.
const KEEP_BYTES: usize = 16 << 20;

struct Cached {
    entry: Entry<TypeConfig>,
    bytes: usize,
    durable: bool,
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct LogCache {
    entries: BTreeMap<u64, Cached>,
    durable_bytes: usize,
    durable_count: usize,
}

impl LogCache {
    /// Adds an appended entry (`bytes`: its encoded size), replacing whatever held its index.
    pub(crate) fn insert(&mut self, entry: Entry<TypeConfig>, bytes: usize) {
        let index = entry.log_id.index;
        if let Some(old) = self.entries.insert(index, Cached { entry, bytes, durable: false }) {
            self.forget(&old);
        }
    }

    fn forget(&mut self, cached: &Cached) {
        if cached.durable {
            self.durable_bytes -= cached.bytes;
            self.durable_count -= 1;
        }
    }

    /// Marks the entry written at `index` with `id` durable (a rewritten index with another id
    /// stays pending until its own write), then trims the front.
    pub(crate) fn written(&mut self, index: u64, id: LogId<NodeId>) {
        if let Some(cached) = self.entries.get_mut(&index)
            && cached.entry.log_id == id
            && !cached.durable
        {
            cached.durable = true;
            self.durable_bytes += cached.bytes;
            self.durable_count += 1;
        }
        while self.durable_count > KEEP_ENTRIES || self.durable_bytes > KEEP_BYTES {
            let Some(first) = self.entries.first_entry() else { break };
            if !first.get().durable {
                break;
            }
            let cached = first.remove();
            self.forget(&cached);
        }
    }

    /// Drops entries from `index` on (truncation).
    pub(crate) fn truncate(&mut self, index: u64) {
        for (_, cached) in self.entries.split_off(&index) {
            self.forget(&cached);
        }
    }

    /// Drops entries up to `index` (a purge).
    pub(crate) fn purge(&mut self, index: u64) {
        let kept = self.entries.split_off(&(index + 1));
        for (_, cached) in std::mem::replace(&mut self.entries, kept) {
            self.forget(&cached);
        }
    }

    /// The last entry's id.
    pub(crate) fn last_log_id(&self) -> Option<LogId<NodeId>> {
        self.entries.last_key_value().map(|(_, c)| c.entry.log_id)
    }

    /// The entries in `range`, and whether they are all of the log's entries there (the range
    /// starts at or after the first cached index); if not, the rest must be read from disk.
    pub(crate) fn range(
        &self,
        range: (Bound<u64>, Bound<u64>),
    ) -> (Vec<(u64, Entry<TypeConfig>)>, bool) {
        let start = match range.start_bound() {
            Bound::Included(i) => Some(*i),
            Bound::Excluded(i) => i.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let complete = match (start, self.entries.first_key_value()) {
            (Some(start), Some((first, _))) => start >= *first,
            (None, _) => true,
            (Some(_), None) => false,
        };
        let entries = self.entries.range(range).map(|(i, c)| (*i, c.entry.clone())).collect();
        (entries, complete)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(index: u64, term: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(cache: &LogCache, range: (Bound<u64>, Bound<u64>)) -> (Vec<u64>, bool) {
        let (entries, complete) = cache.range(range);
        (entries.into_iter().map(|(i, _)| i).collect(), complete)
    }

    #[test]
    fn answers_reads_from_its_first_index_on() {
        let mut cache = LogCache::default();
        for i in 5..=9 {
            cache.insert(entry(i, 1), 10);
        }
        assert_eq!(
            indexes(&cache, (Bound::Included(6), Bound::Unbounded)),
            (vec![6, 7, 8, 9], true)
        );
        assert_eq!(indexes(&cache, (Bound::Included(3), Bound::Excluded(7))), (vec![5, 6], false));
        assert!(!indexes(&cache, (Bound::Unbounded, Bound::Unbounded)).1);
        assert_eq!(cache.last_log_id().map(|id| id.index), Some(9));
    }

    #[test]
    fn trims_only_durable_entries_and_a_rewritten_index_stays_pending() {
        let id = |term, index| LogId::new(CommittedLeaderId::new(term, 1), index);
        let mut cache = LogCache::default();
        for i in 1..=5 {
            cache.insert(entry(i, 1), 1);
            cache.written(i, id(1, i));
        }
        // Index 3 on is truncated; 3 is rewritten in term 2, and a late completion of the term-1
        // write of 3 must not make the new entry durable.
        cache.truncate(3);
        cache.insert(entry(3, 2), 1);
        cache.written(3, id(1, 3));
        let last = KEEP_ENTRIES as u64 + 10;
        for i in 4..=last {
            cache.insert(entry(i, 2), 1);
            cache.written(i, id(2, i));
        }
        // 1 and 2 are trimmed; the pending 3 stops the trim although the cache is over its limit.
        let (held, complete) = indexes(&cache, (Bound::Included(3), Bound::Unbounded));
        assert!(complete);
        assert_eq!((held.first(), held.len()), (Some(&3), (last - 2) as usize));
        cache.written(3, id(2, 3));
        assert_eq!(cache.durable_count, KEEP_ENTRIES);
    }

    #[test]
    fn purge_and_truncate_keep_the_counts() {
        let mut cache = LogCache::default();
        for i in 1..=10 {
            cache.insert(entry(i, 1), 100);
            cache.written(i, LogId::new(CommittedLeaderId::new(1, 1), i));
        }
        cache.purge(4);
        cache.truncate(8);
        assert_eq!(indexes(&cache, (Bound::Unbounded, Bound::Unbounded)).0, vec![5, 6, 7]);
        assert_eq!((cache.durable_count, cache.durable_bytes), (3, 300));
    }
}
