//! Which log dirs failed (Kafka's `LogDirFailureChannel`).
//!
//! An I/O error while writing to a log dir (an append, fsync, roll, index,
//! segment deletion or checkpoint write) takes the whole dir offline, once:
//! one ERROR line names the dir and the cause, every partition in it answers
//! KAFKA_STORAGE_ERROR, and nothing in it is written or retried until the
//! broker restarts. Retrying is unsafe: after a failed fsync the kernel may
//! have dropped the dirty pages and report the next fsync as a success. The
//! broker keeps serving the partitions of its other log dirs; a failure of
//! the dir holding the metadata log stops the process, as Kafka halts.
//!
//! In a cluster any failed log dir stops the process, as a KRaft broker
//! without directory assignment (KIP-858) halts: the metadata does not say
//! which replicas live in which dir, so the controller could not move the
//! failed dir's leaderships away while the broker lives. Stopped, its session
//! expires, it is fenced and its partitions get leaders from their ISR.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use kafka_protocol::error::ResponseError;
use storage::StorageError;

use crate::error::BrokerError;

/// The health of one log dir, shared by [`LogDirHealths`] and every
/// partition in the dir.
#[derive(Debug)]
pub(crate) struct LogDirHealth {
    path: PathBuf,
    /// Set once, by the first failure: why the dir went offline.
    failure: OnceLock<String>,
    /// The dir holds the metadata log: its failure stops the broker.
    holds_metadata: bool,
    /// Its failure stops the broker although it holds only partitions (a
    /// cluster node: [`LogDirHealths::stop_broker_on_any_failure`]).
    stops_broker: AtomicBool,
}

impl LogDirHealth {
    /// A healthy log dir at `path`.
    pub(crate) fn new(path: PathBuf, holds_metadata: bool) -> LogDirHealth {
        LogDirHealth { path, failure: OnceLock::new(), holds_metadata, stops_broker: AtomicBool::new(false) }
    }

    /// The log dir.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// True for the dir holding the metadata log (its failure stops the broker).
    pub(crate) fn holds_metadata(&self) -> bool {
        self.holds_metadata
    }

    /// Why the dir is offline, if it is.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// True once the dir failed.
    pub(crate) fn is_offline(&self) -> bool {
        self.failure.get().is_some()
    }

    /// Takes the dir offline because of `cause` (later calls change nothing).
    /// The dir of the metadata log stops the process instead.
    pub(crate) fn fail(&self, cause: &dyn Display) {
        if self.failure.set(cause.to_string()).is_err() {
            return;
        }
        if self.holds_metadata {
            tracing::error!(log_dir = %self.path.display(), cause = %cause, "the log dir holding the metadata log failed: stopping the broker");
            // As Kafka halts: no shutdown hook may write to the failed disk.
            std::process::exit(1);
        }
        if self.stops_broker.load(Ordering::Relaxed) {
            tracing::error!(log_dir = %self.path.display(), cause = %cause, "log dir failed: stopping the broker so that the cluster elects other leaders for its partitions (replicas are not assigned to log dirs in the metadata); restart it once the disk is fixed or the dir removed from log.dirs");
            std::process::exit(1);
        }
        tracing::error!(log_dir = %self.path.display(), cause = %cause, "log dir failed: its partitions are offline (KAFKA_STORAGE_ERROR) and nothing is written to it until the broker restarts");
    }

    /// Passes `result` through, taking the dir offline on an I/O error.
    pub(crate) fn watch<T>(&self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(e @ StorageError::Io { .. }) = &result {
            self.fail(e);
        }
        result
    }

    /// KAFKA_STORAGE_ERROR for an operation on `what` (a partition) once the
    /// dir is offline.
    pub(crate) fn check(&self, what: &dyn Display) -> Result<(), BrokerError> {
        match self.failure() {
            None => Ok(()),
            Some(cause) => Err(BrokerError::kafka(
                ResponseError::KafkaStorageError,
                format!("{what} is offline: its log dir {} failed ({cause})", self.path.display()),
            )),
        }
    }
}

/// The health of every configured log dir, in `log.dirs` order.
#[derive(Debug, Clone)]
pub(crate) struct LogDirHealths(Arc<[Arc<LogDirHealth>]>);

impl LogDirHealths {
    /// Healthy dirs; the first holds the metadata log.
    pub(crate) fn new(dirs: &[PathBuf]) -> LogDirHealths {
        LogDirHealths(dirs.iter().enumerate().map(|(i, d)| Arc::new(LogDirHealth::new(d.clone(), i == 0))).collect())
    }

    /// The log dir `path` is, or is inside (a partition directory or a file).
    pub(crate) fn of(&self, path: &Path) -> Option<&Arc<LogDirHealth>> {
        // The innermost, should one log dir lie inside another.
        self.0.iter().filter(|h| path.starts_with(&h.path)).max_by_key(|h| h.path.components().count())
    }

    /// Every dir.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<LogDirHealth>> {
        self.0.iter()
    }

    /// Whether the dir holding `path` may still be written.
    pub(crate) fn writable(&self, path: &Path) -> bool {
        self.of(path).is_none_or(|h| !h.is_offline())
    }

    /// From now on a failure of any of these dirs stops the process (a
    /// cluster node; see the module doc).
    pub(crate) fn stop_broker_on_any_failure(&self) {
        for h in self.0.iter() {
            h.stops_broker.store(true, Ordering::Relaxed);
        }
    }

    /// The dirs that failed: what a broker heartbeat reports to the
    /// controller (Kafka's `OfflineLogDirs`), so that leadership moves.
    pub(crate) fn offline_dirs(&self) -> Vec<PathBuf> {
        self.0.iter().filter(|h| h.is_offline()).map(|h| h.path.clone()).collect()
    }
}

impl metadata::LogDirWatch for LogDirHealths {
    fn writable(&self, path: &Path) -> bool {
        LogDirHealths::writable(self, path)
    }

    fn failed(&self, path: &Path, error: &dyn Display) {
        if let Some(h) = self.of(path) {
            h.fail(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dir_fails_once_and_stays_offline() {
        let healths = LogDirHealths::new(&[PathBuf::from("/meta"), PathBuf::from("/a"), PathBuf::from("/b")]);
        let a = Arc::clone(healths.of(Path::new("/a/t-0")).expect("found"));
        assert!(healths.of(Path::new("/c/t-0")).is_none());
        assert!(a.check(&"t-0").is_ok());
        let io = StorageError::Io { path: "/a/t-0/0.log".into(), source: std::io::Error::other("EIO") };
        assert!(a.watch::<()>(Err(io)).is_err());
        a.fail(&"a second cause");
        assert_eq!(a.failure(), Some("I/O error on /a/t-0/0.log: EIO"), "the first cause stays");
        let err = a.check(&"t-0").expect_err("offline");
        assert_eq!(err.response_error(), ResponseError::KafkaStorageError);
        assert!(err.to_string().contains("/a"), "{err}");
        assert!(!healths.writable(Path::new("/a/log-start-offset-checkpoint")));
        assert!(healths.writable(Path::new("/b/log-start-offset-checkpoint")));
        assert_eq!(healths.offline_dirs(), vec![PathBuf::from("/a")]);
        // A refused append is no failure of the dir.
        let b = healths.of(Path::new("/b/t-1")).expect("found");
        assert!(b.watch::<()>(Err(StorageError::InvalidRecord("bad".into()))).is_err());
        assert!(!b.is_offline());
    }
}
