//! Everyday kubectl: one table of the commands a person types in their first hour, run with the
//! real kubectl 1.32 against one `gitplane up` with a local process node, each row asserting
//! what Kubernetes would print (and, where it changes something, a later row reads the change
//! back). Commands that need another open issue (exec, port-forward, cp, top, diff) join the
//! table in the change that makes them work.

mod common;

use std::time::{Duration, Instant};

use common::Server;

/// What a row expects of kubectl.
enum Expect {
    /// Exit 0, and the output (stdout and stderr) contains this.
    Ok(&'static str),
    /// A non-zero exit, and the output contains this.
    Fails(&'static str),
    /// Exit 0 with output containing this, retried until it does (something has to converge).
    Eventually(&'static str),
}
use Expect::*;

const CONFIGMAP_SET_A: &str = "
apiVersion: v1
kind: ConfigMap
metadata: {name: pruned-a, namespace: everyday, labels: {set: p}}
data: {k: a}
";

const CONFIGMAP_SET_B: &str = "
apiVersion: v1
kind: ConfigMap
metadata: {name: pruned-b, namespace: everyday, labels: {set: p}}
data: {k: b}
";

const ROLE: &str = "
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reconciled, namespace: everyday}
rules:
- {apiGroups: [''], resources: [configmaps], verbs: [get]}
";

const REPLACED: &str = "
apiVersion: v1
kind: ConfigMap
metadata: {name: replaced, namespace: everyday}
data: {k: second}
";

/// The table: a command line (split on spaces; `'…'` quotes one argument; `{pod}`, `{node}` and
/// `{csr}` are filled in), an optional manifest on stdin, and what it must show.
const ROWS: &[(&str, Option<&str>, Expect)] = &[
    ("version", None, Ok("Server Version: v1.32")),
    (
        "cluster-info",
        None,
        Ok("Kubernetes control plane is running at https://127.0.0.1:"),
    ),
    ("api-versions", None, Ok("certificates.k8s.io/v1")),
    ("api-resources --api-group=apps", None, Ok("deployments")),
    ("api-resources", None, Ok("certificatesigningrequests")),
    ("get componentstatuses", None, Ok("Healthy")),
    ("get --raw /readyz", None, Ok("ok")),
    ("auth whoami", None, Ok("admin")),
    (
        "auth whoami -o jsonpath={.status.userInfo.groups}",
        None,
        Ok("system:masters"),
    ),
    ("auth can-i create pods", None, Ok("yes")),
    ("auth can-i --list", None, Ok("Resources")),
    (
        "create namespace everyday",
        None,
        Ok("namespace/everyday created"),
    ),
    (
        "create deployment web -n everyday --image=busybox -- sleep 3600",
        None,
        Ok("deployment.apps/web created"),
    ),
    (
        "rollout status deploy/web -n everyday --timeout=90s",
        None,
        Ok("successfully rolled out"),
    ),
    ("get deploy web -n everyday", None, Ok("1/1")),
    (
        "get pods -n everyday -l app=web",
        None,
        Eventually("Running"),
    ),
    ("get pods -n everyday -o wide", None, Ok("NODE")),
    (
        "scale deploy/web -n everyday --replicas=2",
        None,
        Ok("deployment.apps/web scaled"),
    ),
    (
        "rollout status deploy/web -n everyday --timeout=90s",
        None,
        Ok("successfully rolled out"),
    ),
    (
        "set image deploy/web -n everyday busybox=busybox:1.36",
        None,
        Ok("deployment.apps/web image updated"),
    ),
    (
        "rollout status deploy/web -n everyday --timeout=90s",
        None,
        Ok("successfully rolled out"),
    ),
    (
        "rollout history deploy/web -n everyday",
        None,
        Ok("REVISION"),
    ),
    (
        "rollout undo deploy/web -n everyday",
        None,
        Ok("deployment.apps/web rolled back"),
    ),
    (
        "rollout status deploy/web -n everyday --timeout=90s",
        None,
        Ok("successfully rolled out"),
    ),
    (
        "get deploy web -n everyday -o jsonpath={.spec.template.spec.containers[0].image}",
        None,
        Ok("busybox"),
    ),
    (
        "rollout restart deploy/web -n everyday",
        None,
        Ok("deployment.apps/web restarted"),
    ),
    (
        "rollout pause deploy/web -n everyday",
        None,
        Ok("deployment.apps/web paused"),
    ),
    (
        "rollout resume deploy/web -n everyday",
        None,
        Ok("deployment.apps/web resumed"),
    ),
    (
        "label deploy web -n everyday tier=backend",
        None,
        Ok("deployment.apps/web labeled"),
    ),
    (
        "annotate deploy web -n everyday note=first",
        None,
        Ok("deployment.apps/web annotated"),
    ),
    (
        "get deploy -n everyday -l tier=backend -o name",
        None,
        Ok("deployment.apps/web"),
    ),
    (
        "patch deploy web -n everyday -p '{\"spec\":{\"revisionHistoryLimit\":4}}'",
        None,
        Ok("deployment.apps/web patched"),
    ),
    (
        "patch deploy web -n everyday --type=json -p '[{\"op\":\"add\",\"path\":\"/spec/minReadySeconds\",\"value\":1}]'",
        None,
        Ok("deployment.apps/web patched"),
    ),
    (
        "get deploy web -n everyday -o jsonpath={.spec.revisionHistoryLimit}/{.spec.minReadySeconds}",
        None,
        Ok("4/1"),
    ),
    ("describe deploy web -n everyday", None, Ok("Replicas:")),
    (
        "expose deploy web -n everyday --port=80 --target-port=8080",
        None,
        Ok("service/web exposed"),
    ),
    (
        "get svc web -n everyday -o jsonpath={.spec.clusterIP}",
        None,
        Ok("127.96."),
    ),
    ("get endpoints web -n everyday", None, Eventually(":8080")),
    (
        "create configmap cfg -n everyday --from-literal=a=b",
        None,
        Ok("configmap/cfg created"),
    ),
    (
        "get configmap cfg -n everyday -o custom-columns=NAME:.metadata.name,A:.data.a",
        None,
        Ok("b"),
    ),
    (
        "create secret generic s -n everyday --from-literal=p=q",
        None,
        Ok("secret/s created"),
    ),
    (
        "get secret s -n everyday -o jsonpath={.data.p}",
        None,
        Ok("cQ=="),
    ),
    (
        "create secret docker-registry reg -n everyday --docker-server=r.example --docker-username=u --docker-password=p",
        None,
        Ok("secret/reg created"),
    ),
    (
        "create serviceaccount bot -n everyday",
        None,
        Ok("serviceaccount/bot created"),
    ),
    ("create token bot -n everyday", None, Ok("eyJ")),
    (
        "create role reader -n everyday --verb=get,list --resource=pods",
        None,
        Ok("role.rbac.authorization.k8s.io/reader created"),
    ),
    (
        "create rolebinding bot-reader -n everyday --role=reader --serviceaccount=everyday:bot",
        None,
        Ok("rolebinding.rbac.authorization.k8s.io/bot-reader created"),
    ),
    (
        "auth can-i list pods -n everyday --as=system:serviceaccount:everyday:bot",
        None,
        Ok("yes"),
    ),
    (
        "auth can-i delete pods -n everyday --as=system:serviceaccount:everyday:bot",
        None,
        Fails("no"),
    ),
    (
        "auth reconcile -f -",
        Some(ROLE),
        Ok("role.rbac.authorization.k8s.io/reconciled"),
    ),
    (
        "create clusterrole node-reader --verb=get,list --resource=nodes",
        None,
        Ok("clusterrole.rbac.authorization.k8s.io/node-reader created"),
    ),
    (
        "create clusterrolebinding jane-nodes --clusterrole=node-reader --user=jane",
        None,
        Ok("clusterrolebinding.rbac.authorization.k8s.io/jane-nodes created"),
    ),
    ("auth can-i list nodes --as=jane", None, Ok("yes")),
    (
        "create quota q -n everyday --hard=pods=20,configmaps=30",
        None,
        Ok("resourcequota/q created"),
    ),
    (
        "describe quota q -n everyday",
        None,
        Eventually("configmaps"),
    ),
    (
        "create pdb web -n everyday --selector=app=web --min-available=1",
        None,
        Ok("poddisruptionbudget.policy/web created"),
    ),
    ("get pdb web -n everyday", None, Ok("MIN AVAILABLE")),
    (
        "create ingress web -n everyday --rule=web.example/=web:80",
        None,
        Ok("ingress.networking.k8s.io/web created"),
    ),
    ("get ingress -n everyday", None, Ok("web.example")),
    (
        "create priorityclass everyday-high --value=1000",
        None,
        Ok("priorityclass.scheduling.k8s.io/everyday-high created"),
    ),
    (
        "create job once -n everyday --image=busybox -- echo done",
        None,
        Ok("job.batch/once created"),
    ),
    (
        "wait -n everyday --for=condition=complete job/once --timeout=90s",
        None,
        Ok("condition met"),
    ),
    ("logs -n everyday job/once", None, Ok("done")),
    (
        "create cronjob tick -n everyday --image=busybox --schedule=*/5_*_*_*_* -- echo tick",
        None,
        Ok("cronjob.batch/tick created"),
    ),
    (
        "create job manual -n everyday --from=cronjob/tick",
        None,
        Ok("job.batch/manual created"),
    ),
    (
        "wait -n everyday --for=condition=complete job/manual --timeout=90s",
        None,
        Ok("condition met"),
    ),
    (
        "autoscale deploy web -n everyday --min=1 --max=3 --cpu-percent=80",
        None,
        Ok("horizontalpodautoscaler.autoscaling/web autoscaled"),
    ),
    ("get hpa web -n everyday", None, Ok("Deployment/web")),
    ("get all -n everyday", None, Ok("deployment.apps/web")),
    ("events -n everyday", None, Ok("ScalingReplicaSet")),
    (
        "get events -n everyday --field-selector=reason=ScalingReplicaSet -o name",
        None,
        Ok("event/"),
    ),
    (
        "explain deployment.spec.replicas",
        None,
        Ok("FIELD: replicas"),
    ),
    (
        "apply -f -",
        Some(CONFIGMAP_SET_A),
        Ok("configmap/pruned-a created"),
    ),
    (
        "apply --prune -l set=p -f -",
        Some(CONFIGMAP_SET_B),
        Ok("configmap/pruned-a pruned"),
    ),
    (
        "get configmaps -n everyday -l set=p -o name",
        None,
        Ok("configmap/pruned-b"),
    ),
    (
        "create -f -",
        Some(REPLACED),
        Ok("configmap/replaced created"),
    ),
    (
        "replace --force -f -",
        Some(REPLACED),
        Ok("configmap/replaced replaced"),
    ),
    (
        "get configmap replaced -n everyday -o jsonpath={.data.k}",
        None,
        Ok("second"),
    ),
    (
        "delete configmap cfg -n everyday",
        None,
        Ok("configmap \"cfg\" deleted"),
    ),
    ("get configmap cfg -n everyday", None, Fails("NotFound")),
    ("cordon {node}", None, Ok("cordoned")),
    ("get node {node}", None, Ok("SchedulingDisabled")),
    ("uncordon {node}", None, Ok("uncordoned")),
    (
        "taint nodes {node} everyday=yes:PreferNoSchedule",
        None,
        Ok("tainted"),
    ),
    (
        "taint nodes {node} everyday=yes:PreferNoSchedule-",
        None,
        Ok("untainted"),
    ),
    ("label node {node} everyday=yes", None, Ok("labeled")),
    ("get nodes -l everyday=yes -o name", None, Ok("node/")),
    (
        "create -f {csr}",
        None,
        Ok("certificatesigningrequest.certificates.k8s.io/jane created"),
    ),
    (
        "certificate approve jane",
        None,
        Ok("certificatesigningrequest.certificates.k8s.io/jane approved"),
    ),
    ("get csr jane", None, Ok("Approved")),
    (
        "debug {pod} -n everyday --image=busybox -c dbg -- echo hi-from-debug",
        None,
        Ok(""),
    ),
    (
        "get pod {pod} -n everyday -o jsonpath={.spec.ephemeralContainers[0].name}",
        None,
        Ok("dbg"),
    ),
    (
        "logs {pod} -n everyday -c dbg",
        None,
        Eventually("hi-from-debug"),
    ),
    (
        "get pod {pod} -n everyday -o jsonpath={.status.ephemeralContainerStatuses[0].state.terminated.reason}",
        None,
        Eventually("Completed"),
    ),
    (
        "debug node/{node} -n everyday --image=busybox -- echo hi-from-node",
        None,
        Ok("Creating debugging pod node-debugger-"),
    ),
    ("delete pdb web -n everyday", None, Ok("deleted")),
    (
        "delete deploy web -n everyday",
        None,
        Ok("deployment.apps \"web\" deleted"),
    ),
    (
        "wait --for=delete deploy/web -n everyday --timeout=60s",
        None,
        Ok(""),
    ),
    (
        "delete namespace everyday --wait=false",
        None,
        Ok("namespace \"everyday\" deleted"),
    ),
];

/// Splits a row's command line: spaces separate arguments, `'…'` quotes one, and `_` inside
/// `*/5_*_*_*_*` stands for a space (a cron schedule is one argument).
fn split(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(ch),
        }
    }
    if !cur.is_empty() {
        args.push(cur);
    }
    args.into_iter()
        .map(|a| {
            if a.starts_with("--schedule=") {
                a.replace('_', " ")
            } else {
                a
            }
        })
        .collect()
}

/// A CertificateSigningRequest for the user jane, from a key openssl makes.
fn csr_manifest(dir: &std::path::Path) -> std::path::PathBuf {
    let key = dir.join("jane.key");
    let req = dir.join("jane.csr");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=jane/O=devs",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&req)
        .output()
        .expect("openssl is required (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b64 = std::process::Command::new("base64")
        .arg("-w0")
        .arg(&req)
        .output()
        .expect("base64 (coreutils)");
    let b64 = String::from_utf8_lossy(&b64.stdout).trim().to_string();
    let path = dir.join("csr.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: jane}}\nspec:\n  request: {b64}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n"
        ),
    )
    .expect("write csr.yaml");
    path
}

#[test]
fn everyday_kubectl_commands_work_as_on_kubernetes() {
    let s = Server::start_with(&["--runtime", "process"]);
    let tmp = tempfile::tempdir().expect("temp dir");
    let csr = csr_manifest(tmp.path());
    let node = common::eventually("a Ready node", Duration::from_secs(60), || {
        let out = s.kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!name.is_empty()).then_some(name)
    });
    let mut pod = String::new();
    let mut failures = Vec::new();
    for (line, stdin, expect) in ROWS {
        if line.contains("{pod}") && pod.is_empty() {
            // A pod of the current ReplicaSet: one of an older one may still be terminating.
            let out = s.ok(&[
                "get", "pods", "-n", "everyday", "-l", "app=web", "-o", "json",
            ]);
            let list: serde_json::Value = serde_json::from_str(&out).expect("pod list");
            pod = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["metadata"]["deletionTimestamp"].is_null())
                .and_then(|p| p["metadata"]["name"].as_str())
                .expect("a web pod that is not terminating")
                .to_string();
        }
        let line = line
            .replace("{node}", &node)
            .replace("{pod}", &pod)
            .replace("{csr}", &csr.display().to_string());
        let args = split(&line);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        let verdict = loop {
            let out = s.kubectl_stdin(&args, *stdin);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let (good, retry) = match expect {
                Ok(want) => (out.status.success() && text.contains(want), false),
                Fails(want) => (!out.status.success() && text.contains(want), false),
                Eventually(want) => (out.status.success() && text.contains(want), true),
            };
            if good {
                break None;
            }
            if !retry || Instant::now() > deadline {
                break Some(format!(
                    "kubectl {line}\n  exit: {}\n  output: {text}",
                    out.status
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        if let Some(v) = verdict {
            failures.push(v);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
}
