//! The in-memory revision log behind [`Store::watch`](crate::storage::Store::watch) and the
//! watch streams that read it.
//!
//! The log holds one [`WatchEvent`] per revision in `(compacted, head]`, oldest first, so the
//! event of revision `r` sits at index `r - compacted - 1`. The writer appends each committed
//! batch under the log's lock and then announces the new head on a `tokio::sync::watch` channel;
//! the log drops its oldest events (moving `compacted` forward) when it holds more than
//! `history_limit` events or more than `history_max_bytes` of keys and values.
//!
//! A watch stream is a cursor (the last revision it has looked at) over that one log, not a
//! subscription with its own queue: replay and live delivery are the same loop, so there is no
//! window between them in which an event could be missed or seen twice. Each turn it marks the
//! head announcement as seen, then copies the matching events after its cursor (at most
//! [`SCAN_CHUNK`] per lock) into a small local buffer; when it has caught up it waits for the
//! next announcement.
//!
//! **Slow watchers**: nothing is queued per watcher, so a watcher that stops reading neither
//! blocks the writer nor holds memory. When the log has dropped events it had not read yet, its
//! stream yields [`StorageError::Compacted`] (with `requested` = its cursor) and ends; the client
//! re-lists and watches again, as a Kubernetes client does on `410 Gone`. When the store closes,
//! streams yield [`StorageError::Unavailable`] and end.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt;
use tokio::sync::watch;

use crate::storage::{Revision, StorageError, WatchEvent, WatchStream};

/// The most log entries a stream looks at per lock, bounding both lock hold time and the
/// stream's local buffer.
pub(super) const SCAN_CHUNK: usize = 256;

/// The revision log shared by the writer and every watch stream.
#[derive(Debug)]
pub(super) struct WatchLog {
    /// Events of revisions `compacted + 1 ..= head`, oldest first.
    events: VecDeque<WatchEvent>,
    /// History at and before this revision is gone.
    compacted: Revision,
    /// The revision of the newest event (or the store revision at open).
    head: Revision,
    /// Sum of [`event_bytes`] over `events`.
    bytes: usize,
    /// Most events kept.
    history_limit: usize,
    /// Most bytes kept (the newest event is kept whatever its size).
    history_max_bytes: usize,
}

impl WatchLog {
    /// An empty log starting at `revision`: the compaction point is the revision at open.
    pub(super) fn new(revision: Revision, history_limit: usize, history_max_bytes: usize) -> Self {
        WatchLog {
            events: VecDeque::new(),
            compacted: revision,
            head: revision,
            bytes: 0,
            history_limit: history_limit.max(1),
            history_max_bytes,
        }
    }

    /// Appends the events of one committed batch, which must continue from `head` without gaps.
    pub(super) fn append(&mut self, events: impl IntoIterator<Item = WatchEvent>) {
        for event in events {
            debug_assert_eq!(
                event.revision(),
                self.head + 1,
                "the log must stay contiguous"
            );
            self.head = event.revision();
            self.bytes += event_bytes(&event);
            self.events.push_back(event);
        }
        while self.events.len() > self.history_limit
            || (self.bytes > self.history_max_bytes && self.events.len() > 1)
        {
            self.drop_oldest();
        }
    }

    /// Forgets history at and before `revision`, clamped to the head; going back is a no-op.
    pub(super) fn compact(&mut self, revision: Revision) {
        let revision = revision.min(self.head);
        while self.compacted < revision {
            self.drop_oldest();
        }
    }

    /// Forgets every event and starts again at `revision`, which becomes the head and the
    /// compaction point: a stream behind it ends with [`StorageError::Compacted`].
    pub(super) fn restart(&mut self, revision: Revision) {
        self.events.clear();
        self.bytes = 0;
        self.compacted = revision;
        self.head = revision;
    }

    /// Fails with [`StorageError::Compacted`] when events after `after` are no longer all kept.
    pub(super) fn check_available(&self, after: Revision) -> Result<(), StorageError> {
        if after < self.compacted {
            return Err(StorageError::Compacted {
                requested: after,
                compacted: self.compacted,
            });
        }
        Ok(())
    }

    /// The revision of the newest event.
    pub(super) fn head(&self) -> Revision {
        self.head
    }

    /// The compaction point.
    #[cfg(test)]
    pub(super) fn compacted(&self) -> Revision {
        self.compacted
    }

    /// How many events the log holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    fn drop_oldest(&mut self) {
        match self.events.pop_front() {
            Some(event) => {
                self.bytes -= event_bytes(&event);
                self.compacted = event.revision();
            }
            // Only reached by `compact` beyond the kept events, i.e. up to the head.
            None => self.compacted = self.head,
        }
    }

    /// Copies events under `prefix` after `*cursor` into `out`, looking at most at
    /// [`SCAN_CHUNK`] events, and moves the cursor past what it looked at. Returns whether the
    /// cursor reached the head.
    fn read_after(
        &self,
        prefix: &str,
        cursor: &mut Revision,
        out: &mut VecDeque<WatchEvent>,
    ) -> Result<bool, StorageError> {
        self.check_available(*cursor)?;
        let Ok(start) = usize::try_from(*cursor - self.compacted) else {
            return Ok(true);
        };
        for event in self.events.iter().skip(start).take(SCAN_CHUNK) {
            if event_key(event).is_some_and(|key| key.starts_with(prefix)) {
                out.push_back(event.clone());
            }
            *cursor = event.revision();
        }
        Ok(*cursor >= self.head)
    }
}

/// Locks the log; a panic elsewhere while holding the lock cannot leave it half-updated in a
/// way that matters to readers, so poisoning is ignored rather than propagated as a panic.
pub(super) fn lock(log: &Mutex<WatchLog>) -> MutexGuard<'_, WatchLog> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The key an event is about.
fn event_key(event: &WatchEvent) -> Option<&str> {
    match event {
        WatchEvent::Put { kv, .. } => Some(&kv.key),
        WatchEvent::Delete { prev, .. } => Some(&prev.key),
        WatchEvent::Progress { .. } => None,
    }
}

/// The memory an event accounts for in the log's byte bound.
fn event_bytes(event: &WatchEvent) -> usize {
    match event {
        WatchEvent::Put { kv, prev } => {
            kv.key.len() + kv.value.len() + prev.as_ref().map_or(0, |prev| prev.value.len())
        }
        WatchEvent::Delete { prev, .. } => prev.key.len() + prev.value.len(),
        WatchEvent::Progress { .. } => 0,
    }
}

/// One watch stream's state.
struct Cursor {
    log: Arc<Mutex<WatchLog>>,
    head: watch::Receiver<Revision>,
    prefix: String,
    /// The last revision looked at.
    position: Revision,
    /// Matching events copied out of the log, not yet yielded.
    buffer: VecDeque<WatchEvent>,
    /// Set once the stream has yielded its final error.
    finished: bool,
}

impl Cursor {
    async fn next(&mut self) -> Option<Result<WatchEvent, StorageError>> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            // Mark the announced head as seen before reading the log: an append after this
            // point is announced again, so `changed` below cannot miss it.
            self.head.borrow_and_update();
            let caught_up =
                lock(&self.log).read_after(&self.prefix, &mut self.position, &mut self.buffer);
            match caught_up {
                Err(error) => return self.finish(error),
                Ok(false) => continue,
                Ok(true) if !self.buffer.is_empty() => continue,
                Ok(true) => {}
            }
            if self.head.changed().await.is_err() {
                return self.finish(StorageError::Unavailable("the store has closed".to_owned()));
            }
        }
    }

    fn finish(&mut self, error: StorageError) -> Option<Result<WatchEvent, StorageError>> {
        self.finished = true;
        self.buffer.clear();
        Some(Err(error))
    }
}

/// A stream of the events under `prefix` after revision `after`, read from `log`.
pub(super) fn stream(
    log: Arc<Mutex<WatchLog>>,
    head: watch::Receiver<Revision>,
    prefix: &str,
    after: Revision,
) -> WatchStream {
    let cursor = Cursor {
        log,
        head,
        prefix: prefix.to_owned(),
        position: after,
        buffer: VecDeque::new(),
        finished: false,
    };
    futures::stream::unfold(cursor, |mut cursor| async move {
        let item = cursor.next().await?;
        Some((item, cursor))
    })
    .boxed()
}
