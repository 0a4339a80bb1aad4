"""The official Kubernetes Python client (`kubernetes` on PyPI) against a running gitplane.

Run by tests/python_client.rs with KUBECONFIG set and a namespace to work in. Each check is a
function; every failure is printed with its check's name and the script exits non-zero, so the
Rust test shows what the client tripped over.
"""
import base64
import json
import os
import sys
import time
import traceback

from kubernetes import client, config
from kubernetes.client.rest import ApiException

NS = os.environ.get("TEST_NAMESPACE", "pyclient")


def wait(what, f, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = f()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def raw(api_call, *args, **kwargs):
    """The JSON body the server answered, before the typed client reads it."""
    resp = api_call(*args, _preload_content=False, **kwargs)
    return json.loads(resp.data)


def check_finished_pods_deserialize(core, batch):
    """A Job's finished pod keeps `imageID` in its container statuses (Kubernetes always
    serializes it); the typed client refuses a list where it is missing."""
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="done"),
        spec=client.V1JobSpec(
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(
                    annotations={"gitplane.io/simulate": "succeed-after=200ms"}
                ),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="c", image="busybox")],
                ),
            )
        ),
    )
    batch.create_namespaced_job(NS, job)
    wait(
        "the job to complete",
        lambda: (batch.read_namespaced_job_status("done", NS).status.succeeded or 0) >= 1,
    )
    pods = core.list_pod_for_all_namespaces().items
    finished = [p for p in pods if p.status.phase == "Succeeded"]
    assert finished, "no Succeeded pod listed"
    for p in finished:
        for s in p.status.container_statuses or []:
            assert s.image_id is not None, f"pod {p.metadata.name}: imageID missing"


def check_secret_string_data(core):
    """`stringData` is write-only: merged into `data` (base64) and never stored or returned."""
    created = core.create_namespaced_secret(
        NS,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="creds"),
            data={"kept": base64.b64encode(b"old").decode()},
            string_data={"user": "admin", "kept": "new"},
        ),
    )
    for s in (created, core.read_namespaced_secret("creds", NS)):
        assert s.string_data is None, f"stringData returned: {s.string_data}"
        assert base64.b64decode(s.data["user"]) == b"admin", s.data
        assert base64.b64decode(s.data["kept"]) == b"new", "stringData must win over data"
    patched = core.patch_namespaced_secret("creds", NS, {"stringData": {"user": "root"}})
    assert patched.string_data is None
    assert base64.b64decode(patched.data["user"]) == b"root", patched.data


def check_discovery_and_events(core):
    """Discovery lists the review groups and events.k8s.io; events.k8s.io/v1 Events are served
    and are the same objects as core Events."""
    groups = {g.name for g in client.ApisApi().get_api_versions().groups}
    for g in ("authorization.k8s.io", "authentication.k8s.io", "events.k8s.io"):
        assert g in groups, f"/apis lacks {g}: {sorted(groups)}"
    events = client.EventsV1Api()
    body = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "pyclient.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "action": "Testing",
        "reason": "Checked",
        "note": "made by the python client",
        "type": "Normal",
        "reportingController": "example.com/pyclient",
        "reportingInstance": "pyclient-1",
        "regarding": {"kind": "Namespace", "name": NS, "apiVersion": "v1"},
    }
    events.create_namespaced_event(NS, body)
    got = events.read_namespaced_event("pyclient.1", NS)
    assert got.note == "made by the python client", got
    assert got.regarding.name == NS, got.regarding
    core_ev = core.read_namespaced_event("pyclient.1", NS)
    assert core_ev.message == "made by the python client", core_ev
    assert core_ev.involved_object.name == NS, core_ev.involved_object
    # Raw: core Events written without eventTime fail the typed client's check, on
    # Kubernetes too (eventTime is required in events.k8s.io/v1).
    listed = [e["metadata"]["name"] for e in raw(events.list_namespaced_event, NS)["items"]]
    assert "pyclient.1" in listed, listed


def check_root_ca_published(core):
    """Every namespace gets `kube-root-ca.crt` with the cluster's CA, new ones too."""
    ca_file = client.Configuration.get_default_copy().ssl_ca_cert
    ca = open(ca_file).read().strip() if ca_file else None
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS + "-new")))
    for ns in ("default", NS + "-new"):
        cm = wait(
            f"kube-root-ca.crt in {ns}",
            lambda: _read_cm(core, "kube-root-ca.crt", ns),
        )
        assert "BEGIN CERTIFICATE" in cm.data["ca.crt"], cm.data
        if ca:
            assert cm.data["ca.crt"].strip() == ca, "kube-root-ca.crt is not the cluster CA"


def _read_cm(core, name, ns):
    try:
        return core.read_namespaced_config_map(name, ns)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def check_paging_is_a_snapshot(core):
    """Continued pages are served at the first page's resourceVersion, with
    remainingItemCount; an object created between pages is not in them."""
    ns = NS + "-pages"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    for i in range(5):
        core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm-{i}"))
        )
    wait("kube-root-ca.crt", lambda: _read_cm(core, "kube-root-ca.crt", ns))
    first = core.list_namespaced_config_map(ns, limit=2)
    total = 6  # five made here and kube-root-ca.crt
    assert len(first.items) == 2, len(first.items)
    assert first.metadata._continue, "no continue token"
    assert first.metadata.remaining_item_count == total - 2, first.metadata
    core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm-late"))
    )
    names = [c.metadata.name for c in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_namespaced_config_map(ns, limit=2, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version, (
            page.metadata.resource_version,
            first.metadata.resource_version,
        )
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if token:
            assert page.metadata.remaining_item_count == total - len(names), page.metadata
    assert "cm-late" not in names, f"an object made between pages was listed: {names}"
    assert len(names) == total and len(set(names)) == total, names


def check_delete_answers_status(core, apps):
    """DELETE of an object removed at once answers a Status with details, as Kubernetes."""
    core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="gone"))
    )
    body = raw(core.delete_namespaced_config_map, "gone", NS)
    assert body.get("kind") == "Status", body
    assert body.get("status") == "Success", body
    details = body.get("details") or {}
    assert details.get("name") == "gone" and details.get("kind") == "configmaps", body
    assert details.get("uid"), body
    apps.create_namespaced_deployment(NS, _deployment("todelete"))
    d = raw(apps.delete_namespaced_deployment, "todelete", NS)
    assert d.get("kind") == "Status" and d["details"]["group"] == "apps", d


def _deployment(name):
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=0,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
            ),
        ),
    )


def check_create_answers_status(core, apps):
    """A created object is answered with the empty status Kubernetes serializes."""
    d = raw(apps.create_namespaced_deployment, NS, _deployment("fresh"))
    assert d.get("status") == {}, d.get("status")
    svc = client.V1Service(
        metadata=client.V1ObjectMeta(name="fresh"),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
    )
    s = raw(core.create_namespaced_service, NS, svc)
    assert s.get("status") == {"loadBalancer": {}}, s.get("status")


def _apply(core, name, body, manager, force=False):
    """PATCH with `application/apply-patch+yaml`: client 32.x picks a patch's content type
    itself (merge patch for a dict), so an apply goes through `call_api`, as its users do."""
    query = [("fieldManager", manager)] + ([("force", "true")] if force else [])
    return core.api_client.call_api(
        f"/api/v1/namespaces/{NS}/configmaps/{name}", "PATCH",
        query_params=query,
        header_params={"Content-Type": "application/apply-patch+yaml",
                       "Accept": "application/json"},
        body=body, response_type="V1ConfigMap",
        auth_settings=["BearerToken"], _return_http_data_only=True)


def check_server_side_apply(core):
    """Server-side apply (`application/apply-patch+yaml`): create through apply, a conflict
    between two managers (409 naming the field and the manager), force taking ownership,
    managedFields recording each manager."""
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "applied", "namespace": NS}, "data": {"a": "1"}}
    created = _apply(core, "applied", body, "alice")
    assert created.data == {"a": "1"}, created.data
    managers = {m.manager: m.operation for m in created.metadata.managed_fields}
    assert managers.get("alice") == "Apply", managers
    other = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "applied", "namespace": NS}, "data": {"a": "2"}}
    try:
        _apply(core, "applied", other, "bob")
        raise AssertionError("bob's apply of alice's field did not conflict")
    except ApiException as e:
        assert e.status == 409, e.status
        status = json.loads(e.body)
        assert status["reason"] == "Conflict", status
        assert 'conflict with "alice"' in status["message"], status["message"]
        assert ".data.a" in status["message"], status["message"]
    forced = _apply(core, "applied", other, "bob", force=True)
    assert forced.data == {"a": "2"}, forced.data
    managers = {m.manager for m in forced.metadata.managed_fields}
    assert "bob" in managers, managers


def main():
    config.load_kube_config()
    core, apps, batch = client.CoreV1Api(), client.AppsV1Api(), client.BatchV1Api()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    checks = [
        ("finished pods deserialize", lambda: check_finished_pods_deserialize(core, batch)),
        ("secret stringData", lambda: check_secret_string_data(core)),
        ("discovery and events.k8s.io", lambda: check_discovery_and_events(core)),
        ("kube-root-ca.crt", lambda: check_root_ca_published(core)),
        ("paging snapshot", lambda: check_paging_is_a_snapshot(core)),
        ("delete answers Status", lambda: check_delete_answers_status(core, apps)),
        ("create answers status", lambda: check_create_answers_status(core, apps)),
        ("server-side apply", lambda: check_server_side_apply(core)),
    ]
    only = set(sys.argv[1:])
    failed = []
    for name, check in checks:
        if only and name not in only:
            continue
        try:
            check()
            print(f"ok: {name}")
        except Exception:
            failed.append(name)
            print(f"FAILED: {name}\n{traceback.format_exc()}")
    if failed:
        print(f"{len(failed)} check(s) failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
