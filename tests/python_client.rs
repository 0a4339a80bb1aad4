//! The official Kubernetes Python client (`kubernetes` on PyPI, 32.x for Kubernetes 1.32)
//! against `gitplane up`: what it tripped over (finished pods without `imageID`, Secret
//! `stringData`, discovery of the review groups and `events.k8s.io`, `kube-root-ca.crt`,
//! consistent list pages, DELETE's `Status`, create's empty `status`) and server-side apply
//! through the client's `application/apply-patch+yaml` are checked by
//! `tests/python/client_fidelity.py`, run here with the server's kubeconfig.
//!
//! The interpreter is `$GITPLANE_TEST_PYTHON`, or the venv `scripts/test.sh` makes
//! (`~/.cache/gitplane/test-venv`); without one the test fails saying how to make it.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;

fn python() -> PathBuf {
    let path = std::env::var_os("GITPLANE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/gitplane/test-venv/bin/python")
        });
    let ok = Command::new(&path)
        .args(["-c", "import kubernetes"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot import the `kubernetes` Python client. Make the venv with: \
         python3 -m venv ~/.cache/gitplane/test-venv && \
         ~/.cache/gitplane/test-venv/bin/pip install 'kubernetes==32.0.1' \
         (scripts/test.sh does this), or point GITPLANE_TEST_PYTHON at an interpreter that has it",
        path.display()
    );
    path
}

#[test]
fn the_official_python_client_reads_and_writes_as_on_kubernetes() {
    let python = python();
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "1"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/client_fidelity.py"
    );
    let out = Command::new(python)
        .arg(script)
        .env("KUBECONFIG", s.kubeconfig())
        .env("TEST_NAMESPACE", "pyclient")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client's checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok: paging snapshot"), "{stdout}");
    assert!(stdout.contains("ok: server-side apply"), "{stdout}");
}
