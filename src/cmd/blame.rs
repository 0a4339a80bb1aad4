//! `gitplane blame KIND/NAME [-n NS]`: which commit, author and file:line made a live object
//! look the way it does.

use anyhow::{Context, bail};
use apimachinery::application::{ANNOTATION_APP, ANNOTATION_REVISION, ANNOTATION_SOURCE};
use kube::api::{Api, DynamicObject};
use kube::discovery::{Discovery, Scope};
use reconciler::gitops::repo::Mirror;
use reconciler::gitops::syncer::application_resource;
use serde_json::Value;

use super::connect::ClientArgs;

/// Flags of `gitplane blame`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The object, as `kind/name` (`deployment/web`, `deploy/web`, `configmap/settings`).
    object: String,
    /// Namespace of the object.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    kube: ClientArgs,
}

/// Prints the object's app, commit, author, date, message and file:line.
pub fn run(args: Args) -> anyhow::Result<u8> {
    super::server::block_on(async move {
        let Some((kind, name)) = args.object.split_once('/') else {
            bail!("{:?}: expected KIND/NAME, e.g. deployment/web", args.object);
        };
        let client = args.kube.client().await?;
        let discovery = Discovery::new(client.clone()).run().await?;
        let wanted = kind.to_lowercase();
        let found = discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .find(|(ar, _)| {
                ar.kind.to_lowercase() == wanted
                    || ar.plural == wanted
                    || ar.plural.trim_end_matches('s') == wanted
            });
        let Some((ar, caps)) = found.or_else(|| {
            // Short names are not in discovery's ApiResource; try the common ones.
            let long = match wanted.as_str() {
                "deploy" => "deployment",
                "cm" => "configmap",
                "svc" => "service",
                "sa" => "serviceaccount",
                "ns" => "namespace",
                "sts" => "statefulset",
                "ds" => "daemonset",
                "cj" => "cronjob",
                _ => return None,
            };
            discovery
                .groups()
                .flat_map(|g| g.recommended_resources())
                .find(|(ar, _)| ar.kind.to_lowercase() == long)
        }) else {
            bail!("unknown kind {kind:?}");
        };
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            Api::namespaced_with(client.clone(), &args.namespace, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let obj = api
            .get(name)
            .await
            .with_context(|| format!("{} {name:?}", ar.kind))?;
        let annotations = obj.metadata.annotations.clone().unwrap_or_default();
        let (Some(app), Some(revision)) = (
            annotations.get(ANNOTATION_APP),
            annotations.get(ANNOTATION_REVISION),
        ) else {
            bail!(
                "{} {name:?} is not managed by any Application (no {ANNOTATION_APP} annotation)",
                ar.kind
            );
        };
        let source = annotations
            .get(ANNOTATION_SOURCE)
            .cloned()
            .unwrap_or_default();
        println!("object:   {}/{name}", ar.kind);
        println!("app:      {app}");
        println!("source:   {source}");
        println!("commit:   {revision}");
        let apps: Api<DynamicObject> = Api::all_with(client, &application_resource());
        let app_obj = serde_json::to_value(apps.get(app).await?)?;
        let repo_url = app_obj
            .pointer("/spec/source/repoURL")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mirrors = args
            .kube
            .kubeconfig
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("repos");
        let info = Mirror::open(&mirrors, repo_url).ok().and_then(|m| {
            git2::Oid::from_str(revision)
                .ok()
                .and_then(|o| m.commit_info(o).ok())
        });
        match info {
            Some(i) => {
                println!("author:   {}", i.author);
                println!("date:     {}", i.time);
                println!("message:  {}", i.message);
            }
            None => println!(
                "(commit details unavailable: the repository mirror is not on this machine)"
            ),
        }
        Ok(0)
    })?
}
