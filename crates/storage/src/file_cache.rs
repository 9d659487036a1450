//! The process-wide cache of open read handles for segment files that are
//! not kept open, so the broker's file descriptors grow with the partitions
//! it hosts and the reads in flight, not with the number of segments.
//!
//! Every handle is keyed by the id of the [`crate::segment::LogFile`] that
//! asked for it (unique per open of a segment), never by path: a segment
//! replaced or deleted and recreated under the same name gets a new id, so a
//! stale handle is never served for it. The least recently used handle is
//! closed when the cache is full; a reader that still holds it keeps it open
//! until its read ends.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

/// Open handles the process keeps at most for segment files that are not
/// pinned open (the active segments' files are, outside this cache).
pub const CAPACITY: usize = 256;

static CACHE: LazyLock<Mutex<FileCache>> = LazyLock::new(|| Mutex::new(FileCache::new(CAPACITY)));
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh key for a file that reads through the cache.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn cache() -> MutexGuard<'static, FileCache> {
    // A panic while holding the lock leaves the maps consistent (every
    // mutation is a single insert or remove), so a poisoned lock is usable.
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A read-only handle on `path` for the file with key `id`, opened if the
/// cache has none.
pub(crate) fn get(id: u64, path: &Path) -> std::io::Result<Arc<File>> {
    if let Some(file) = cache().lookup(id) {
        return Ok(file);
    }
    // Opened outside the lock: other readers need not wait for the open.
    let file = Arc::new(File::open(path)?);
    Ok(cache().insert(id, file))
}

/// Closes the cached handle of `id`, if any (its file is going away or is
/// now kept open by its owner).
pub(crate) fn forget(id: u64) {
    cache().remove(id);
}

/// Handles held by the process-wide cache (for tests and metrics).
pub fn open_handles() -> usize {
    cache().by_id.len()
}

/// An LRU map of open handles.
#[derive(Debug)]
struct FileCache {
    capacity: usize,
    tick: u64,
    /// id -> (handle, tick of its last use)
    by_id: HashMap<u64, (Arc<File>, u64)>,
    /// tick of last use -> id, oldest first
    by_tick: BTreeMap<u64, u64>,
}

impl FileCache {
    fn new(capacity: usize) -> FileCache {
        FileCache {
            capacity: capacity.max(1),
            tick: 0,
            by_id: HashMap::new(),
            by_tick: BTreeMap::new(),
        }
    }

    fn touch(&mut self, id: u64) -> Option<Arc<File>> {
        self.tick += 1;
        let tick = self.tick;
        let (file, used) = self.by_id.get_mut(&id)?;
        self.by_tick.remove(used);
        *used = tick;
        self.by_tick.insert(tick, id);
        Some(Arc::clone(file))
    }

    fn lookup(&mut self, id: u64) -> Option<Arc<File>> {
        self.touch(id)
    }

    /// Caches `file` for `id` (or returns the handle another reader cached
    /// first), closing the least recently used handles beyond the capacity.
    fn insert(&mut self, id: u64, file: Arc<File>) -> Arc<File> {
        if let Some(existing) = self.touch(id) {
            return existing;
        }
        while self.by_id.len() >= self.capacity {
            let Some((_, oldest)) = self.by_tick.pop_first() else {
                break;
            };
            self.by_id.remove(&oldest);
        }
        self.tick += 1;
        self.by_tick.insert(self.tick, id);
        self.by_id.insert(id, (Arc::clone(&file), self.tick));
        file
    }

    fn remove(&mut self, id: u64) {
        if let Some((_, used)) = self.by_id.remove(&id) {
            self.by_tick.remove(&used);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_least_recently_used_handle_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let mut cache = FileCache::new(3);
        for id in 1..=3 {
            cache.insert(id, Arc::new(File::open(&path).unwrap()));
        }
        assert!(cache.lookup(1).is_some()); // 2 is now the oldest
        cache.insert(4, Arc::new(File::open(&path).unwrap()));
        assert_eq!(cache.by_id.len(), 3);
        assert!(cache.lookup(2).is_none());
        assert!(
            cache.lookup(1).is_some() && cache.lookup(3).is_some() && cache.lookup(4).is_some()
        );
        cache.remove(3);
        assert!(cache.lookup(3).is_none());
        assert_eq!((cache.by_id.len(), cache.by_tick.len()), (2, 2));
        // A second insert for the same id keeps the first handle.
        let first = cache.lookup(4).unwrap();
        let again = cache.insert(4, Arc::new(File::open(&path).unwrap()));
        assert!(Arc::ptr_eq(&first, &again));
    }
}
