//! `gitplane render PATH`: renders a kustomization, a chart or a directory of manifests and
//! prints the objects, as the syncer would apply them.
//!
//! Nothing is printed on stdout unless rendering succeeds, so a failed render never looks like
//! an empty (or partial) set of objects.
//!
//! A Helm chart (`Chart.yaml` with `apiVersion`) takes `helm template`'s inputs and prints
//! exactly helm's stream; its errors exit 2 with the chart file and line on stderr.

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use templates::chart::{Options, ValuesFile};
use templates::source::DirSource;

/// How the objects are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A YAML stream, `---` between objects (as `kubectl kustomize` prints).
    Yaml,
    /// One JSON `List` holding the objects.
    Json,
}

/// Flags of `gitplane render`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The directory (kustomization, chart, or manifests), packaged Helm chart (`.tgz`) or
    /// manifest file to render.
    pub path: PathBuf,
    /// A values file for charts; repeatable, later files win.
    #[arg(long = "values", short = 'f', value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// A chart value, `key.path=value`; repeatable, wins over values files.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A Helm chart value kept a string, `key.path=value`; repeatable.
    #[arg(long = "set-string", value_name = "KEY=VALUE")]
    pub set_string: Vec<String>,
    /// A Helm chart value read from a file, `key.path=FILE`; repeatable.
    #[arg(long = "set-file", value_name = "KEY=FILE")]
    pub set_file: Vec<String>,
    /// The release name of a chart (helm's `release-name` when absent).
    #[arg(long = "release-name")]
    pub release_name: Option<String>,
    /// The Kubernetes version `.Capabilities.KubeVersion` reports (Helm charts; v1.32.0).
    #[arg(long = "kube-version")]
    pub kube_version: Option<String>,
    /// An API version `.Capabilities.APIVersions.Has` admits, beyond helm's defaults;
    /// repeatable (Helm charts).
    #[arg(long = "api-versions", value_name = "GROUP/VERSION[/KIND]")]
    pub api_versions: Vec<String>,
    /// Print the chart's `crds/` files first (Helm charts).
    #[arg(long = "include-crds")]
    pub include_crds: bool,
    /// Leave out test hooks (Helm charts).
    #[arg(long = "skip-tests")]
    pub skip_tests: bool,
    /// The namespace of a chart's release.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "yaml")]
    pub output: Format,
}

/// The directory renderers may read: the enclosing Git work tree, else the current directory
/// when it contains the path, else the filesystem root. Returns it and the path within it.
fn source_root(path: &Path) -> anyhow::Result<(PathBuf, String)> {
    let absolute = std::fs::canonicalize(path)
        .with_context(|| format!("{}: no such file or directory", path.display()))?;
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|d| std::fs::canonicalize(d).ok());
    let root = absolute
        .ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
        .or_else(|| cwd.filter(|c| absolute.starts_with(c)))
        .unwrap_or_else(|| PathBuf::from("/"));
    let relative = absolute
        .strip_prefix(&root)
        .unwrap_or(&absolute)
        .to_string_lossy()
        .into_owned();
    Ok((root, relative))
}

/// Renders a Helm chart as `helm template`: its stream on stdout, or its error on stderr and
/// exit code 2.
fn helm(args: &Args, source: &DirSource, path: &str, options: &Options) -> anyhow::Result<u8> {
    let mut set_file = Vec::new();
    for expr in &args.set_file {
        let Some((key, file)) = expr.split_once('=') else {
            eprintln!("Error: --set-file {expr}: want KEY=FILE");
            return Ok(2);
        };
        match std::fs::read_to_string(file) {
            Ok(text) => set_file.push((key.to_string(), text)),
            Err(e) => {
                eprintln!("Error: --set-file {expr}: {file}: {e}");
                return Ok(2);
            }
        }
    }
    let settings = templates::helm::Settings {
        kube_version: args.kube_version.clone(),
        api_versions: args.api_versions.clone(),
        include_crds: args.include_crds,
        skip_tests: args.skip_tests,
        set_string: args.set_string.clone(),
        set_file,
    };
    let rendered = if path.ends_with(".tgz") {
        templates::helm::render_archive(source, path, options, &settings)
    } else {
        templates::helm::render(source, path, options, &settings)
    };
    match rendered {
        Ok(out) => {
            std::io::stdout()
                .lock()
                .write_all(out.stream().as_bytes())
                .context("writing to stdout")?;
            Ok(0)
        }
        Err(e) => {
            eprintln!("Error: {e}");
            Ok(2)
        }
    }
}

/// Renders and prints; the exit code is 0 (errors are returned).
pub fn run(args: Args) -> anyhow::Result<u8> {
    let mut values_files = Vec::new();
    for file in &args.values {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("{}: cannot read values file", file.display()))?;
        values_files.push(ValuesFile {
            name: file.display().to_string(),
            text,
        });
    }
    let options = Options {
        release_name: args.release_name.clone(),
        namespace: args.namespace.clone(),
        values_files,
        values: Vec::new(),
        set: args.set.clone(),
    };
    let (root, path) = source_root(&args.path)?;
    let source = DirSource::new(&root);
    let packaged =
        path.ends_with(".tgz") && templates::detect(&source, &path) == templates::Kind::HelmChart;
    if (packaged || templates::helm::is_helm_chart(&source, &path)) && args.output == Format::Yaml {
        return helm(&args, &source, &path, &options);
    }
    let rendered = templates::render(&source, &path, &options)?;
    for d in &rendered.diagnostics {
        eprintln!("warning: {d}");
    }
    let objects = rendered.objects;
    let text = match args.output {
        Format::Yaml => templates::yaml::to_yaml_stream(objects.iter().map(|o| &o.value)),
        Format::Json => {
            let items: Vec<_> = objects.into_iter().map(|o| o.value).collect();
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            format!("{}\n", serde_json::to_string_pretty(&list)?)
        }
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(0)
}
