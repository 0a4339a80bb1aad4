//! Watch streams on etcd: one etcd watch per [`Store::watch`](crate::storage::Store::watch)
//! call, driven by a task that forwards its events.
//!
//! States of the driver: *connecting* (open an etcd watch at the last revision delivered, so
//! that etcd refuses it when that revision is compacted, and skip the event at it), *streaming* (forward events; ask etcd for progress when behind), *retrying* (the
//! connection was lost: pause and connect again from where it stopped, for at most
//! [`EtcdConfig::request_timeout`](super::EtcdConfig::request_timeout) in a row), *done* (the
//! consumer dropped the stream, or an error was delivered as its last item).
//!
//! **Progress on demand.** The store remembers the highest revision any response has shown.
//! When a watch has delivered less than that and etcd has sent nothing for [`QUIET`], the driver
//! asks etcd for a progress notification; etcd answers once every event up to its current
//! revision has been sent, and the answer becomes [`WatchEvent::Progress`]. That is how a watch
//! cache learns that writes outside its prefix (or on another API server) did not concern it,
//! within milliseconds rather than at etcd's periodic notifications (every 10 minutes by
//! default). etcd before 3.4.25 and 3.5.8 answers such requests at once, even ahead of events
//! it has not sent yet (etcd issue 15220), so on those versions the driver never asks and
//! relies on the periodic notifications, which travel in order with the events (Kubernetes
//! makes the same choice).

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::{EtcdStore, MAX_MESSAGE, convert, map_error, prefix_end};
use crate::storage::{Revision, StorageError, WatchEvent, WatchStream};

/// How long a watch behind the store's known revision waits for events before asking for
/// progress (and between two requests).
const QUIET: Duration = Duration::from_millis(20);
/// Events buffered between the driver and the consumer.
const BUFFER: usize = 1024;

/// Starts a watch of `prefix` after revision `after`.
pub(super) async fn start(
    store: &EtcdStore,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream, StorageError> {
    let (tx, rx) = mpsc::channel(BUFFER);
    let driver = Driver {
        store: store.clone(),
        prefix: prefix.to_owned(),
        delivered: after,
        tx,
        head: store.head.subscribe(),
    };
    tokio::spawn(driver.run());
    Ok(ReceiverStream::new(rx).boxed())
}

/// How streaming one etcd watch ended.
enum Ended {
    /// The consumer dropped the stream.
    Dropped,
    /// The watch cannot go on; the error is the stream's last item.
    Failed(StorageError),
    /// The connection was lost; connect again.
    Lost(StorageError),
}

struct Driver {
    store: EtcdStore,
    prefix: String,
    /// The revision of the last event or progress delivered (or the starting point).
    delivered: Revision,
    tx: mpsc::Sender<Result<WatchEvent, StorageError>>,
    head: tokio::sync::watch::Receiver<Revision>,
}

impl Driver {
    async fn run(mut self) {
        let mut failing_since: Option<Instant> = None;
        let mut pause = Duration::from_millis(50);
        loop {
            let ended = match self.open().await {
                Ok(stream) => {
                    let ended = self.stream(stream, &mut failing_since).await;
                    pause = Duration::from_millis(50);
                    ended
                }
                Err(error @ StorageError::Unavailable(_)) => Ended::Lost(error),
                Err(error) => Ended::Failed(error),
            };
            match ended {
                Ended::Dropped => return,
                Ended::Failed(error) => {
                    let _ = self.tx.send(Err(error)).await;
                    return;
                }
                Ended::Lost(error) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.store.config.request_timeout {
                        let _ = self.tx.send(Err(error)).await;
                        return;
                    }
                    tracing::debug!(%error, prefix = %self.prefix, "etcd watch lost; watching again");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.tx.closed() => return,
                    }
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// Opens an etcd watch at the last revision delivered (see the module docs of `etcd`).
    async fn open(&self) -> Result<etcd_client::WatchStream, StorageError> {
        let options = etcd_client::WatchOptions::new()
            .with_range(prefix_end(self.prefix.as_bytes()))
            .with_start_revision(self.delivered.max(1))
            .with_prev_key()
            .with_progress_notify();
        let mut client = self
            .store
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE);
        let open = client.watch(self.prefix.as_bytes(), Some(options));
        tokio::time::timeout(self.store.config.request_timeout, open)
            .await
            .map_err(|_| self.store.timed_out())?
            .map_err(map_error)
    }

    /// Forwards one etcd watch until it ends.
    async fn stream(
        &mut self,
        mut stream: etcd_client::WatchStream,
        failing_since: &mut Option<Instant>,
    ) -> Ended {
        let mut behind_since: Option<Instant> = None;
        loop {
            let head = *self.head.borrow_and_update();
            behind_since = match behind_since {
                _ if head <= self.delivered => None,
                None => Some(Instant::now()),
                since => since,
            };
            let ask_at = behind_since
                .filter(|_| self.store.progress_on_demand)
                .map(|since| since + QUIET);
            tokio::select! {
                message = stream.message() => {
                    let response = match message {
                        Ok(Some(response)) => response,
                        Ok(None) => {
                            return Ended::Lost(StorageError::Unavailable(
                                "etcd closed the watch".to_owned(),
                            ));
                        }
                        Err(error) => match map_error(error) {
                            error @ StorageError::Unavailable(_) => return Ended::Lost(error),
                            error => return Ended::Failed(error),
                        },
                    };
                    if let Some(ended) = self.forward(response).await {
                        return ended;
                    }
                    // Any answer from etcd ends a run of failures.
                    *failing_since = None;
                }
                _ = sleep_until(ask_at), if ask_at.is_some() => {
                    // Lost requests (etcd ignores them while it is still sending events) are
                    // simply asked again after another quiet period.
                    let _ = stream.request_progress().await;
                    behind_since = Some(Instant::now());
                }
                _ = self.head.changed() => {}
                _ = self.tx.closed() => return Ended::Dropped,
            }
        }
    }

    /// Forwards one etcd response; `Some` when the watch ends with it.
    async fn forward(&mut self, response: etcd_client::WatchResponse) -> Option<Ended> {
        if response.canceled() {
            let compacted = response.compact_revision();
            return Some(if compacted > 0 {
                Ended::Failed(StorageError::Compacted {
                    requested: self.delivered,
                    compacted,
                })
            } else {
                Ended::Lost(StorageError::Unavailable(format!(
                    "etcd cancelled the watch: {}",
                    response.cancel_reason()
                )))
            });
        }
        if response.created() {
            return None;
        }
        if response.events().is_empty() {
            let revision = response.header().map(|h| h.revision()).unwrap_or(0);
            if revision > self.delivered {
                self.delivered = revision;
                if self
                    .tx
                    .send(Ok(WatchEvent::Progress { revision }))
                    .await
                    .is_err()
                {
                    return Some(Ended::Dropped);
                }
            }
            return None;
        }
        for event in response.events() {
            // The watch opens at the last revision delivered; its event was delivered (or is
            // the compaction point's, which the caller did not ask for).
            if event
                .kv()
                .is_some_and(|kv| kv.mod_revision() <= self.delivered)
            {
                continue;
            }
            let event = match convert_event(event) {
                Ok(event) => event,
                Err(error) => return Some(Ended::Failed(error)),
            };
            self.delivered = event.revision();
            if self.tx.send(Ok(event)).await.is_err() {
                return Some(Ended::Dropped);
            }
        }
        None
    }
}

/// Sleeps until `at` (forever when `None`; the caller only polls it with a deadline).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// An etcd watch event as a [`WatchEvent`].
fn convert_event(event: &etcd_client::Event) -> Result<WatchEvent, StorageError> {
    let missing =
        |what: &str| StorageError::Internal(format!("etcd sent a watch event without {what}"));
    let kv = event.kv().cloned().ok_or_else(|| missing("its key"))?;
    let prev = event.prev_kv().cloned().map(convert).transpose()?;
    match event.event_type() {
        etcd_client::EventType::Put => {
            let kv = convert(kv)?;
            let prev = prev.filter(|_| kv.create_revision != kv.mod_revision);
            Ok(WatchEvent::Put { kv, prev })
        }
        etcd_client::EventType::Delete => Ok(WatchEvent::Delete {
            revision: kv.mod_revision(),
            prev: prev.ok_or_else(|| missing("the deleted value"))?,
        }),
    }
}
