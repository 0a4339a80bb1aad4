//! An acknowledged write survives `kill -9`: a write load runs against a real server, the
//! server is killed with SIGKILL mid-load, restarted on the same data dir (and store), and
//! every write it acknowledged must be there with the value it was acknowledged with. Once on
//! the embedded store, once on a real etcd.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, eventually, http};
use serde_json::json;

const WRITERS: usize = 8;

#[test]
fn every_acknowledged_write_survives_sigkill_mid_load() {
    sigkill_mid_load_loses_nothing(None);
}

#[test]
fn every_acknowledged_write_survives_sigkill_of_an_api_server_on_etcd() {
    let etcd = common::etcd(1);
    sigkill_mid_load_loses_nothing(Some(&etcd.store_url()));
}

fn sigkill_mid_load_loses_nothing(store: Option<&str>) {
    let server = Server::start_on(store);
    let url = server.url.clone();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (url, acked, count, stop) =
                (url.clone(), acked.clone(), count.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w{w}-{i}");
                    let value = format!("value-{w}-{i}");
                    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name}, "data": {"v": value}});
                    let result = std::panic::catch_unwind(|| {
                        http(
                            &url,
                            "POST",
                            "/api/v1/namespaces/default/configmaps",
                            "application/json",
                            body.to_string().as_bytes(),
                        )
                    });
                    match result {
                        Ok((201, _)) => {
                            acked.lock().expect("lock").push((name, value));
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        // The server is gone (killed): the load is over.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    eventually("300 acknowledged writes", Duration::from_secs(60), || {
        (count.load(Ordering::Relaxed) >= 300).then_some(())
    });
    let mut server = server;
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 300);

    let (dir, _tmp) = server.into_data();
    let restarted = Server::start_in_on(&dir, store);
    let list = restarted.get_json("/api/v1/namespaces/default/configmaps");
    let stored: std::collections::HashMap<String, String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap_or("").to_string(),
                i["data"]["v"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let lost: Vec<&(String, String)> = acked
        .iter()
        .filter(|(n, v)| stored.get(n) != Some(v))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
}
