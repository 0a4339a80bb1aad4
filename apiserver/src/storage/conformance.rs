//! The storage conformance suite every backend passes: the [`Store`] contract as executable
//! checks.
//!
//! Each check is a public async function taking the store and a key prefix of its own, so the
//! checks can share one store; [`run_all`] runs them all under a fresh random prefix. A check
//! panics with a message naming the violated rule, which is what a `#[tokio::test]` wants.
//!
//! The checks count revisions exactly, so nothing else may write to the store while one runs.
//! [`watch_after_compaction_fails`] compacts the store's history up to a recent revision, and
//! [`compaction_beyond_the_head_stops_at_the_head`] (run last) up to the head, which only
//! affects watches from before them.
//!
//! This module is compiled into the library rather than gated behind a feature or `cfg(test)`:
//! the trait documentation points to it as the definition of the contract, and every backend's
//! tests (in this crate or in integration tests) call it without feature plumbing. It is small
//! and does no IO of its own.

use std::fmt::Debug;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::storage::{KeyValue, Revision, StorageError, Store, WatchEvent, WatchStream};

/// How long a check waits for a watch event before declaring it missing.
const EVENT_DEADLINE: Duration = Duration::from_secs(10);

/// Runs every check against `store`, each under its own prefix below a fresh random root.
pub async fn run_all(store: &dyn Store) {
    let root = format!("/conformance/{}/", uuid::Uuid::new_v4());
    let prefix = |check: &str| format!("{root}{check}/");
    create_get_update_delete(store, &prefix("crud")).await;
    create_of_existing_key_fails(store, &prefix("create-existing")).await;
    stale_compare_and_swap_fails(store, &prefix("stale-cas")).await;
    list_pages_by_prefix_in_key_order(store, &prefix("list")).await;
    pagination_sees_each_key_at_most_once_across_writes(store, &prefix("list-writes")).await;
    watch_replays_history_then_streams_live(store, &prefix("watch")).await;
    watch_sees_only_its_prefix(store, &prefix("watch-prefix")).await;
    watch_after_compaction_fails(store, &prefix("compaction")).await;
    concurrent_cas_increments_lose_nothing(store, &prefix("counter")).await;
    large_values_round_trip(store, &prefix("large")).await;
    many_keys_list_completely(store, &prefix("many")).await;
    compaction_beyond_the_head_stops_at_the_head(store, &prefix("compaction-head")).await;
}

/// Create, get, update and delete each take exactly one revision; failed writes take none.
pub async fn create_get_update_delete(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}key");
    let start = current(store).await;
    assert!(start > 0, "the revision must start above 0, got {start}");

    let created = store.create(&key, text("one")).await.expect("create");
    let want = KeyValue {
        key: key.clone(),
        value: text("one"),
        create_revision: start + 1,
        mod_revision: start + 1,
    };
    assert_eq!(
        created, want,
        "create returns the entry at the next revision"
    );
    assert_eq!(current(store).await, start + 1, "create takes one revision");
    let got = store.get(&key).await.expect("get");
    assert_eq!(
        got,
        (start + 1, Some(want)),
        "get returns the created entry"
    );

    let updated = store
        .update(&key, text("two"), created.mod_revision)
        .await
        .expect("update with the current revision");
    let want = KeyValue {
        key: key.clone(),
        value: text("two"),
        create_revision: start + 1,
        mod_revision: start + 2,
    };
    assert_eq!(
        updated, want,
        "update keeps create_revision and takes one revision"
    );
    let got = store.get(&key).await.expect("get");
    assert_eq!(
        got,
        (start + 2, Some(want)),
        "get returns the updated entry"
    );

    let deleted = store
        .delete(&key, Some(updated.mod_revision))
        .await
        .expect("delete with the current revision");
    assert_eq!(
        deleted,
        (start + 3, updated),
        "delete returns its revision and the last entry"
    );
    let got = store.get(&key).await.expect("get");
    assert_eq!(got, (start + 3, None), "a deleted key is gone");

    let not_found = StorageError::NotFound { key: key.clone() };
    let result = store.update(&key, text("three"), start + 2).await;
    assert_eq!(result, Err(not_found.clone()), "update of a missing key");
    let result = store.delete(&key, None).await;
    assert_eq!(result, Err(not_found.clone()), "delete of a missing key");
    let result = store.delete(&key, Some(start + 2)).await;
    assert_eq!(
        result,
        Err(not_found),
        "conditional delete of a missing key"
    );
    assert_eq!(
        current(store).await,
        start + 3,
        "failed writes take no revision"
    );

    let again = store.create(&key, text("again")).await.expect("re-create");
    assert_eq!(
        (again.create_revision, again.mod_revision),
        (start + 4, start + 4),
        "a re-created key starts a new life"
    );
    let deleted = store
        .delete(&key, None)
        .await
        .expect("unconditional delete");
    assert_eq!(deleted, (start + 5, again), "an unconditional delete");
}

/// Creating a key that exists fails with `AlreadyExists` and changes nothing.
pub async fn create_of_existing_key_fails(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}key");
    let created = store.create(&key, text("first")).await.expect("create");
    let result = store.create(&key, text("second")).await;
    assert_eq!(
        result,
        Err(StorageError::AlreadyExists { key: key.clone() }),
        "create of an existing key"
    );
    let got = store.get(&key).await.expect("get");
    assert_eq!(
        got,
        (created.mod_revision, Some(created)),
        "a failed create changes neither the entry nor the revision"
    );
}

/// Updates and deletes with a stale or future revision fail with `Conflict` and change nothing.
pub async fn stale_compare_and_swap_fails(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}key");
    let created = store.create(&key, text("one")).await.expect("create");
    let updated = store
        .update(&key, text("two"), created.mod_revision)
        .await
        .expect("update");
    let conflict = |expected| StorageError::Conflict {
        key: key.clone(),
        expected,
        actual: updated.mod_revision,
    };
    let stale = created.mod_revision;
    let future = updated.mod_revision + 100;

    let result = store.update(&key, text("three"), stale).await;
    assert_eq!(result, Err(conflict(stale)), "update with a stale revision");
    let result = store.update(&key, text("three"), future).await;
    assert_eq!(
        result,
        Err(conflict(future)),
        "update with a future revision"
    );
    let result = store.delete(&key, Some(stale)).await;
    assert_eq!(result, Err(conflict(stale)), "delete with a stale revision");

    let got = store.get(&key).await.expect("get");
    assert_eq!(
        got,
        (updated.mod_revision, Some(updated)),
        "failed compare-and-swaps change neither the entry nor the revision"
    );
}

/// `list` returns the keys under a prefix in key order, and `limit`, `start_after` and `more`
/// page through them.
pub async fn list_pages_by_prefix_in_key_order(store: &dyn Store, prefix: &str) {
    let dir = format!("{prefix}items/");
    // Neighbours sorting just before and just after the listed prefix.
    for neighbour in [format!("{prefix}items-other/x"), format!("{prefix}items0")] {
        store
            .create(&neighbour, text("neighbour"))
            .await
            .expect("create neighbour");
    }
    for name in ["c", "a", "e", "b", "d"] {
        store
            .create(&format!("{dir}{name}"), text(name))
            .await
            .expect("create");
    }
    let revision = current(store).await;
    let key = |name: &str| format!("{dir}{name}");

    let all = store.list(&dir, None, 0).await.expect("list");
    assert_eq!(all.revision, revision, "list reports the current revision");
    assert_eq!(
        keys(&all.kvs),
        ["a", "b", "c", "d", "e"].map(key),
        "keys in order"
    );
    assert!(!all.more, "no limit means nothing more");
    let values: Vec<_> = all.kvs.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(
        values,
        ["a", "b", "c", "d", "e"].map(text),
        "values match their keys"
    );

    let cases: [(Option<String>, usize, Vec<String>, bool); 7] = [
        (None, 2, vec![key("a"), key("b")], true),
        (Some(key("b")), 2, vec![key("c"), key("d")], true),
        (Some(key("d")), 2, vec![key("e")], false),
        (None, 5, ["a", "b", "c", "d", "e"].map(key).to_vec(), false),
        (Some(key("bb")), 1, vec![key("c")], true),
        (Some(prefix.to_owned()), 1, vec![key("a")], true),
        (Some(key("z")), 0, vec![], false),
    ];
    for (start_after, limit, want_keys, want_more) in cases {
        let page = store
            .list(&dir, start_after.as_deref(), limit)
            .await
            .expect("list");
        assert_eq!(
            (keys(&page.kvs), page.more),
            (want_keys, want_more),
            "list of {dir} after {start_after:?} limited to {limit}"
        );
    }

    let none = store
        .list(&format!("{prefix}nothing/"), None, 0)
        .await
        .expect("list");
    assert!(
        none.kvs.is_empty() && !none.more,
        "an empty prefix lists nothing"
    );
}

/// Paging with `start_after` while keys are created, updated and deleted between pages sees
/// each key at most once, in order, and every key that existed throughout.
pub async fn pagination_sees_each_key_at_most_once_across_writes(store: &dyn Store, prefix: &str) {
    let key = |n: u32| format!("{prefix}{n:02}");
    let stable: Vec<String> = (0..40).step_by(2).map(key).collect();
    for k in &stable {
        store.create(k, text("stable")).await.expect("create");
    }
    let mut seen: Vec<String> = Vec::new();
    let mut start_after: Option<String> = None;
    let mut odd = (1..40).step_by(2);
    loop {
        let page = store
            .list(prefix, start_after.as_deref(), 3)
            .await
            .expect("list page");
        seen.extend(keys(&page.kvs));
        let Some(last) = page.kvs.last() else {
            break;
        };
        // Between pages: create keys behind and ahead of the position, rewrite the last key
        // seen, and delete and re-create the first one.
        for n in odd.by_ref().take(2) {
            store
                .create(&key(n), text("new"))
                .await
                .expect("create between pages");
        }
        store
            .update(&last.key, text("rewritten"), last.mod_revision)
            .await
            .expect("update between pages");
        store
            .delete(&key(0), None)
            .await
            .expect("delete between pages");
        store
            .create(&key(0), text("again"))
            .await
            .expect("re-create between pages");
        if !page.more {
            break;
        }
        start_after = Some(last.key.clone());
    }
    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "pages must be in strictly increasing key order without repeats: {seen:?}"
    );
    for k in &stable[1..] {
        assert!(
            seen.contains(k),
            "key {k} existed throughout but was not listed"
        );
    }
}

/// A watch replays the events after its revision, in order, then streams live ones.
pub async fn watch_replays_history_then_streams_live(store: &dyn Store, prefix: &str) {
    let a = format!("{prefix}a");
    let start = current(store).await;
    let created = store.create(&a, text("1")).await.expect("create");
    let updated = store
        .update(&a, text("2"), created.mod_revision)
        .await
        .expect("update");
    let (deleted_at, _) = store.delete(&a, None).await.expect("delete");

    let put_created = WatchEvent::Put {
        kv: created.clone(),
        prev: None,
    };
    let put_updated = WatchEvent::Put {
        kv: updated.clone(),
        prev: Some(created.clone()),
    };
    let delete = WatchEvent::Delete {
        revision: deleted_at,
        prev: updated.clone(),
    };

    let mut from_start = watch(store, prefix, start).await;
    let mut from_middle = watch(store, prefix, created.mod_revision).await;
    let mut from_now = watch(store, prefix, deleted_at).await;
    for want in [&put_created, &put_updated, &delete] {
        assert_eq!(
            &next_event(&mut from_start).await,
            want,
            "replay from {start}"
        );
    }
    for want in [&put_updated, &delete] {
        assert_eq!(
            &next_event(&mut from_middle).await,
            want,
            "replay from {}",
            created.mod_revision
        );
    }

    let b = store
        .create(&format!("{prefix}b"), text("live"))
        .await
        .expect("create");
    let c = store
        .create(&format!("{prefix}c"), text("live"))
        .await
        .expect("create");
    let live = [b, c].map(|kv| WatchEvent::Put { kv, prev: None });
    for stream in [&mut from_start, &mut from_middle, &mut from_now] {
        for want in &live {
            assert_eq!(
                &next_event(stream).await,
                want,
                "live events follow the replay"
            );
        }
    }
}

/// A watch sees only the keys under its prefix.
pub async fn watch_sees_only_its_prefix(store: &dyn Store, prefix: &str) {
    let start = current(store).await;
    let inside = format!("{prefix}in/");
    let mut stream = watch(store, &inside, start).await;
    let first = store
        .create(&format!("{inside}1"), text("in"))
        .await
        .expect("create");
    for outside in [
        format!("{prefix}out/1"),
        format!("{prefix}in-other"),
        format!("{prefix}in"),
    ] {
        store
            .create(&outside, text("out"))
            .await
            .expect("create outside");
    }
    let second = store
        .create(&format!("{inside}2"), text("in"))
        .await
        .expect("create");
    for want in [first, second] {
        let event = next_event(&mut stream).await;
        assert_eq!(
            event,
            WatchEvent::Put {
                kv: want,
                prev: None
            },
            "a watch of {inside} skips the keys outside it"
        );
    }
}

/// After `compact(r)`, a watch after a revision before `r` fails with `Compacted`; a watch
/// after `r` replays what follows.
pub async fn watch_after_compaction_fails(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}key");
    let first = store.create(&key, text("1")).await.expect("create");
    let second = store
        .update(&key, text("2"), first.mod_revision)
        .await
        .expect("update");
    let third = store
        .update(&key, text("3"), second.mod_revision)
        .await
        .expect("update");
    store.compact(second.mod_revision).await.expect("compact");

    let requested = first.mod_revision;
    let error = match store.watch(prefix, requested).await {
        Err(error) => error,
        Ok(mut stream) => match timeout(stream.next()).await {
            Some(Err(error)) => error,
            other => panic!("a watch after compacted revision {requested} yielded {other:?}"),
        },
    };
    match error {
        StorageError::Compacted {
            requested: reported,
            compacted,
        } => {
            assert_eq!(
                reported, requested,
                "Compacted names the revision asked for"
            );
            assert!(
                compacted >= second.mod_revision,
                "Compacted names a compaction point at or after {}, got {compacted}",
                second.mod_revision
            );
        }
        other => panic!("a watch after compacted revision {requested} failed with {other:?}"),
    }

    let mut stream = watch(store, prefix, second.mod_revision).await;
    let event = next_event(&mut stream).await;
    assert_eq!(
        event,
        WatchEvent::Put {
            kv: third,
            prev: Some(second)
        },
        "a watch from the compaction point replays what follows it"
    );
}

/// `compact` beyond the current revision compacts up to it and no further: a watch after the
/// head still sees what comes next, one from just before the head fails with `Compacted`.
pub async fn compaction_beyond_the_head_stops_at_the_head(store: &dyn Store, prefix: &str) {
    let key = format!("{prefix}key");
    let head = store.create(&key, text("1")).await.expect("create");
    store
        .compact(head.mod_revision + 100)
        .await
        .expect("compact beyond the head");
    let requested = head.mod_revision - 1;
    let refused = match store.watch(prefix, requested).await {
        Err(error) => Some(error),
        Ok(mut stream) => match timeout(stream.next()).await {
            Some(Err(error)) => Some(error),
            _ => None,
        },
    };
    assert!(
        matches!(refused, Some(StorageError::Compacted { .. })),
        "a watch after {requested}, before the compacted head, got {refused:?}"
    );
    let mut stream = watch(store, prefix, head.mod_revision).await;
    let next = store
        .update(&key, text("2"), head.mod_revision)
        .await
        .expect("update after compaction");
    assert_eq!(
        next_event(&mut stream).await,
        WatchEvent::Put {
            kv: next,
            prev: Some(head)
        },
        "a watch from the compacted head sees the next write"
    );
}

/// Concurrent read-modify-write loops retrying on `Conflict` lose no increment, and only the
/// successful updates take revisions.
pub async fn concurrent_cas_increments_lose_nothing(store: &dyn Store, prefix: &str) {
    const WRITERS: u64 = 8;
    const INCREMENTS: u64 = 25;
    let key = format!("{prefix}counter");
    let created = store.create(&key, text("0")).await.expect("create counter");

    let writer = |_| async {
        let mut conflicts = 0u64;
        for _ in 0..INCREMENTS {
            loop {
                let (_, entry) = store.get(&key).await.expect("get counter");
                let entry = entry.expect("the counter exists");
                let value = counter_value(&entry);
                match store
                    .update(&key, text(&(value + 1).to_string()), entry.mod_revision)
                    .await
                {
                    Ok(_) => break,
                    Err(StorageError::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("increment of {key} failed: {other}"),
                }
            }
        }
        conflicts
    };
    futures::future::join_all((0..WRITERS).map(writer)).await;

    let (revision, entry) = store.get(&key).await.expect("get counter");
    let entry = entry.expect("the counter exists");
    assert_eq!(
        counter_value(&entry),
        WRITERS * INCREMENTS,
        "every increment lands exactly once"
    );
    let increments = Revision::try_from(WRITERS * INCREMENTS).unwrap_or(Revision::MAX);
    assert_eq!(
        revision,
        created.mod_revision + increments,
        "each successful update takes one revision, conflicts none"
    );
}

/// Values over 1 MiB are stored, read, listed and watched intact.
pub async fn large_values_round_trip(store: &dyn Store, prefix: &str) {
    const SIZE: usize = 1_100_000;
    let key = format!("{prefix}big");
    let first: Bytes = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let second: Bytes = (0..SIZE).map(|i| (i % 241) as u8).collect();
    let start = current(store).await;

    let created = store
        .create(&key, first.clone())
        .await
        .expect("create large");
    assert_eq!(created.value, first, "create returns the large value");
    let (_, got) = store.get(&key).await.expect("get large");
    assert_eq!(
        got.map(|kv| kv.value),
        Some(first.clone()),
        "get returns the large value"
    );
    let updated = store
        .update(&key, second.clone(), created.mod_revision)
        .await
        .expect("update large");
    let listed = store.list(prefix, None, 0).await.expect("list large");
    assert_eq!(
        listed.kvs,
        vec![updated.clone()],
        "list returns the large value"
    );

    let mut stream = watch(store, prefix, start).await;
    let event = next_event(&mut stream).await;
    assert_eq!(
        event,
        WatchEvent::Put {
            kv: created.clone(),
            prev: None
        },
        "the watch carries the large value"
    );
    let event = next_event(&mut stream).await;
    assert_eq!(
        event,
        WatchEvent::Put {
            kv: updated,
            prev: Some(created)
        },
        "the watch carries the large update and its previous value"
    );
}

/// 10,000 keys written concurrently are all there, in order, in one list and in pages.
pub async fn many_keys_list_completely(store: &dyn Store, prefix: &str) {
    const KEYS: usize = 10_000;
    const PAGE: usize = 1_000;
    let key = |i: usize| format!("{prefix}{i:05}");
    let start = current(store).await;
    futures::stream::iter(0..KEYS)
        .map(|i| async move {
            store
                .create(&key(i), text(&i.to_string()))
                .await
                .unwrap_or_else(|error| panic!("create of key {i} failed: {error}"))
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    let written = Revision::try_from(KEYS).unwrap_or(Revision::MAX);
    assert_eq!(
        current(store).await,
        start + written,
        "one revision per key"
    );

    let want: Vec<String> = (0..KEYS).map(key).collect();
    let all = store.list(prefix, None, 0).await.expect("list all");
    assert_eq!(keys(&all.kvs), want, "one list returns every key in order");
    assert!(!all.more, "an unlimited list has nothing more");

    let mut paged = Vec::new();
    let mut start_after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(prefix, start_after.as_deref(), PAGE)
            .await
            .expect("list page");
        pages += 1;
        assert!(page.kvs.len() <= PAGE, "a page holds at most the limit");
        paged.extend(keys(&page.kvs));
        if !page.more {
            break;
        }
        start_after = page.kvs.last().map(|kv| kv.key.clone());
        assert!(
            start_after.is_some(),
            "a page with more after it is not empty"
        );
    }
    assert_eq!(paged, want, "pages return every key once, in order");
    assert_eq!(
        pages,
        KEYS / PAGE,
        "a full last page says there is nothing more"
    );
}

/// A value from text.
fn text(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The keys of entries.
fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| kv.key.clone()).collect()
}

/// The counter stored as decimal text.
fn counter_value(entry: &KeyValue) -> u64 {
    std::str::from_utf8(&entry.value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("counter {} holds {:?}", entry.key, entry.value))
}

/// The current revision, which must be readable.
async fn current(store: &dyn Store) -> Revision {
    store.current_revision().await.expect("current revision")
}

/// A watch that must start.
async fn watch(store: &dyn Store, prefix: &str, after: Revision) -> WatchStream {
    store
        .watch(prefix, after)
        .await
        .unwrap_or_else(|error| panic!("watch of {prefix} after {after} failed: {error}"))
}

/// The next event of a stream, which must come within [`EVENT_DEADLINE`].
async fn next_event(stream: &mut WatchStream) -> WatchEvent {
    match timeout(stream.next()).await {
        Some(Ok(event)) => event,
        Some(Err(error)) => panic!("the watch failed: {error}"),
        None => panic!("the watch ended"),
    }
}

/// Waits for `future` up to [`EVENT_DEADLINE`].
async fn timeout<T: Debug>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(EVENT_DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("no watch event within {EVENT_DEADLINE:?}"))
}
