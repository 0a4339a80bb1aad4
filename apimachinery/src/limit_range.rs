//! LimitRange admission of pods, as Kubernetes' LimitRanger: containers get the default
//! requests and limits of their namespace's LimitRanges, then containers and pods are checked
//! against `min`, `max` and `maxLimitRequestRatio`, with Kubernetes' messages.

use serde_json::{Map, Value, json};

use crate::object::ObjectExt;
use crate::quantity::parse_milli;

fn map(v: &Value, field: &str) -> Map<String, Value> {
    v.get(field)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// A LimitRange item with Kubernetes' defaulting: `default` from `max`, `defaultRequest` from
/// `default`, then from `min`.
fn defaulted(item: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let mut default = map(item, "default");
    let mut request = map(item, "defaultRequest");
    for (k, v) in map(item, "max") {
        default.entry(k).or_insert(v);
    }
    for (k, v) in &default {
        request.entry(k.clone()).or_insert(v.clone());
    }
    for (k, v) in map(item, "min") {
        request.entry(k).or_insert(v);
    }
    (default, request)
}

fn items<'a>(ranges: &'a [&Value], type_: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    ranges.iter().flat_map(move |r| {
        r.path("spec.limits")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(move |i| i.get("type").and_then(Value::as_str) == Some(type_))
    })
}

/// Fills in the containers' default requests and limits.
pub fn default_pod(ranges: &[&Value], pod: &mut Value) {
    for item in items(ranges, "Container") {
        let (limits, requests) = defaulted(item);
        for path in ["/spec/containers", "/spec/initContainers"] {
            let Some(cs) = pod.pointer_mut(path).and_then(Value::as_array_mut) else {
                continue;
            };
            for c in cs {
                let Some(c) = c.as_object_mut() else {
                    continue;
                };
                let res = c.entry("resources").or_insert_with(|| json!({}));
                for (field, defaults) in [("limits", &limits), ("requests", &requests)] {
                    if defaults.is_empty() {
                        continue;
                    }
                    let Some(res) = res.as_object_mut() else {
                        continue;
                    };
                    let m = res.entry(field).or_insert_with(|| json!({}));
                    if let Some(m) = m.as_object_mut() {
                        for (k, v) in defaults {
                            m.entry(k.clone()).or_insert(v.clone());
                        }
                    }
                }
            }
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks requests and limits against one item (`scope` is `Container` or `Pod`).
fn check(
    item: &Value,
    scope: &str,
    requests: &Map<String, Value>,
    limits: &Map<String, Value>,
    errs: &mut Vec<String>,
) {
    let milli = |v: &Value| v.as_str().and_then(parse_milli);
    for (r, min) in map(item, "min") {
        let (Some(m), request, limit) = (milli(&min), requests.get(&r), limits.get(&r)) else {
            continue;
        };
        let min = text(&min);
        match request {
            None => errs.push(format!(
                "minimum {r} usage per {scope} is {min}.  No request is specified"
            )),
            Some(q) if milli(q).is_some_and(|q| q < m) => errs.push(format!(
                "minimum {r} usage per {scope} is {min}, but request is {}",
                text(q)
            )),
            _ => {}
        }
        if let Some(q) = limit
            && milli(q).is_some_and(|q| q < m)
        {
            errs.push(format!(
                "minimum {r} usage per {scope} is {min}, but limit is {}",
                text(q)
            ));
        }
    }
    for (r, max) in map(item, "max") {
        let (Some(m), request, limit) = (milli(&max), requests.get(&r), limits.get(&r)) else {
            continue;
        };
        let max = text(&max);
        match limit {
            None => errs.push(format!(
                "maximum {r} usage per {scope} is {max}.  No limit is specified"
            )),
            Some(q) if milli(q).is_some_and(|q| q > m) => errs.push(format!(
                "maximum {r} usage per {scope} is {max}, but limit is {}",
                text(q)
            )),
            _ => {}
        }
        if let Some(q) = request
            && milli(q).is_some_and(|q| q > m)
        {
            errs.push(format!(
                "maximum {r} usage per {scope} is {max}, but request is {}",
                text(q)
            ));
        }
    }
    for (r, ratio) in map(item, "maxLimitRequestRatio") {
        let Some(max_ratio) = milli(&ratio) else {
            continue;
        };
        let ratio = text(&ratio);
        let request = requests.get(&r).and_then(milli).unwrap_or(0);
        let Some(limit) = limits.get(&r).and_then(milli) else {
            continue;
        };
        if request == 0 {
            errs.push(format!(
                "{r} max limit to request ratio per {scope} is {ratio}, but no request is specified or request is 0"
            ));
            continue;
        }
        let actual = limit as f64 / request as f64;
        if actual * 1000.0 > max_ratio as f64 {
            errs.push(format!(
                "{r} max limit to request ratio per {scope} is {ratio}, but provided ratio is {actual:.6}"
            ));
        }
    }
}

fn sum(pod: &Value, field: &str) -> Map<String, Value> {
    let mut total: std::collections::BTreeMap<String, i64> = Default::default();
    for c in pod
        .path("spec.containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (k, v) in map(c.get("resources").unwrap_or(&Value::Null), field) {
            if let Some(m) = v.as_str().and_then(parse_milli) {
                *total.entry(k).or_default() += m;
            }
        }
    }
    total
        .into_iter()
        .map(|(k, v)| (k, json!(crate::quantity::format_milli(v))))
        .collect()
}

/// The reasons a (defaulted) pod breaks its namespace's LimitRanges; empty when it does not.
pub fn check_pod(ranges: &[&Value], pod: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for item in items(ranges, "Container") {
        for path in ["spec.containers", "spec.initContainers"] {
            for c in pod
                .path(path)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let res = c.get("resources").unwrap_or(&Value::Null);
                check(
                    item,
                    "Container",
                    &map(res, "requests"),
                    &map(res, "limits"),
                    &mut errs,
                );
            }
        }
    }
    for item in items(ranges, "Pod") {
        check(
            item,
            "Pod",
            &sum(pod, "requests"),
            &sum(pod, "limits"),
            &mut errs,
        );
    }
    errs
}

/// Kubernetes' aggregate of several errors: the one message, or `[a, b]`.
pub fn aggregate(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(item: Value) -> Value {
        json!({"metadata": {"name": "lr"}, "spec": {"limits": [item]}})
    }

    #[test]
    fn defaults_fill_containers_and_bounds_refuse() {
        let lr = range(
            json!({"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "1"}, "min": {"cpu": "50m"},
            "maxLimitRequestRatio": {"cpu": "10"}}),
        );
        let mut pod = json!({"spec": {"containers": [{"name": "c"},
            {"name": "d", "resources": {"limits": {"cpu": "800m"}}}]}});
        default_pod(&[&lr], &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}})
        );
        assert!(check_pod(&[&lr], &pod).is_empty());
        let big = json!({"spec": {"containers": [{"name": "c", "resources":
            {"limits": {"cpu": "2"}, "requests": {"cpu": "10m"}}}]}});
        let errs = check_pod(&[&lr], &big);
        assert_eq!(
            aggregate(&errs),
            "[minimum cpu usage per Container is 50m, but request is 10m, maximum cpu usage per Container is 1, but limit is 2, cpu max limit to request ratio per Container is 10, but provided ratio is 200.000000]"
        );
    }
}
