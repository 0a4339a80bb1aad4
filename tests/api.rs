//! API semantics over raw HTTP: status codes, optimistic concurrency, server-set fields,
//! finalizers, selectors, pagination, watch replay and 410 Gone. Bad input changes nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::{Server, eventually, http};
use serde_json::{Value, json};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const JSON: &str = "application/json";

fn cm(name: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
        .to_string()
        .into_bytes()
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn bad_input_gets_a_clear_status_and_writes_nothing() {
    let s = Server::start();
    // The root CA publisher writes `kube-root-ca.crt` into every namespace: wait for it, so
    // that it is in `before` and the only name in the collection.
    eventually(
        "kube-root-ca.crt in default",
        Duration::from_secs(30),
        || {
            names(&s.get_json(CMS))
                .contains(&"kube-root-ca.crt".to_string())
                .then_some(())
        },
    );
    let before = s.get_json(CMS)["items"].clone();
    // (what, method, path, body, expected code, expected reason)
    type Case<'a> = (&'a str, &'a str, String, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", "POST", CMS.into(), b"{bad".to_vec(), 400, "BadRequest"),
        ("wrong kind for the URL", "POST", CMS.into(),
         br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#.to_vec(), 400, "BadRequest"),
        ("wrong apiVersion for the URL", "POST", CMS.into(),
         br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#.to_vec(), 400, "BadRequest"),
        ("invalid name", "POST", CMS.into(),
         br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#.to_vec(), 422, "Invalid"),
        ("invalid label", "POST", CMS.into(),
         br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","labels":{"a":"has space"}}}"#.to_vec(), 422, "Invalid"),
        ("missing name", "POST", CMS.into(), br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#.to_vec(), 422, "Invalid"),
        ("unknown resource", "POST", "/api/v1/namespaces/default/foos".into(), cm("x"), 404, "NotFound"),
        ("missing namespace", "POST", "/api/v1/namespaces/nope/configmaps".into(), cm("x"), 404, "NotFound"),
        ("body over 3 MiB", "POST", CMS.into(), {
            let mut b = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":""#.to_vec();
            b.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
            b.extend(br#""}}"#);
            b
        }, 413, "RequestEntityTooLarge"),
        ("non-JSON content type", "POST", CMS.into(), b"<xml/>".to_vec(), 415, "UnsupportedMediaType"),
    ];
    for (what, method, path, body, code, reason) in cases {
        let ct = if what == "non-JSON content type" {
            "application/xml"
        } else {
            JSON
        };
        let (got, status) = s.http(method, &path, ct, &body);
        assert_eq!(got, code, "{what}: {status}");
        assert_eq!(status["kind"], "Status", "{what}: {status}");
        assert_eq!(status["reason"], reason, "{what}: {status}");
        assert!(
            status["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {status}"
        );
    }
    let (_, invalid) = s.http(
        "POST",
        CMS,
        JSON,
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#,
    );
    assert_eq!(invalid["details"]["causes"][0]["field"], "metadata.name");
    let (_, missing) = s.http("POST", "/api/v1/namespaces/nope/configmaps", JSON, &cm("x"));
    assert!(
        missing["message"].as_str().unwrap_or("").contains("nope"),
        "{missing}"
    );
    // Other components (the syncer) write elsewhere; this collection must be untouched.
    let after = s.get_json(CMS);
    assert_eq!(after["items"], before, "nothing may be written");
    assert_eq!(names(&after), ["kube-root-ca.crt"]);

    // A finished container of a pod that is not restarted never runs again: a status write
    // saying so (a stale one of a node agent) is refused, naming the field, and changes nothing.
    s.ok(&["run", "once", "--image=x", "--restart=Never"]);
    let status = |state: &str| {
        format!(
            r#"{{"status":{{"containerStatuses":[{{"name":"once","image":"x","imageID":"","ready":false,"restartCount":0,"state":{state}}}]}}}}"#
        )
    };
    let done = status(r#"{"terminated":{"exitCode":0,"reason":"Completed"}}"#);
    let running = status(r#"{"running":{"startedAt":"2026-01-01T00:00:00Z"}}"#);
    let patch = |body: &str| {
        s.kubectl(&[
            "patch",
            "pod",
            "once",
            "--subresource=status",
            "--type=merge",
            "-p",
            body,
        ])
    };
    let recorded = patch(&done);
    assert!(
        recorded.status.success(),
        "{}",
        String::from_utf8_lossy(&recorded.stderr)
    );
    let out = patch(&running);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"),
        "{err}"
    );
    let pod = s.get_json("/api/v1/namespaces/default/pods/once");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
}

#[test]
fn writes_use_optimistic_concurrency_and_server_set_fields() {
    let s = Server::start();
    let (code, created) = s.http("POST", CMS, JSON, &cm("a"));
    assert_eq!(code, 201);
    let meta = &created["metadata"];
    assert!(meta["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(
        meta["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let rv = meta["resourceVersion"].as_str().expect("rv").to_string();

    let mut stale = created.clone();
    stale["data"]["k"] = json!("w");
    let (code, _) = s.http(
        "PUT",
        &format!("{CMS}/a"),
        JSON,
        stale.to_string().as_bytes(),
    );
    assert_eq!(code, 200);
    let (code, conflict) = s.http(
        "PUT",
        &format!("{CMS}/a"),
        JSON,
        stale.to_string().as_bytes(),
    );
    assert_eq!(
        code, 409,
        "a write on resourceVersion {rv} after it changed must conflict: {conflict}"
    );
    assert_eq!(conflict["reason"], "Conflict");

    let (code, generated) = s.http(
        "POST",
        CMS,
        JSON,
        br#"{"metadata":{"generateName":"gen-"}}"#,
    );
    assert_eq!(code, 201, "{generated}");
    assert!(
        generated["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("gen-") && n.len() == 9)
    );
    assert_eq!(generated["kind"], "ConfigMap");

    let (code, dup) = s.http("POST", CMS, JSON, &cm("a"));
    assert_eq!((code, dup["reason"].as_str()), (409, Some("AlreadyExists")));

    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 7}});
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let (_, d) = s.http("POST", path, JSON, deploy.to_string().as_bytes());
    assert_eq!(d["metadata"]["generation"], 1);
    assert!(
        d.get("status")
            .is_none_or(|st| st.get("replicas").is_none()),
        "status is not set by create"
    );
    let (_, d) = s.http(
        "PATCH",
        &format!("{path}/d"),
        "application/merge-patch+json",
        br#"{"metadata":{"labels":{"x":"y"}}}"#,
    );
    assert_eq!(
        d["metadata"]["generation"], 1,
        "metadata changes keep the generation"
    );
    let (_, d) = s.http(
        "PATCH",
        &format!("{path}/d"),
        "application/merge-patch+json",
        br#"{"spec":{"replicas":3}}"#,
    );
    assert_eq!(
        d["metadata"]["generation"], 2,
        "spec changes bump the generation"
    );
    let (_, d) = s.http(
        "PATCH",
        &format!("{path}/d/status"),
        "application/merge-patch+json",
        br#"{"status":{"replicas":3},"spec":{"replicas":9}}"#,
    );
    assert_eq!(
        (
            d["status"]["replicas"].as_i64(),
            d["spec"]["replicas"].as_i64()
        ),
        (Some(3), Some(3)),
        "status writes only status"
    );
    let (_, scale) = s.http("GET", &format!("{path}/d/scale"), "", b"");
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(3))
    );
    assert_eq!(scale["status"]["selector"], "a=b");
}

#[test]
fn finalizers_hold_deletion_until_they_are_removed() {
    let s = Server::start();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f", "finalizers": ["example.com/hold"]}});
    assert_eq!(
        s.http("POST", CMS, JSON, body.to_string().as_bytes()).0,
        201
    );
    let (code, deleting) = s.http("DELETE", &format!("{CMS}/f"), JSON, b"");
    assert_eq!(code, 200);
    assert!(
        deleting["metadata"]["deletionTimestamp"].is_string(),
        "{deleting}"
    );
    assert_eq!(
        s.get_json(&format!("{CMS}/f"))["metadata"]["finalizers"][0],
        "example.com/hold"
    );
    let (code, _) = s.http(
        "PATCH",
        &format!("{CMS}/f"),
        "application/merge-patch+json",
        br#"{"metadata":{"finalizers":null}}"#,
    );
    assert_eq!(code, 200);
    assert_eq!(
        s.http("GET", &format!("{CMS}/f"), "", b"").0,
        404,
        "the object goes with its last finalizer"
    );

    // Preconditions.
    let (_, c) = s.http("POST", CMS, JSON, &cm("p"));
    let opts = json!({"preconditions": {"uid": "not-the-uid"}});
    assert_eq!(
        s.http(
            "DELETE",
            &format!("{CMS}/p"),
            JSON,
            opts.to_string().as_bytes()
        )
        .0,
        409
    );
    let opts = json!({"preconditions": {"uid": c["metadata"]["uid"]}});
    assert_eq!(
        s.http(
            "DELETE",
            &format!("{CMS}/p"),
            JSON,
            opts.to_string().as_bytes()
        )
        .0,
        200
    );
}

#[test]
fn lists_filter_by_selectors_and_paginate() {
    let s = Server::start();
    for i in 0..25 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        let body = json!({"metadata": {"name": format!("cm-{i:02}"), "labels": {"tier": tier, "n": i.to_string()}}});
        assert_eq!(
            s.http("POST", CMS, JSON, body.to_string().as_bytes()).0,
            201
        );
    }
    let even = s.get_json(&format!("{CMS}?labelSelector=tier%3Deven"));
    assert_eq!(names(&even).len(), 13);
    let some = s.get_json(&format!(
        "{CMS}?labelSelector=tier%20in%20(odd),n%20notin%20(1,3)"
    ));
    assert_eq!(names(&some).len(), 10);
    let one = s.get_json(&format!("{CMS}?fieldSelector=metadata.name%3Dcm-07"));
    assert_eq!(names(&one), ["cm-07"]);
    let (code, bad) = s.http("GET", &format!("{CMS}?labelSelector=a%20in%20("), "", b"");
    assert_eq!((code, bad["reason"].as_str()), (400, Some("BadRequest")));
    let (code, _) = s.http(
        "GET",
        &format!("{CMS}?fieldSelector=spec.bogus%3Dx"),
        "",
        b"",
    );
    assert_eq!(code, 400);

    let mut all = Vec::new();
    let mut cont = String::new();
    let mut pages = 0;
    let mut first_rv = None;
    loop {
        let page = s.get_json(&format!("{CMS}?limit=10&continue={cont}"));
        first_rv.get_or_insert(page["metadata"]["resourceVersion"].clone());
        assert_eq!(
            page["metadata"]["resourceVersion"],
            *first_rv.as_ref().unwrap()
        );
        all.extend(names(&page));
        pages += 1;
        match page["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => cont = c.to_string(),
            _ => break,
        }
        // A write between pages neither repeats nor skips keys.
        if pages == 1 {
            s.http("POST", CMS, JSON, &cm("zz-late"));
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), all.len(), "no key twice");
    assert!((0..25).all(|i| all.contains(&format!("cm-{i:02}"))));
    let (code, _) = s.http("GET", &format!("{CMS}?limit=10&continue=garbage"), "", b"");
    assert_eq!(code, 400);
}

fn read_events(s: &Server, query: &str, want: usize) -> Vec<Value> {
    let agent = s.agent(&common::Auth::Admin, Duration::from_secs(20));
    // The server ends the watch after two seconds, so that dropping it early does not wait.
    let url = format!("{}{CMS}?watch=true&timeoutSeconds=2&{query}", s.url);
    let resp = agent.get(&url).call().expect("watch");
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let mut out = Vec::new();
    while out.len() < want {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read watch") == 0 {
            break;
        }
        out.push(serde_json::from_str::<Value>(&line).expect("event json"));
    }
    out
}

#[test]
fn watch_replays_from_a_resource_version_and_answers_410_after_restart() {
    let s = Server::start();
    let (_, a) = s.http("POST", CMS, JSON, &cm("a"));
    let rv = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    s.http(
        "PATCH",
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        br#"{"data":{"k":"2"}}"#,
    );
    s.http("POST", CMS, JSON, &cm("b"));
    s.http("DELETE", &format!("{CMS}/a"), JSON, b"");
    let events = read_events(&s, &format!("resourceVersion={rv}"), 3);
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or(""),
                e["object"]["metadata"]["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kinds, [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]);
    // Initial state: without a resourceVersion, current objects arrive as ADDED.
    let initial = read_events(&s, "", 1);
    assert_eq!(
        (
            initial[0]["type"].as_str(),
            initial[0]["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("b"))
    );

    // Selectors turn transitions into ADDED/DELETED for the watcher.
    let (_, b) = s.http("GET", &format!("{CMS}/b"), "", b"");
    let rv_b = b["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    s.http(
        "PATCH",
        &format!("{CMS}/b"),
        "application/merge-patch+json",
        br#"{"metadata":{"labels":{"w":"1"}}}"#,
    );
    s.http(
        "PATCH",
        &format!("{CMS}/b"),
        "application/merge-patch+json",
        br#"{"metadata":{"labels":{"w":null}}}"#,
    );
    let sel = read_events(
        &s,
        &format!("resourceVersion={rv_b}&labelSelector=w%3D1"),
        2,
    );
    assert_eq!(
        sel.iter()
            .map(|e| e["type"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["ADDED", "DELETED"]
    );

    let (dir, tmp) = s.into_data();
    let s = Server::start_in(&dir);
    let gone = read_events(&s, &format!("resourceVersion={rv}"), 1);
    assert_eq!(gone[0]["type"], "ERROR");
    assert_eq!(gone[0]["object"]["code"], 410);
    drop(tmp);
    let _ = http;
}

#[test]
fn deleting_a_namespace_deletes_what_is_in_it() {
    let s = Server::start();
    assert_eq!(
        s.http(
            "POST",
            "/api/v1/namespaces",
            JSON,
            br#"{"metadata":{"name":"team"}}"#
        )
        .0,
        201
    );
    let path = "/api/v1/namespaces/team/configmaps";
    for n in ["a", "b"] {
        assert_eq!(s.http("POST", path, JSON, &cm(n)).0, 201);
    }
    let out = s.ok(&["delete", "namespace", "team", "--timeout=30s"]);
    assert!(out.contains("deleted"), "{out}");
    assert_eq!(s.http("GET", "/api/v1/namespaces/team", "", b"").0, 404);
    assert!(names(&s.get_json(path)).is_empty());
    let (code, _) = s.http("POST", path, JSON, &cm("c"));
    assert_eq!(code, 404, "a deleted namespace takes no new content");
}

/// Writes start from the watch cache's copy of the object, which may be a moment behind
/// storage (the attempt from a stale copy is repeated from storage). A write that names the
/// resourceVersion the previous write returned succeeds, and a patch without one sees the
/// previous write's data. (On the embedded store the cache has almost always caught up by the
/// next request, so this guards the chain more than the fallback.)
#[test]
fn a_write_right_after_a_write_sees_it_whatever_the_cache_has_caught_up_to() {
    let s = Server::start();
    let path = format!("{CMS}/chain");
    let (code, mut object) = s.http("POST", CMS, JSON, &cm("chain"));
    assert_eq!(code, 201, "{object}");
    for i in 0..200 {
        object["data"]["n"] = json!(i.to_string());
        let (code, written) = s.http("PUT", &path, JSON, object.to_string().as_bytes());
        assert_eq!(
            code, 200,
            "update {i} with the resourceVersion just returned: {written}"
        );
        let patch = json!({"data": {"m": i.to_string()}}).to_string();
        let (code, patched) = s.http(
            "PATCH",
            &path,
            "application/merge-patch+json",
            patch.as_bytes(),
        );
        assert_eq!(code, 200, "patch {i}: {patched}");
        assert_eq!(
            patched["data"]["n"],
            json!(i.to_string()),
            "patch {i} lost update {i}"
        );
        assert_ne!(
            patched["metadata"]["resourceVersion"], written["metadata"]["resourceVersion"],
            "patch {i} changed nothing"
        );
        object = patched;
    }
}
