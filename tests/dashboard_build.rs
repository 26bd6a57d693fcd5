//! The committed dashboard build (`dashboard/dist`) was made from the
//! committed sources: `npm run build` records the SHA-256 of its sources in
//! `dist/SOURCES.sha256`, and this computes the same hash the same way
//! (`dashboard/scripts/source-hash.mjs` says how). A change to the app that
//! was not rebuilt fails here, without Node.js; `scripts/test.sh` also
//! rebuilds the app and compares the files themselves.

use std::{
    fs,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

/// The files a build is made from, besides everything under `src/` and
/// `public/`.
const FILES: &[&str] = &[
    "index.html",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "vite.config.ts",
];
const DIRS: &[&str] = &["src", "public"];

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let relative = path.strip_prefix(root).expect("under the root");
            let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
            out.push(parts.join("/"));
        }
    }
}

/// Each file in order of path, as `<path>\0<length>\0<bytes>`.
fn source_hash(root: &Path) -> String {
    let mut files: Vec<String> = FILES.iter().map(|f| (*f).to_owned()).collect();
    for dir in DIRS {
        walk(root, &root.join(dir), &mut files);
    }
    // Node sorts by UTF-16 code units; the names here are ASCII, where
    // that is byte order.
    files.sort();
    let mut hash = Sha256::new();
    for file in &files {
        let bytes = fs::read(root.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
        hash.update(format!("{file}\0{}\0", bytes.len()).as_bytes());
        hash.update(&bytes);
    }
    hex::encode(hash.finalize())
}

fn dashboard() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard")
}

#[test]
fn the_committed_dashboard_build_was_made_from_the_committed_sources() {
    let root = dashboard();
    let recorded = fs::read_to_string(root.join("dist/SOURCES.sha256"))
        .expect("dashboard/dist/SOURCES.sha256: build the dashboard with `npm run build`");
    assert_eq!(
        recorded.trim(),
        source_hash(&root),
        "dashboard/dist is stale: run `npm ci && npm run build` in dashboard/ and commit dist/"
    );
}

#[test]
fn any_change_to_a_source_changes_the_hash() {
    let copy = tempfile::tempdir().expect("a temporary directory");
    let root = dashboard();
    for file in FILES {
        fs::copy(root.join(file), copy.path().join(file)).expect("copy a file");
    }
    for dir in DIRS {
        let mut files = Vec::new();
        walk(&root, &root.join(dir), &mut files);
        for file in files {
            let to = copy.path().join(&file);
            fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
            fs::copy(root.join(&file), to).expect("copy a file");
        }
    }
    let before = source_hash(copy.path());
    assert_eq!(before, source_hash(&root), "a copy hashes the same");
    let main = copy.path().join("src/main.tsx");
    let mut text = fs::read_to_string(&main).expect("main.tsx");
    text.push_str("\n// changed\n");
    fs::write(&main, text).expect("write");
    assert_ne!(source_hash(copy.path()), before, "an edit");
    fs::write(copy.path().join("src/extra.ts"), "").expect("write");
    let with_extra = source_hash(copy.path());
    fs::remove_file(copy.path().join("src/extra.ts")).expect("remove");
    assert_ne!(
        with_extra,
        source_hash(copy.path()),
        "a new file, even empty"
    );
}
