//! Volumes that last, end to end: the default StorageClass `local-path`, the PersistentVolume
//! binder and the local-path provisioner in the controller-manager, StatefulSet
//! `volumeClaimTemplates`, and the process runtime mounting claimed volumes, with real
//! processes and the real kubectl.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Server, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

/// A server stopped cleanly when dropped, so its node stops the pods' processes even when a
/// test fails.
struct Up(Server);

impl Drop for Up {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn json(s: &Server, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = s.kubectl(&all);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn wait_for(s: &Server, args: &[&str], what: &str, f: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("{args:?}: {what}"), WAIT, || {
        json(s, args).filter(|v| f(v))
    })
}

fn phase(v: &Value) -> &str {
    v["status"]["phase"].as_str().unwrap_or("")
}

const STATEFULSET: &str = "
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: busybox
        command: [sh, -c, 'echo \"run by $HOSTNAME\" >> $GITPLANE_ROOT/var/lib/db/log; cat $GITPLANE_ROOT/var/lib/db/log; exec sleep 1000']
        volumeMounts: [{name: data, mountPath: /var/lib/db}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
";

#[test]
fn a_statefulset_pod_finds_its_data_again_after_being_replaced() {
    let up = Up(Server::start_with(&[
        "--node-name",
        "local",
        "--runtime",
        "process",
    ]));
    let s = &up.0;
    let class = json(s, &["get", "storageclass", "local-path"]).expect("default class");
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert_eq!(class["volumeBindingMode"], "WaitForFirstConsumer");
    s.ok_stdin(&["apply", "-f", "-"], STATEFULSET);

    let first = wait_for(s, &["get", "pod", "db-0"], "running", |p| {
        phase(p) == "Running"
    });
    assert_eq!(
        first["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "data-db-0"
    );
    let claim = wait_for(s, &["get", "pvc", "data-db-0"], "bound", |c| {
        phase(c) == "Bound"
    });
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    assert_eq!(
        claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        "local"
    );
    let pv_name = claim["spec"]["volumeName"].as_str().unwrap().to_string();
    let pv = json(s, &["get", "pv", &pv_name]).expect("volume");
    assert_eq!(phase(&pv), "Bound");
    assert_eq!(pv["spec"]["claimRef"]["name"], "data-db-0");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    let dir = PathBuf::from(pv["spec"]["hostPath"]["path"].as_str().unwrap());
    let data_dir = std::fs::canonicalize(&s.data_dir).unwrap();
    assert!(
        dir.starts_with(&data_dir),
        "{} not under {}",
        dir.display(),
        data_dir.display()
    );
    eventually("the first run's line", WAIT, || {
        let log = std::fs::read_to_string(dir.join("log")).ok()?;
        (log.lines().count() == 1).then_some(())
    });

    let uid = first["metadata"]["uid"].as_str().unwrap().to_string();
    s.ok(&["delete", "pod", "db-0", "--wait=false"]);
    wait_for(s, &["get", "pod", "db-0"], "replaced and running", |p| {
        p["metadata"]["uid"] != uid.as_str() && phase(p) == "Running"
    });
    let logs = eventually("the replacement's logs", WAIT, || {
        let out = s.ok(&["logs", "db-0"]);
        (out.lines().count() == 2).then_some(out)
    });
    assert_eq!(logs, "run by db-0\nrun by db-0\n", "{logs}");

    // Delete reclaim: the claim goes, so do the volume and its directory.
    s.ok(&["scale", "statefulset", "db", "--replicas=0"]);
    eventually("db-0 gone", WAIT, || {
        json(s, &["get", "pod", "db-0"]).is_none().then_some(())
    });
    s.ok(&["delete", "pvc", "data-db-0"]);
    eventually("the volume deleted", WAIT, || {
        json(s, &["get", "pv", &pv_name]).is_none().then_some(())
    });
    eventually("the directory removed", WAIT, || {
        (!dir.exists()).then_some(())
    });
}

const STATIC: &str = "
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: manual}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: big}
spec:
  storageClassName: manual
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /tmp/gitplane-test-big}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: small}
spec:
  storageClassName: manual
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /tmp/gitplane-test-small}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: readonly}
spec:
  storageClassName: manual
  capacity: {storage: 1Gi}
  accessModes: [ReadOnlyMany]
  hostPath: {path: /tmp/gitplane-test-readonly}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: none}
spec:
  storageClassName: ''
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
";

#[test]
fn a_claim_binds_the_smallest_fitting_volume_and_a_retained_volume_is_released() {
    let up = Up(Server::start());
    let s = &up.0;
    s.ok_stdin(&["apply", "-f", "-"], STATIC);
    let claim = wait_for(s, &["get", "pvc", "data"], "bound", |c| phase(c) == "Bound");
    assert_eq!(claim["spec"]["volumeName"], "small");
    assert_eq!(claim["status"]["capacity"]["storage"], "2Gi");
    wait_for(s, &["get", "pv", "small"], "bound", |v| phase(v) == "Bound");
    wait_for(s, &["get", "pv", "big"], "available", |v| {
        phase(v) == "Available"
    });
    // A claim naming no class ("") gets no default and no volume of a class.
    let none = json(s, &["get", "pvc", "none"]).unwrap();
    assert_eq!(none["spec"]["storageClassName"], "");
    assert_eq!(phase(&none), "Pending");

    s.ok(&["delete", "pvc", "data"]);
    let pv = wait_for(s, &["get", "pv", "small"], "released", |v| {
        phase(v) == "Released"
    });
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
}
