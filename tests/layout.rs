//! The module layout is a chain of stages with no cycles.
//!
//! Each top-level module of the library is one stage of the data flow
//! (`src/lib.rs`, "# Layout"). A module may use the stages before it in
//! [`STAGES`] and never one after it, so imports run one way and no cycle can
//! form. This test reads every source file, collects each `crate::…` (and
//! `super::…` that leaves its module) reference — in `use` items, in paths
//! and inside macro calls — and fails naming the file and the import when
//! one runs back up the chain, or when a module is missing from the list.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// The stages, in data-flow order: each may depend only on those before it.
const STAGES: &[&str] = &[
    "domain", "config", "event", "store", "hub", "modem", "webhook", "instance", "cluster",
    "service", "auth", "http", "app", "tools",
];

/// A reference from one module to another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file: `src/http/ws/session.rs` is
/// `[http, ws, session]`, `src/http/mod.rs` is `[http]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// Collects the top-level module each `crate::`/`super::` reference lands in.
struct References<'a> {
    module: &'a [String],
    /// (target top-level module, line)
    found: Vec<(String, usize)>,
}

impl References<'_> {
    /// Resolves a path given as its leading segments to a top-level module.
    fn resolve(&mut self, segments: &[String], line: usize) {
        let target = match segments.first().map(String::as_str) {
            Some("crate") => segments.get(1).cloned(),
            Some("super") => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                // A file's own module is its last segment; `super` from a
                // `mod.rs` or a file module starts at its parent.
                let base = self.module.len().saturating_sub(ups);
                if base == 0 {
                    segments.get(ups).cloned()
                } else {
                    self.module.first().cloned()
                }
            }
            _ => None,
        };
        if let Some(target) = target {
            self.found.push((target, line));
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                prefix.push(name.ident.to_string());
                self.resolve(prefix, name.ident.span().start().line);
                prefix.pop();
            }
            syn::UseTree::Rename(rename) => {
                prefix.push(rename.ident.to_string());
                self.resolve(prefix, rename.ident.span().start().line);
                prefix.pop();
            }
            syn::UseTree::Glob(glob) => self.resolve(prefix, glob.star_token.spans[0].start().line),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// `crate :: name` inside macro input (tracing, format, ...).
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(group) => self.tokens(group.stream()),
                TokenTree::Ident(ident) if ident == "crate" => {
                    if let (
                        Some(TokenTree::Punct(a)),
                        Some(TokenTree::Punct(b)),
                        Some(TokenTree::Ident(name)),
                    ) = (trees.get(i + 1), trees.get(i + 2), trees.get(i + 3))
                    {
                        if a.as_char() == ':' && b.as_char() == ':' {
                            self.resolve(
                                &["crate".to_owned(), name.to_string()],
                                ident.span().start().line,
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for References<'_> {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(first) = path.segments.first() {
            self.resolve(&segments, first.ident.span().start().line);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

fn edges() -> Vec<Edge> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = Vec::new();
    for file in files {
        let module = module_path(&src, &file);
        // The binary and the crate root are not stages.
        let Some(top) = module.first().cloned() else {
            continue;
        };
        if top == "main" {
            continue;
        }
        let text = fs::read_to_string(&file).expect("read source");
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut refs = References {
            module: &module,
            found: Vec::new(),
        };
        refs.visit_file(&ast);
        for (to, line) in refs.found {
            if to != top {
                edges.push(Edge {
                    from: top.clone(),
                    to,
                    file: file.strip_prefix(&src).expect("under src").to_owned(),
                    line,
                });
            }
        }
    }
    edges.sort();
    edges.dedup();
    edges
}

#[test]
fn every_module_is_a_named_stage() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let unknown: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_path(&src, f).first().cloned())
        .filter(|m| m != "main" && !STAGES.contains(&m.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "modules missing from STAGES in tests/layout.rs (place each in the data-flow order): {unknown:?}"
    );
}

#[test]
fn imports_run_one_way_along_the_data_flow() {
    let rank: BTreeMap<&str, usize> = STAGES.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let backwards: Vec<String> = edges()
        .into_iter()
        .filter(
            |e| match (rank.get(e.from.as_str()), rank.get(e.to.as_str())) {
                (Some(from), Some(to)) => to > from,
                _ => false,
            },
        )
        .map(|e| {
            format!(
                "src/{}:{}: `{}` uses `{}`, a later stage",
                e.file.display(),
                e.line,
                e.from,
                e.to
            )
        })
        .collect();
    assert!(
        backwards.is_empty(),
        "imports that run back up the chain {STAGES:?}:\n{}",
        backwards.join("\n")
    );
}

#[test]
fn the_module_graph_has_no_cycle() {
    // Independent of the declared order: a cycle is reported even if STAGES
    // were edited to hide it.
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for edge in edges() {
        graph.entry(edge.from).or_default().insert(edge.to);
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}
