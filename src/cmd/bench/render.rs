//! The `render` benchmark: a kustomize overlay of 1,000 objects rendered by gitplane and by
//! `kubectl kustomize` in the same run, with the ratio of their times (target ≤ 0.1).

use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use templates::source::DirSource;

const OBJECTS: usize = 1000;
const FILES: usize = 10;
const RUNS: usize = 5;

/// Writes a base of `OBJECTS - 1` objects (Deployments and Services, in `FILES` files) and an
/// overlay over it that adds a generated ConfigMap, a prefix, a namespace, labels, images and
/// a patch.
fn write_overlay(dir: &Path) -> anyhow::Result<()> {
    let base = dir.join("base");
    std::fs::create_dir_all(&base)?;
    let per_file = OBJECTS / FILES / 2;
    let mut resources = String::from("resources:\n");
    for f in 0..FILES {
        let mut text = String::new();
        for i in 0..per_file {
            let name = format!("app-{f}-{i}");
            let last = f + 1 == FILES && i + 1 == per_file;
            write!(
                text,
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\n    tier: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: app\n        image: registry.example/app:1.0\n        envFrom:\n        - configMapRef:\n            name: settings\n        ports:\n        - containerPort: 8080\n"
            )?;
            if !last {
                write!(
                    text,
                    "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector:\n    app: {name}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
                )?;
            }
        }
        std::fs::write(base.join(format!("apps-{f}.yaml")), text)?;
        writeln!(resources, "- apps-{f}.yaml")?;
    }
    std::fs::write(base.join("kustomization.yaml"), resources)?;
    let overlay = dir.join("overlay");
    std::fs::create_dir_all(&overlay)?;
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources:\n- ../base\nnamespace: bench\nnamePrefix: prod-\ncommonLabels:\n  env: prod\ncommonAnnotations:\n  owner: platform\nimages:\n- name: registry.example/app\n  newTag: \"2.0\"\nconfigMapGenerator:\n- name: settings\n  literals:\n  - MODE=prod\npatches:\n- target:\n    kind: Deployment\n    labelSelector: tier=web\n  patch: |-\n    - op: replace\n      path: /spec/replicas\n      value: 3\n",
    )?;
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Runs the benchmark and prints its figures.
pub fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    write_overlay(dir.path())?;
    let source = DirSource::new(dir.path());
    let options = templates::chart::Options::default();

    let mut ours = Vec::new();
    let mut rendered = String::new();
    let mut count = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let objects = templates::render(&source, "overlay", &options)?.objects;
        rendered = templates::yaml::to_yaml_stream(objects.iter().map(|o| &o.value));
        ours.push(start.elapsed());
        count = objects.len();
    }

    let mut theirs = Vec::new();
    let mut reference = String::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(dir.path().join("overlay"))
            .output()
            .context("running kubectl kustomize (is kubectl installed?)")?;
        theirs.push(start.elapsed());
        if !out.status.success() {
            bail!(
                "kubectl kustomize failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        reference = String::from_utf8(out.stdout)?;
    }

    let (ours, theirs) = (median(ours), median(theirs));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("scenario=render metric=objects value={count} unit=count");
    println!(
        "scenario=render metric=gitplane_p50 value={:.2} unit=ms",
        ms(ours)
    );
    println!(
        "scenario=render metric=kubectl_kustomize_p50 value={:.2} unit=ms",
        ms(theirs)
    );
    println!(
        "scenario=render metric=ratio value={:.4} unit=ratio",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    println!(
        "scenario=render metric=identical_output value={} unit=bool",
        u8::from(rendered == reference)
    );
    Ok(())
}
