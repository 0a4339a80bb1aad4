//! Server-side printing: `meta.k8s.io/v1` Tables with the columns kubectl shows for each kind.
//!
//! Column sets follow Kubernetes' printers (`pkg/printers/internalversion`): pods show
//! NAME READY STATUS RESTARTS AGE, deployments NAME READY UP-TO-DATE AVAILABLE AGE, and so on;
//! kinds without a printer show NAME and AGE; custom resources show their
//! `additionalPrinterColumns`. Columns with priority 1 appear with `-o wide`.

use apimachinery::builtin::Printer;
use apimachinery::object::ObjectExt;
use apimachinery::registry::ResourceInfo;
use serde_json::{Value, json};

use crate::request::Params;

mod printers;

/// One column: header, type, priority.
pub(crate) struct Column {
    name: &'static str,
    type_: &'static str,
    priority: i32,
}

const fn col(name: &'static str) -> Column {
    Column {
        name,
        type_: "string",
        priority: 0,
    }
}

const fn wide(name: &'static str) -> Column {
    Column {
        name,
        type_: "string",
        priority: 1,
    }
}

const fn int(name: &'static str) -> Column {
    Column {
        name,
        type_: "integer",
        priority: 0,
    }
}

/// Kubernetes' `HumanDuration`: `5s`, `3m20s`, `5h`, `2d3h`, `3y`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age_of(obj: &Value, path: &str) -> String {
    let Some(ts) = obj.path(path).and_then(Value::as_str) else {
        return "<unknown>".into();
    };
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn age(obj: &Value) -> Value {
    json!(age_of(obj, "metadata.creationTimestamp"))
}

fn s<'a>(obj: &'a Value, path: &str) -> &'a str {
    obj.path(path).and_then(Value::as_str).unwrap_or("")
}

fn n(obj: &Value, path: &str) -> i64 {
    obj.path(path).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(obj: &'a Value, path: &str) -> &'a [Value] {
    obj.path(path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn or_none(v: String) -> Value {
    json!(if v.is_empty() {
        "<none>".to_string()
    } else {
        v
    })
}

fn or_unset(v: &str) -> Value {
    json!(if v.is_empty() { "<unset>" } else { v })
}

/// A string map at `path` as `k=v,k=v` (empty when absent).
fn map_string(obj: &Value, path: &str) -> String {
    obj.path(path)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// A `metav1.LabelSelector` at `path` in the string syntax (`app=web,tier in (a,b)`).
pub fn selector_string(obj: &Value, path: &str) -> String {
    let labels = map_string(obj, &format!("{path}.matchLabels"));
    let mut parts: Vec<String> = if labels.is_empty() {
        Vec::new()
    } else {
        vec![labels]
    };
    for e in arr(obj, &format!("{path}.matchExpressions")) {
        let key = s(e, "key");
        let values: Vec<&str> = arr(e, "values").iter().filter_map(Value::as_str).collect();
        parts.push(match s(e, "operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op}"),
        });
    }
    parts.join(",")
}

fn containers_and_images(obj: &Value, path: &str) -> (Value, Value) {
    let cs = arr(obj, path);
    let names: Vec<&str> = cs.iter().map(|c| s(c, "name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

fn pod_status(pod: &Value) -> String {
    let mut reason = s(pod, "status.phase").to_string();
    if !s(pod, "status.reason").is_empty() {
        reason = s(pod, "status.reason").to_string();
    }
    for c in arr(pod, "status.initContainerStatuses") {
        let exit = c.path("state.terminated.exitCode").and_then(Value::as_i64);
        if exit == Some(0) {
            continue;
        }
        if let Some(r) = c.path("state.waiting.reason").and_then(Value::as_str)
            && r != "PodInitializing"
        {
            return format!("Init:{r}");
        }
        if exit.is_some() {
            return format!("Init:ExitCode:{}", exit.unwrap_or(0));
        }
    }
    for c in arr(pod, "status.containerStatuses").iter().rev() {
        if let Some(r) = c.path("state.waiting.reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(r) = c.path("state.terminated.reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(code) = c.path("state.terminated.exitCode").and_then(Value::as_i64) {
            reason = format!("ExitCode:{code}");
        }
    }
    if pod.path("metadata.deletionTimestamp").is_some() {
        reason = "Terminating".into();
    }
    reason
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = arr(svc, "spec.ports")
        .iter()
        .map(|p| {
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) => format!("{}:{np}/{proto}", n(p, "port")),
                None => format!("{}/{proto}", n(p, "port")),
            }
        })
        .collect();
    ports.join(",")
}

fn endpoints(ep: &Value) -> String {
    let mut out = Vec::new();
    for subset in arr(ep, "subsets") {
        for a in arr(subset, "addresses") {
            let ports = arr(subset, "ports");
            if ports.is_empty() {
                out.push(s(a, "ip").to_string());
            }
            for p in ports {
                out.push(format!("{}:{}", s(a, "ip"), n(p, "port")));
            }
        }
    }
    if out.len() > 3 {
        let more = out.len() - 3;
        out.truncate(3);
        return format!("{} + {more} more...", out.join(","));
    }
    out.join(",")
}

/// An EndpointSlice's ports and addresses as kubectl prints them: at most three, then
/// `+ N more...`.
fn slice_column(items: Vec<String>, empty: &str) -> String {
    if items.is_empty() {
        return empty.to_string();
    }
    if items.len() > 3 {
        return format!("{} + {} more...", items[..3].join(","), items.len() - 3);
    }
    items.join(",")
}

fn node_status(node: &Value) -> String {
    let ready = arr(node, "status.conditions")
        .iter()
        .find(|c| s(c, "type") == "Ready")
        .map(|c| s(c, "status"));
    let mut st = match ready {
        Some("True") => "Ready".to_string(),
        _ => "NotReady".to_string(),
    };
    if node.path("spec.unschedulable").and_then(Value::as_bool) == Some(true) {
        st.push_str(",SchedulingDisabled");
    }
    st
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = node
        .labels()
        .keys()
        .filter_map(|k| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(str::to_string)
        })
        .collect();
    roles.sort();
    roles.join(",")
}

fn job_status(job: &Value) -> &'static str {
    for c in arr(job, "status.conditions") {
        if s(c, "status") != "True" {
            continue;
        }
        match s(c, "type") {
            "Complete" => return "Complete",
            "Failed" => return "Failed",
            "Suspended" => return "Suspended",
            "FailureTarget" => return "FailureTarget",
            "SuccessCriteriaMet" => return "SuccessCriteriaMet",
            _ => {}
        }
    }
    if job.path("metadata.deletionTimestamp").is_some() {
        "Terminating"
    } else {
        "Running"
    }
}
/// The columns and cells of a ReplicaSet, or of a ReplicationController: the two differ only in
/// how the `selector` cell reads (a label selector, or a plain map).
fn replica_set(name: Value, obj: &Value, selector: Value) -> (Vec<Column>, Vec<Value>) {
    let (c, i) = containers_and_images(obj, "spec.template.spec.containers");
    (
        vec![
            col("Name"),
            int("Desired"),
            int("Current"),
            int("Ready"),
            col("Age"),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        vec![
            name,
            json!(
                obj.path("spec.replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            ),
            json!(n(obj, "status.replicas")),
            json!(n(obj, "status.readyReplicas")),
            age(obj),
            c,
            i,
            selector,
        ],
    )
}

/// The columns and cells of a built-in kind, or `None` for kinds shown as NAME and AGE.
fn builtin(info: &ResourceInfo, obj: &Value) -> Option<(Vec<Column>, Vec<Value>)> {
    let name = json!(obj.name().unwrap_or(""));
    Some(match info.printer {
        Printer::Pod => {
            let total = arr(obj, "spec.containers").len();
            let statuses = arr(obj, "status.containerStatuses");
            let ready = statuses
                .iter()
                .filter(|c| c.get("ready") == Some(&json!(true)))
                .count();
            let restarts: i64 = statuses.iter().map(|c| n(c, "restartCount")).sum();
            (
                vec![
                    col("Name"),
                    col("Ready"),
                    col("Status"),
                    int("Restarts"),
                    col("Age"),
                    wide("IP"),
                    wide("Node"),
                    wide("Nominated Node"),
                    wide("Readiness Gates"),
                ],
                vec![
                    name,
                    json!(format!("{ready}/{total}")),
                    json!(pod_status(obj)),
                    json!(restarts.to_string()),
                    age(obj),
                    or_none(s(obj, "status.podIP").into()),
                    or_none(s(obj, "spec.nodeName").into()),
                    or_none(s(obj, "status.nominatedNodeName").into()),
                    json!("<none>"),
                ],
            )
        }
        Printer::Deployment => {
            let (c, i) = containers_and_images(obj, "spec.template.spec.containers");
            (
                vec![
                    col("Name"),
                    col("Ready"),
                    int("Up-to-date"),
                    int("Available"),
                    col("Age"),
                    wide("Containers"),
                    wide("Images"),
                    wide("Selector"),
                ],
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        n(obj, "status.readyReplicas"),
                        obj.path("spec.replicas")
                            .and_then(Value::as_i64)
                            .unwrap_or(1)
                    )),
                    json!(n(obj, "status.updatedReplicas")),
                    json!(n(obj, "status.availableReplicas")),
                    age(obj),
                    c,
                    i,
                    json!(selector_string(obj, "spec.selector")),
                ],
            )
        }
        Printer::ReplicaSet => replica_set(name, obj, json!(selector_string(obj, "spec.selector"))),
        Printer::StatefulSet => {
            let (c, i) = containers_and_images(obj, "spec.template.spec.containers");
            (
                vec![
                    col("Name"),
                    col("Ready"),
                    col("Age"),
                    wide("Containers"),
                    wide("Images"),
                ],
                vec![
                    name,
                    json!(format!(
                        "{}/{}",
                        n(obj, "status.readyReplicas"),
                        obj.path("spec.replicas")
                            .and_then(Value::as_i64)
                            .unwrap_or(1)
                    )),
                    age(obj),
                    c,
                    i,
                ],
            )
        }
        Printer::DaemonSet => {
            let (c, i) = containers_and_images(obj, "spec.template.spec.containers");
            let node_selector = map_string(obj, "spec.template.spec.nodeSelector");
            (
                vec![
                    col("Name"),
                    int("Desired"),
                    int("Current"),
                    int("Ready"),
                    int("Up-to-date"),
                    int("Available"),
                    col("Node Selector"),
                    col("Age"),
                    wide("Containers"),
                    wide("Images"),
                    wide("Selector"),
                ],
                vec![
                    name,
                    json!(n(obj, "status.desiredNumberScheduled")),
                    json!(n(obj, "status.currentNumberScheduled")),
                    json!(n(obj, "status.numberReady")),
                    json!(n(obj, "status.updatedNumberScheduled")),
                    json!(n(obj, "status.numberAvailable")),
                    or_none(node_selector),
                    age(obj),
                    c,
                    i,
                    json!(selector_string(obj, "spec.selector")),
                ],
            )
        }
        Printer::Job => {
            let completions = obj.path("spec.completions").and_then(Value::as_i64);
            let succeeded = n(obj, "status.succeeded");
            let completions = match completions {
                Some(c) => format!("{succeeded}/{c}"),
                None => format!(
                    "{succeeded}/1 of {}",
                    obj.path("spec.parallelism")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ),
            };
            let duration = match (
                obj.path("status.startTime"),
                obj.path("status.completionTime"),
            ) {
                (Some(_), Some(_)) => {
                    let st = s(obj, "status.startTime").parse::<jiff::Timestamp>().ok();
                    let ct = s(obj, "status.completionTime")
                        .parse::<jiff::Timestamp>()
                        .ok();
                    match (st, ct) {
                        (Some(a), Some(b)) => human_duration(b.as_second() - a.as_second()),
                        _ => String::new(),
                    }
                }
                (Some(_), None) => age_of(obj, "status.startTime"),
                _ => String::new(),
            };
            let (c, i) = containers_and_images(obj, "spec.template.spec.containers");
            (
                vec![
                    col("Name"),
                    col("Status"),
                    col("Completions"),
                    col("Duration"),
                    col("Age"),
                    wide("Containers"),
                    wide("Images"),
                    wide("Selector"),
                ],
                vec![
                    name,
                    json!(job_status(obj)),
                    json!(completions),
                    json!(duration),
                    age(obj),
                    c,
                    i,
                    json!(selector_string(obj, "spec.selector")),
                ],
            )
        }
        Printer::CronJob => (
            vec![
                col("Name"),
                col("Schedule"),
                col("Timezone"),
                col("Suspend"),
                int("Active"),
                col("Last Schedule"),
                col("Age"),
            ],
            vec![
                name,
                json!(s(obj, "spec.schedule")),
                or_none(s(obj, "spec.timeZone").into()),
                json!(
                    obj.path("spec.suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                        .replacen('t', "T", 1)
                        .replacen('f', "F", 1)
                ),
                json!(arr(obj, "status.active").len()),
                or_none(if obj.path("status.lastScheduleTime").is_some() {
                    age_of(obj, "status.lastScheduleTime")
                } else {
                    String::new()
                }),
                age(obj),
            ],
        ),
        Printer::Service => {
            let ext: Vec<String> = arr(obj, "spec.externalIPs")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let selector = map_string(obj, "spec.selector");
            let t = s(obj, "spec.type");
            (
                vec![
                    col("Name"),
                    col("Type"),
                    col("Cluster-IP"),
                    col("External-IP"),
                    col("Port(s)"),
                    col("Age"),
                    wide("Selector"),
                ],
                vec![
                    name,
                    json!(if t.is_empty() { "ClusterIP" } else { t }),
                    or_none(s(obj, "spec.clusterIP").into()),
                    or_none(ext.join(",")),
                    or_none(service_ports(obj)),
                    age(obj),
                    or_none(selector),
                ],
            )
        }
        Printer::Endpoints => (
            vec![col("Name"), col("Endpoints"), col("Age")],
            vec![name, or_none(endpoints(obj)), age(obj)],
        ),
        Printer::EndpointSlice => {
            let ports = arr(obj, "ports")
                .iter()
                .map(|p| match p.get("port").and_then(Value::as_i64) {
                    Some(n) => n.to_string(),
                    None => "<unset>".to_string(),
                })
                .collect();
            let addresses = arr(obj, "endpoints")
                .iter()
                .flat_map(|e| arr(e, "addresses"))
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            (
                vec![
                    col("Name"),
                    col("AddressType"),
                    col("Ports"),
                    col("Endpoints"),
                    col("Age"),
                ],
                vec![
                    name,
                    json!(s(obj, "addressType")),
                    json!(slice_column(ports, "<unset>")),
                    json!(slice_column(addresses, "<none>")),
                    age(obj),
                ],
            )
        }
        Printer::ConfigMap => {
            let count = ["data", "binaryData"]
                .iter()
                .map(|f| {
                    obj.get(*f)
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len())
                })
                .sum::<usize>();
            (
                vec![col("Name"), int("Data"), col("Age")],
                vec![name, json!(count), age(obj)],
            )
        }
        Printer::Secret => {
            let count = ["data", "stringData"]
                .iter()
                .map(|f| {
                    obj.get(*f)
                        .and_then(Value::as_object)
                        .map_or(0, |m| m.len())
                })
                .sum::<usize>();
            let t = s(obj, "type");
            (
                vec![col("Name"), col("Type"), int("Data"), col("Age")],
                vec![
                    name,
                    json!(if t.is_empty() { "Opaque" } else { t }),
                    json!(count),
                    age(obj),
                ],
            )
        }
        Printer::ServiceAccount => (
            vec![col("Name"), int("Secrets"), col("Age")],
            vec![name, json!(arr(obj, "secrets").len()), age(obj)],
        ),
        Printer::Namespace => (
            vec![col("Name"), col("Status"), col("Age")],
            vec![
                name,
                json!(if s(obj, "status.phase").is_empty() {
                    "Active"
                } else {
                    s(obj, "status.phase")
                }),
                age(obj),
            ],
        ),
        Printer::Node => {
            let addr = |t: &str| {
                arr(obj, "status.addresses")
                    .iter()
                    .find(|a| s(a, "type") == t)
                    .map(|a| s(a, "address").to_string())
                    .unwrap_or_default()
            };
            (
                vec![
                    col("Name"),
                    col("Status"),
                    col("Roles"),
                    col("Age"),
                    col("Version"),
                    wide("Internal-IP"),
                    wide("External-IP"),
                    wide("OS-Image"),
                    wide("Kernel-Version"),
                    wide("Container-Runtime"),
                ],
                vec![
                    name,
                    json!(node_status(obj)),
                    or_none(node_roles(obj)),
                    age(obj),
                    json!(s(obj, "status.nodeInfo.kubeletVersion")),
                    or_none(addr("InternalIP")),
                    or_none(addr("ExternalIP")),
                    or_none(s(obj, "status.nodeInfo.osImage").into()),
                    or_none(s(obj, "status.nodeInfo.kernelVersion").into()),
                    or_none(s(obj, "status.nodeInfo.containerRuntimeVersion").into()),
                ],
            )
        }
        Printer::Event => {
            let last = ["lastTimestamp", "eventTime", "metadata.creationTimestamp"]
                .iter()
                .find(|p| obj.path(p).and_then(Value::as_str).is_some())
                .map(|p| age_of(obj, p))
                .unwrap_or_default();
            let object = format!(
                "{}/{}",
                s(obj, "involvedObject.kind").to_lowercase(),
                s(obj, "involvedObject.name")
            );
            (
                vec![
                    col("Last Seen"),
                    col("Type"),
                    col("Reason"),
                    col("Object"),
                    col("Message"),
                ],
                vec![
                    json!(last),
                    json!(s(obj, "type")),
                    json!(s(obj, "reason")),
                    json!(object),
                    json!(s(obj, "message")),
                ],
            )
        }
        Printer::Lease => (
            vec![col("Name"), col("Holder"), col("Age")],
            vec![name, json!(s(obj, "spec.holderIdentity")), age(obj)],
        ),
        Printer::RoleBinding => (
            vec![col("Name"), col("Role"), col("Age")],
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(obj, "roleRef.kind"),
                    s(obj, "roleRef.name")
                )),
                age(obj),
            ],
        ),
        Printer::PriorityClass => (
            vec![col("Name"), int("Value"), col("Global-Default"), col("Age")],
            vec![
                name,
                json!(n(obj, "value")),
                json!(
                    obj.get("globalDefault")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                ),
                age(obj),
            ],
        ),
        Printer::PersistentVolumeClaim => (
            vec![
                col("Name"),
                col("Status"),
                col("Volume"),
                col("Capacity"),
                col("Access Modes"),
                col("StorageClass"),
                col("VolumeAttributesClass"),
                col("Age"),
                wide("VolumeMode"),
            ],
            vec![
                name,
                json!(s(obj, "status.phase")),
                json!(s(obj, "spec.volumeName")),
                json!(s(obj, "status.capacity.storage")),
                json!(printers::access_modes(obj, "status.accessModes")),
                json!(s(obj, "spec.storageClassName")),
                or_unset(s(obj, "spec.volumeAttributesClassName")),
                age(obj),
                json!(s(obj, "spec.volumeMode")),
            ],
        ),
        other => return printers::cells(other, obj),
    })
}

/// Evaluates a CRD printer column's JSONPath (`.spec.replicas`, `.status.conditions[0].type`).
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        let (field, index) = match part.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

fn custom(info: &ResourceInfo, obj: &Value) -> (Vec<(String, String, i32)>, Vec<Value>) {
    let mut cols = vec![("Name".to_string(), "string".to_string(), 0)];
    let mut cells = vec![json!(obj.name().unwrap_or(""))];
    let mut has_age = false;
    for c in &info.printer_columns {
        let v = json_path(obj, &c.json_path).cloned().unwrap_or(Value::Null);
        let (t, v) = if c.type_ == "date" {
            let age = v
                .as_str()
                .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                .map(|t| human_duration(jiff::Timestamp::now().as_second() - t.as_second()));
            (
                "date".to_string(),
                age.map(Value::String).unwrap_or(Value::Null),
            )
        } else {
            (c.type_.clone(), v)
        };
        if c.name.eq_ignore_ascii_case("age") {
            has_age = true;
        }
        cols.push((c.name.clone(), t, c.priority));
        cells.push(v);
    }
    if !has_age {
        cols.push(("Age".into(), "date".into(), 0));
        cells.push(age(obj));
    }
    (cols, cells)
}

/// The metadata of an object as a `PartialObjectMetadata`.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// A Table of objects of one resource.
pub fn table(
    info: &ResourceInfo,
    objects: &[&Value],
    metadata: Value,
    params: &Params,
    with_columns: bool,
) -> Value {
    let include = params.get("includeObject").unwrap_or("Metadata");
    let mut columns: Option<Vec<(String, String, i32)>> = None;
    let mut rows = Vec::with_capacity(objects.len());
    for obj in objects {
        let (cols, cells) = if info.custom {
            custom(info, obj)
        } else if let Some((cols, cells)) = builtin(info, obj) {
            (
                cols.iter()
                    .map(|c| (c.name.to_string(), c.type_.to_string(), c.priority))
                    .collect(),
                cells,
            )
        } else {
            (
                vec![
                    ("Name".into(), "string".into(), 0),
                    ("Age".into(), "string".into(), 0),
                ],
                vec![json!(obj.name().unwrap_or("")), age(obj)],
            )
        };
        columns.get_or_insert(cols);
        let object = match include {
            "None" => Value::Null,
            "Object" => (*obj).clone(),
            _ => partial_metadata(obj),
        };
        rows.push(json!({"cells": cells, "object": object}));
    }
    let columns = columns.unwrap_or_else(|| {
        let sample = json!({"metadata": {}});
        if info.custom {
            custom(info, &sample).0
        } else if let Some((cols, _)) = builtin(info, &sample) {
            cols.iter()
                .map(|c| (c.name.to_string(), c.type_.to_string(), c.priority))
                .collect()
        } else {
            vec![
                ("Name".into(), "string".into(), 0),
                ("Age".into(), "string".into(), 0),
            ]
        }
    });
    let defs: Vec<Value> = if with_columns {
        columns
            .iter()
            .map(|(name, t, priority)| {
                let format = if name == "Name" { "name" } else { "" };
                json!({"name": name, "type": t, "format": format, "description": "", "priority": priority})
            })
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(seconds: i64, expected: &str) {
        assert_eq!(human_duration(seconds), expected, "{seconds}s");
    }

    #[test]
    fn ages_read_like_kubectl() {
        for (s, e) in [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (9 * 3600, "9h"),
            (50 * 3600, "2d2h"),
            (20 * 86400, "20d"),
            (800 * 86400, "2y70d"),
        ] {
            check(s, e);
        }
    }

    #[test]
    fn pods_show_ready_status_and_restarts() {
        let registry = apimachinery::registry::Registry::builtin();
        let info = registry.by_resource("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let t = table(&info, &[&pod], json!({}), &Params::default(), true);
        assert_eq!(t["rows"][0]["cells"][1], "1/2");
        assert_eq!(t["rows"][0]["cells"][2], "CrashLoopBackOff");
        assert_eq!(t["rows"][0]["cells"][3], "3");
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn endpointslices_show_address_type_ports_and_endpoints() {
        let registry = apimachinery::registry::Registry::builtin();
        let info = registry
            .by_resource("discovery.k8s.io", "v1", "endpointslices")
            .unwrap();
        let slice = json!({"metadata": {"name": "web-abc", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": (1..=5).map(|i| json!({"addresses": [format!("127.2.0.{i}")]})).collect::<Vec<_>>()});
        let empty = json!({"metadata": {"name": "e", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "addressType": "IPv4", "endpoints": []});
        let t = table(
            &info,
            &[&slice, &empty],
            json!({}),
            &Params::default(),
            true,
        );
        assert_eq!(t["rows"][0]["cells"][1], "IPv4");
        assert_eq!(t["rows"][0]["cells"][2], "8080");
        assert_eq!(
            t["rows"][0]["cells"][3],
            "127.2.0.1,127.2.0.2,127.2.0.3 + 2 more..."
        );
        assert_eq!(t["rows"][1]["cells"][2], "<unset>");
        assert_eq!(t["rows"][1]["cells"][3], "<none>");
    }
}
