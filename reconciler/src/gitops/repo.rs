//! Git sources: a bare mirror per repository under the data dir, revisions resolved to commits,
//! trees read at a commit (never a working copy), and the revert commits of a rollback.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository, Signature};
use templates::source::{Entry, EntryKind, Source, SourceError};

/// Why a Git operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// libgit2 reported an error.
    #[error("{what}: {source}")]
    Git {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: git2::Error,
    },
    /// A file or directory could not be written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The revision names nothing in the repository.
    #[error("revision {0:?} not found in the repository")]
    UnknownRevision(String),
    /// The repository URL is not one gitplane can fetch.
    #[error(
        "unsupported repository URL {0:?}: use a local path, file://, https://, ssh:// or git://"
    )]
    UnsupportedUrl(String),
    /// A rollback found nothing to revert.
    #[error("{0}")]
    Rollback(String),
}

fn git(what: impl Into<String>) -> impl FnOnce(git2::Error) -> RepoError {
    let what = what.into();
    move |source| RepoError::Git { what, source }
}

/// Credentials for a remote, from a Secret the Application names.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// `username` (https; default `git`).
    pub username: Option<String>,
    /// `password` or token (https).
    pub password: Option<String>,
    /// `sshPrivateKey` (ssh).
    pub ssh_private_key: Option<String>,
}

/// The fetch URL for an Application's `repoURL`: local paths become absolute paths.
pub fn fetch_url(repo_url: &str) -> Result<String, RepoError> {
    if let Some(path) = repo_url.strip_prefix("file://") {
        return Ok(path.to_string());
    }
    if repo_url.starts_with("https://")
        || repo_url.starts_with("http://")
        || repo_url.starts_with("ssh://")
        || repo_url.starts_with("git://")
        || repo_url.contains('@') && repo_url.contains(':')
    {
        return Ok(repo_url.to_string());
    }
    if repo_url.contains("://") {
        return Err(RepoError::UnsupportedUrl(repo_url.to_string()));
    }
    let path = Path::new(repo_url);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    Ok(abs.to_string_lossy().into_owned())
}

/// Whether a repository URL is a local path (watched for changes rather than polled).
pub fn local_path(repo_url: &str) -> Option<PathBuf> {
    let url = fetch_url(repo_url).ok()?;
    (!url.contains("://") && !url.contains('@')).then(|| PathBuf::from(url))
}

/// A commit and what a history entry shows of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full SHA.
    pub sha: String,
    /// Author name.
    pub author: String,
    /// Author time, RFC 3339.
    pub time: String,
    /// First line of the message.
    pub message: String,
}

/// A bare mirror of one repository.
pub struct Mirror {
    repo: Repository,
    url: String,
}

impl Mirror {
    /// Opens the mirror of `repo_url` under `dir`, creating it if needed.
    pub fn open(dir: &Path, repo_url: &str) -> Result<Self, RepoError> {
        let url = fetch_url(repo_url)?;
        let name: String = url
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.join(name.trim_matches('_'));
        let repo = match Repository::open_bare(&path) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(&path).map_err(|source| RepoError::Io {
                    what: format!("creating {}", path.display()),
                    source,
                })?;
                Repository::init_bare(&path)
                    .map_err(git(format!("creating mirror {}", path.display())))?
            }
        };
        Ok(Mirror { repo, url })
    }

    /// A second handle on the same mirror, for reading (rendering) without holding the first:
    /// Applications of one repository render in parallel, and one slow render (a huge chart,
    /// a YAML bomb stopped by its budget) does not hold up the others' fetches and renders.
    pub fn reader(&self) -> Result<Self, RepoError> {
        let path = self.repo.path();
        let repo = Repository::open_bare(path)
            .map_err(git(format!("opening mirror {}", path.display())))?;
        Ok(Mirror {
            repo,
            url: self.url.clone(),
        })
    }

    /// Fetches every branch, tag and the remote HEAD.
    pub fn fetch(&self, creds: &Credentials) -> Result<(), RepoError> {
        let mut remote = self
            .repo
            .remote_anonymous(&self.url)
            .map_err(git(format!("remote {}", self.url)))?;
        let mut options = git2::FetchOptions::new();
        options.remote_callbacks(callbacks(creds));
        options.prune(git2::FetchPrune::On);
        options.download_tags(git2::AutotagOption::All);
        remote
            .fetch(
                &[
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                    "+HEAD:refs/gitplane/HEAD",
                ],
                Some(&mut options),
                None,
            )
            .map_err(git(format!("fetching {}", self.url)))
    }

    /// The branch the remote's HEAD points at.
    fn default_branch(&self, creds: &Credentials) -> Result<String, RepoError> {
        let mut remote = self
            .repo
            .remote_anonymous(&self.url)
            .map_err(git(format!("remote {}", self.url)))?;
        remote
            .connect_auth(git2::Direction::Fetch, Some(callbacks(creds)), None)
            .map_err(git(format!("connecting to {}", self.url)))?;
        let name = remote
            .default_branch()
            .map_err(git(format!("default branch of {}", self.url)))?;
        let name = name.as_str().unwrap_or("refs/heads/main").to_string();
        Ok(name.trim_start_matches("refs/heads/").to_string())
    }

    /// Rollback of a remote repository: reverts, in the mirror, every commit of `branch` (empty:
    /// the remote's default branch) after `target`, and pushes the result with `creds`.
    pub fn revert_and_push(
        &self,
        branch: &str,
        target: Oid,
        creds: &Credentials,
    ) -> Result<Oid, RepoError> {
        self.fetch(creds)?;
        let branch = if branch.is_empty() || branch == "HEAD" {
            self.default_branch(creds)?
        } else {
            branch.to_string()
        };
        let branch_ref = format!("refs/heads/{branch}");
        let head = revert_in(&self.repo, &branch_ref, target)?;
        let mut remote = self
            .repo
            .remote_anonymous(&self.url)
            .map_err(git(format!("remote {}", self.url)))?;
        let rejected: std::rc::Rc<std::cell::RefCell<Option<String>>> = Default::default();
        let mut cbs = callbacks(creds);
        let r = rejected.clone();
        cbs.push_update_reference(move |_name, status| {
            if let Some(msg) = status {
                *r.borrow_mut() = Some(msg.to_string());
            }
            Ok(())
        });
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(cbs);
        remote
            .push(&[format!("{branch_ref}:{branch_ref}")], Some(&mut options))
            .map_err(git(format!("pushing the revert to {}", self.url)))?;
        if let Some(msg) = rejected.borrow().clone() {
            return Err(RepoError::Rollback(format!(
                "{} refused the push of {branch_ref}: {msg}",
                self.url
            )));
        }
        Ok(head)
    }

    /// Resolves a branch, tag or commit (empty or `HEAD`: the remote's HEAD) to a commit.
    pub fn resolve(&self, revision: &str) -> Result<Oid, RepoError> {
        let candidates: Vec<String> = match revision {
            "" | "HEAD" => vec!["refs/gitplane/HEAD".into()],
            r => vec![
                format!("refs/heads/{r}"),
                format!("refs/tags/{r}"),
                r.to_string(),
            ],
        };
        for c in &candidates {
            if let Ok(obj) = self.repo.revparse_single(c)
                && let Ok(commit) = obj.peel_to_commit()
            {
                return Ok(commit.id());
            }
        }
        Err(RepoError::UnknownRevision(revision.to_string()))
    }

    /// What a history entry shows of a commit.
    pub fn commit_info(&self, oid: Oid) -> Result<CommitInfo, RepoError> {
        commit_info(&self.repo, oid)
    }

    /// A [`Source`] over the tree of a commit.
    pub fn tree(&self, oid: Oid) -> Result<TreeSource<'_>, RepoError> {
        let commit = self
            .repo
            .find_commit(oid)
            .map_err(git(format!("commit {oid}")))?;
        let tree = commit.tree().map_err(git(format!("tree of {oid}")))?;
        Ok(TreeSource {
            repo: &self.repo,
            tree,
        })
    }

    /// The commits after `from` up to `to` (newest first).
    pub fn commits_between(&self, from: Oid, to: Oid) -> Result<Vec<Oid>, RepoError> {
        commits_between(&self.repo, from, to)
    }

    /// The branches the last fetch brought, by name.
    pub fn branches(&self) -> Result<Vec<String>, RepoError> {
        let refs = self
            .repo
            .references_glob("refs/heads/*")
            .map_err(git(format!("branches of {}", self.url)))?;
        let mut names: Vec<String> = refs
            .filter_map(Result::ok)
            .filter_map(|r| r.shorthand().ok().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }
}

fn callbacks(creds: &Credentials) -> git2::RemoteCallbacks<'static> {
    let mut callbacks = git2::RemoteCallbacks::new();
    let creds = creds.clone();
    callbacks.credentials(move |_url, user, allowed| {
        if allowed.contains(git2::CredentialType::SSH_KEY)
            && let Some(key) = &creds.ssh_private_key
        {
            return git2::Cred::ssh_key_from_memory(user.unwrap_or("git"), None, key, None);
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT)
            && let Some(password) = &creds.password
        {
            let user = creds.username.as_deref().unwrap_or("git");
            return git2::Cred::userpass_plaintext(user, password);
        }
        Err(git2::Error::from_str("no credentials for this repository"))
    });
    callbacks
}

fn commit_info(repo: &Repository, oid: Oid) -> Result<CommitInfo, RepoError> {
    let c = repo
        .find_commit(oid)
        .map_err(git(format!("commit {oid}")))?;
    let author = c.author();
    let time = jiff::Timestamp::from_second(author.when().seconds())
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok(CommitInfo {
        sha: oid.to_string(),
        author: author.name().unwrap_or("").to_string(),
        time,
        message: c.summary().ok().flatten().unwrap_or("").to_string(),
    })
}

fn commits_between(repo: &Repository, from: Oid, to: Oid) -> Result<Vec<Oid>, RepoError> {
    let mut walk = repo.revwalk().map_err(git("history"))?;
    walk.push(to).map_err(git("history"))?;
    walk.hide(from).map_err(git("history"))?;
    walk.collect::<Result<Vec<Oid>, _>>()
        .map_err(git("history"))
}

/// Reads files from a Git tree.
pub struct TreeSource<'r> {
    repo: &'r Repository,
    tree: git2::Tree<'r>,
}

impl TreeSource<'_> {
    fn entry(&self, path: &str) -> Option<git2::TreeEntry<'static>> {
        if path.is_empty() {
            return None;
        }
        self.tree
            .get_path(Path::new(path))
            .ok()
            .map(|e| e.to_owned())
    }
}

/// The largest file a [`TreeSource`] hands to a renderer (Kubernetes objects are at most
/// 1.5 MiB each; a chart's files and a multi-document manifest stay well under this).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Git's file mode of a symbolic link.
const SYMLINK_MODE: i32 = 0o120000;

impl Source for TreeSource<'_> {
    /// Refuses symbolic links (their target is never read) and files over
    /// [`MAX_FILE_BYTES`] (their size is read from the object header, not the content).
    fn read(&self, path: &str) -> Result<Vec<u8>, SourceError> {
        let entry = self
            .entry(path)
            .ok_or_else(|| SourceError::NotFound(path.to_string()))?;
        if entry.filemode() == SYMLINK_MODE {
            return Err(SourceError::Symlink(path.to_string()));
        }
        let size = self
            .repo
            .odb()
            .and_then(|odb| odb.read_header(entry.id()))
            .map(|(size, _)| size as u64)
            .map_err(|_| SourceError::NotFound(path.to_string()))?;
        if size > MAX_FILE_BYTES {
            return Err(SourceError::TooLarge {
                path: path.to_string(),
                size,
                limit: MAX_FILE_BYTES,
            });
        }
        let blob = entry
            .to_object(self.repo)
            .and_then(|o| o.peel_to_blob())
            .map_err(|_| SourceError::NotFound(path.to_string()))?;
        Ok(blob.content().to_vec())
    }

    fn list_dir(&self, path: &str) -> Result<Vec<Entry>, SourceError> {
        let tree = if path.is_empty() {
            self.tree.clone()
        } else {
            self.entry(path)
                .and_then(|e| e.to_object(self.repo).ok())
                .and_then(|o| o.peel_to_tree().ok())
                .ok_or_else(|| SourceError::NotFound(path.to_string()))?
        };
        let mut entries: Vec<Entry> = tree
            .iter()
            .map(|e| Entry {
                name: e.name().unwrap_or("").to_string(),
                is_dir: e.kind() == Some(git2::ObjectType::Tree),
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn kind(&self, path: &str) -> Option<EntryKind> {
        if path.is_empty() {
            return Some(EntryKind::Dir);
        }
        match self.entry(path)?.kind()? {
            git2::ObjectType::Tree => Some(EntryKind::Dir),
            _ => Some(EntryKind::File),
        }
    }
}

/// Reverts, on `branch_ref` of `repo`, every commit after `target` (newest first), one revert
/// commit each; moves the branch and returns its new head. Works on bare repositories too.
fn revert_in(repo: &Repository, branch_ref: &str, target: Oid) -> Result<Oid, RepoError> {
    let head = repo
        .revparse_single(branch_ref)
        .and_then(|o| o.peel_to_commit())
        .map_err(git(format!("resolving {branch_ref}")))?;
    let to_revert = commits_between(repo, target, head.id())?;
    if to_revert.is_empty() {
        return Err(RepoError::Rollback(format!(
            "{branch_ref} is already at {target}; nothing to revert"
        )));
    }
    let sig = repo
        .signature()
        .or_else(|_| Signature::now("gitplane", "gitplane@localhost"))
        .map_err(git("signature"))?;
    let mut tip = head;
    for oid in &to_revert {
        let commit = repo
            .find_commit(*oid)
            .map_err(git(format!("commit {oid}")))?;
        let mut index = repo
            .revert_commit(&commit, &tip, 0, None)
            .map_err(git(format!("reverting {oid}")))?;
        if index.has_conflicts() {
            return Err(RepoError::Rollback(format!(
                "reverting {oid} conflicts with later commits; resolve it by hand"
            )));
        }
        let tree_id = index.write_tree_to(repo).map_err(git("writing tree"))?;
        let tree = repo.find_tree(tree_id).map_err(git("reading tree"))?;
        let message = format!(
            "Revert \"{}\"\n\nThis reverts commit {oid}.\n\nRolled back by gitplane.",
            commit.summary().ok().flatten().unwrap_or("")
        );
        let new = repo
            .commit(None, &sig, &sig, &message, &tree, &[&tip])
            .map_err(git("committing revert"))?;
        tip = repo.find_commit(new).map_err(git("reading revert"))?;
    }
    repo.reference(branch_ref, tip.id(), true, "gitplane rollback")
        .map_err(git(format!("updating {branch_ref}")))?;
    Ok(tip.id())
}

/// Reverts, on `branch` of the local repository at `path` (empty: the checked-out branch),
/// every commit after `target`; returns the new head. A clean working copy of that branch is
/// updated to it; one with changes of its own is left alone.
pub fn revert_to(path: &Path, branch: &str, target: Oid) -> Result<Oid, RepoError> {
    let repo = Repository::open(path).map_err(git(format!("opening {}", path.display())))?;
    let branch_ref = if branch.is_empty() || branch == "HEAD" {
        repo.head()
            .map_err(git("reading HEAD"))?
            .name()
            .unwrap_or("HEAD")
            .to_string()
    } else {
        format!("refs/heads/{branch}")
    };
    let checked_out = repo
        .head()
        .ok()
        .and_then(|h| h.name().ok().map(str::to_string))
        .is_some_and(|h| h == branch_ref);
    let clean = repo.is_bare()
        || repo
            .statuses(None)
            .map(|s| s.iter().all(|e| e.status() == git2::Status::IGNORED))
            .unwrap_or(false);
    let tip = revert_in(&repo, &branch_ref, target)?;
    if checked_out && clean && !repo.is_bare() {
        let mut opts = git2::build::CheckoutBuilder::new();
        opts.force();
        repo.checkout_head(Some(&mut opts))
            .map_err(git("updating the working copy"))?;
    }
    Ok(tip)
}

/// Creates a Git repository at `path` holding `files` in one commit (the playground of
/// `gitplane up`). Does nothing if a repository is already there.
pub fn seed(path: &Path, files: &[(&str, &[u8])], message: &str) -> Result<bool, RepoError> {
    if Repository::open(path).is_ok() {
        return Ok(false);
    }
    let repo = Repository::init(path).map_err(git(format!("creating {}", path.display())))?;
    for (rel, bytes) in files {
        let full = path.join(rel);
        let io = |source: std::io::Error| RepoError::Io {
            what: format!("writing {}", full.display()),
            source,
        };
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&full, bytes).map_err(io)?;
    }
    let mut index = repo.index().map_err(git("index"))?;
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .map_err(git("adding files"))?;
    index.write().map_err(git("writing index"))?;
    let tree_id = index.write_tree().map_err(git("writing tree"))?;
    let tree = repo.find_tree(tree_id).map_err(git("reading tree"))?;
    let sig = repo
        .signature()
        .or_else(|_| Signature::now("gitplane", "gitplane@localhost"))
        .map_err(git("signature"))?;
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &[])
        .map_err(git("committing"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_file(repo: &Repository, path: &str, text: &str, message: &str) -> Oid {
        let root = repo.workdir().expect("workdir");
        std::fs::create_dir_all(root.join(path).parent().expect("parent")).expect("mkdir");
        std::fs::write(root.join(path), text).expect("write");
        let mut index = repo.index().expect("index");
        index.add_path(Path::new(path)).expect("add");
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("tree");
        let sig = Signature::now("Tester", "t@example.com").expect("sig");
        let parents: Vec<git2::Commit> = repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .expect("commit")
    }

    #[test]
    fn a_tree_refuses_symbolic_links_and_files_over_the_limit_by_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let work = dir.path().join("work");
        let repo = Repository::init(&work).expect("init");
        commit_file(&repo, "apps/ok.yaml", "v: 1\n", "first");
        std::os::unix::fs::symlink("/etc/passwd", work.join("apps/passwd.yaml")).expect("link");
        let big = std::fs::File::create(work.join("apps/big.yaml")).expect("big");
        big.set_len(MAX_FILE_BYTES + 1).expect("sparse file");
        let mut index = repo.index().expect("index");
        index
            .add_path(Path::new("apps/passwd.yaml"))
            .expect("add link");
        index.add_path(Path::new("apps/big.yaml")).expect("add big");
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("tree");
        let sig = Signature::now("Tester", "t@example.com").expect("sig");
        let head = repo.head().and_then(|h| h.peel_to_commit()).expect("head");
        let oid = repo
            .commit(Some("HEAD"), &sig, &sig, "hostile", &tree, &[&head])
            .expect("commit");
        let mirror = Mirror::open(&dir.path().join("mirrors"), work.to_str().expect("utf8"))
            .expect("mirror");
        mirror.fetch(&Credentials::default()).expect("fetch");
        let source = mirror.tree(oid).expect("tree");
        assert_eq!(source.read("apps/ok.yaml").expect("ok"), b"v: 1\n");
        let link = source.read("apps/passwd.yaml").expect_err("a link");
        assert_eq!(
            link.to_string(),
            "apps/passwd.yaml: is a symbolic link; links are not followed"
        );
        let big = source.read("apps/big.yaml").expect_err("too large");
        assert!(
            big.to_string()
                .starts_with("apps/big.yaml: 16777217 bytes, more than the 16777216"),
            "{big}"
        );
    }

    #[test]
    fn a_mirror_reads_trees_at_commits_and_reverts_roll_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let work = dir.path().join("work");
        let repo = Repository::init(&work).expect("init");
        let first = commit_file(&repo, "apps/a.yaml", "v: 1\n", "first");
        let second = commit_file(&repo, "apps/a.yaml", "v: 2\n", "second");
        std::fs::write(work.join("apps/a.yaml"), "v: dirty\n").expect("dirty");

        let mirror = Mirror::open(&dir.path().join("mirrors"), work.to_str().expect("utf8"))
            .expect("mirror");
        mirror.fetch(&Credentials::default()).expect("fetch");
        assert_eq!(mirror.resolve("").expect("head"), second);
        assert_eq!(mirror.resolve(&first.to_string()).expect("sha"), first);
        assert!(matches!(
            mirror.resolve("nope"),
            Err(RepoError::UnknownRevision(_))
        ));
        let tree = mirror.tree(second).expect("tree");
        assert_eq!(
            tree.read("apps/a.yaml").expect("read"),
            b"v: 2\n",
            "the commit, not the working copy"
        );
        assert_eq!(tree.list_dir("apps").expect("ls")[0].name, "a.yaml");
        assert_eq!(tree.kind("apps"), Some(EntryKind::Dir));
        assert!(tree.read("missing.yaml").is_err());
        assert_eq!(mirror.commit_info(second).expect("info").message, "second");

        std::fs::write(work.join("apps/a.yaml"), "v: 2\n").expect("clean");
        let reverted = revert_to(&work, "", first).expect("revert");
        mirror.fetch(&Credentials::default()).expect("fetch");
        assert_eq!(mirror.resolve("").expect("head"), reverted);
        assert_eq!(
            mirror
                .tree(reverted)
                .expect("tree")
                .read("apps/a.yaml")
                .expect("read"),
            b"v: 1\n"
        );
        assert!(
            mirror
                .commit_info(reverted)
                .expect("info")
                .message
                .starts_with("Revert \"second\"")
        );
        assert_eq!(
            std::fs::read_to_string(work.join("apps/a.yaml")).expect("read"),
            "v: 1\n"
        );
    }
}
