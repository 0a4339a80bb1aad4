//! The `render-helm` benchmark: the shared Helm charts (`shared/fixtures/helm`, success cases)
//! rendered by `gitplane render` and by `helm template`, both as processes with the same
//! arguments, in the same run; prints both medians per full pass and their ratio (target
//! ≤ 0.5), and whether every output was identical.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

/// The shared cases: `shared/fixtures/helm` above the current directory or the source tree.
fn cases_dir() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for start in [cwd.as_path(), manifest.as_path()] {
        for dir in start.ancestors() {
            let candidate = dir.join("shared/fixtures/helm");
            if candidate.is_dir() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "shared/fixtures/helm not found above {} or {}",
        cwd.display(),
        manifest.display()
    )
}

/// The success cases and their `helm` arguments (from each case's `cmd`).
fn cases(root: &Path) -> anyhow::Result<Vec<(PathBuf, Vec<String>)>> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.yaml").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let cmd = std::fs::read_to_string(dir.join("cmd"))?;
        out.push((dir, cmd.split_whitespace().map(str::to_string).collect()));
    }
    Ok(out)
}

/// `helm template REL CHART FLAGS…` as `gitplane render CHART --release-name REL FLAGS…`.
fn gitplane_args(helm: &[String]) -> Vec<String> {
    let mut args = vec![
        "render".to_string(),
        helm[2].clone(),
        "--release-name".into(),
        helm[1].clone(),
    ];
    args.extend(helm[3..].iter().cloned());
    args
}

fn time_pass(
    program: &Path,
    cases: &[(PathBuf, Vec<String>)],
    gitplane: bool,
) -> anyhow::Result<(Duration, Vec<String>)> {
    let mut outputs = Vec::new();
    let start = Instant::now();
    for (dir, helm_args) in cases {
        let args = if gitplane {
            gitplane_args(helm_args)
        } else {
            helm_args.clone()
        };
        let out = Command::new(program)
            .args(&args)
            .current_dir(dir)
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed in {}: {}",
                program.display(),
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Ok((start.elapsed(), outputs))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs the benchmark and prints its figures.
pub fn run() -> anyhow::Result<()> {
    let root = cases_dir()?;
    let cases = cases(&root)?;
    let exe = std::env::current_exe()?;
    let helm = PathBuf::from("helm");
    if Command::new(&helm).arg("version").output().is_err() {
        bail!(
            "helm is not installed: install helm v3.17.2 (https://github.com/helm/helm/releases/tag/v3.17.2)"
        );
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut identical = true;
    for _ in 0..RUNS {
        let (t, a) = time_pass(&exe, &cases, true)?;
        ours.push(t);
        let (t, b) = time_pass(&helm, &cases, false)?;
        theirs.push(t);
        identical &= a == b;
    }
    let (ours, theirs) = (median(ours), median(theirs));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "scenario=render-helm metric=charts value={} unit=count",
        cases.len()
    );
    println!(
        "scenario=render-helm metric=gitplane_p50 value={:.2} unit=ms",
        ms(ours)
    );
    println!(
        "scenario=render-helm metric=helm_template_p50 value={:.2} unit=ms",
        ms(theirs)
    );
    println!(
        "scenario=render-helm metric=ratio value={:.4} unit=ratio",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    println!(
        "scenario=render-helm metric=identical_output value={} unit=bool",
        u8::from(identical)
    );
    Ok(())
}
