//! Embeds `examples-repo/` in the binary, so `gitplane up` can seed its playground repository
//! wherever the binary runs.

use std::path::Path;

fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, root, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join("examples-repo");
    println!("cargo:rerun-if-changed=examples-repo");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    let mut code = String::from(
        "/// The files of `examples-repo/`: (path, contents).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for f in &files {
        code.push_str(&format!(
            "    ({f:?}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/examples-repo/\", {f:?}))),\n"
        ));
    }
    code.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("examples.rs");
    // A new file renamed into place, never a rewrite of the old one: target dirs copied with
    // hard links (`cp -al`) share the old file's inode with other checkouts.
    let tmp = out.with_extension("rs.tmp");
    std::fs::write(&tmp, code).expect("write examples.rs");
    std::fs::rename(&tmp, &out).expect("rename examples.rs");
    order_text();
}

/// Links the functions that an idle `gitplane up` runs next to each other (release builds with
/// rust-lld, the default linker of x86_64 Linux): the kernel maps a binary's code into a process
/// 64 KiB around each page it touches, so the ~16 MB of functions that start-up and an idle
/// control plane run, scattered over 58 MB of code, cost 45 MB of RSS. The list is
/// `link/gitplane.order`, written by `scripts/text-order.sh` (ARCHITECTURE.md, *Memory of an
/// idle `up`*); names it lacks or that no longer exist only cost memory, never correctness.
fn order_text() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let order = Path::new(&manifest).join("link/gitplane.order");
    println!("cargo:rerun-if-changed=link/gitplane.order");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let lld_target = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    if release && lld_target && order.exists() {
        println!(
            "cargo:rustc-link-arg-bin=gitplane=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=gitplane=-Wl,--no-warn-symbol-ordering");
    }
}
