//! `gitplane render PATH`: renders a kustomization, a chart or a directory of manifests and
//! prints the objects, as the syncer would apply them.
//!
//! Nothing is printed on stdout unless rendering succeeds, so a failed render never looks like
//! an empty (or partial) set of objects.

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
    /// The directory (kustomization, chart, or manifests) or manifest file to render.
    pub path: PathBuf,
    /// A values file for charts; repeatable, later files win.
    #[arg(long = "values", short = 'f', value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// A chart value, `key.path=value`; repeatable, wins over values files.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
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
        release_name: None,
        namespace: args.namespace.clone(),
        values_files,
        values: Vec::new(),
        set: args.set.clone(),
    };
    let (root, path) = source_root(&args.path)?;
    let rendered = templates::render(&DirSource::new(&root), &path, &options)?;
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
