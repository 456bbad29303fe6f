//! The modules of this crate must import each other in a DAG.
//!
//! Why: the crate used to have import circles (`asym` <-> the crate root <-> `error`), which
//! made it impossible to read or move one module without the others. This test reads
//! `src/*.rs` and builds the graph "module A mentions `crate::B`" (in `use` declarations and
//! in paths inside code alike), then fails on any cycle.
//!
//! Rules the graph encodes:
//!
//! * `crate::x::…` (also `crate::{x, …}` and `super::x::…` from a file module) is an edge to
//!   module `x`; `crate::Item` for an item that is not a module is an edge to the crate root
//!   (`lib`), because it goes through the root's re-exports. The root re-exports from every
//!   module, so importing from `crate::` directly always closes a cycle: import from the
//!   defining module instead.
//! * `super::` inside an inline module (`mod tests { use super::*; }`) refers to the same
//!   file and is not an edge.
//! * `mod x;` declarations are ownership, not imports, and are not edges.
//!
//! The scan is textual, not a Rust parser: comments and the contents of string and char
//! literals are blanked first, then paths are read. It assumes all modules are files directly
//! in `src/` (it fails if a subdirectory appears, rather than silently ignoring it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ROOT: &str = "lib";

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn module_imports_form_a_dag() {
    let graph = graph_of(&crate_sources());
    // Guard against a scanner that silently finds nothing.
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(
        graph.len() >= 5 && edges >= 10,
        "scanner found too little ({} modules, {edges} edges): {graph:#?}",
        graph.len()
    );
    assert!(
        !graph[ROOT].is_empty(),
        "the crate root re-exports from its modules; the scanner should see that"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "module import cycle: {}\nfull graph: {graph:#?}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn kind_is_at_the_bottom() {
    // kind.rs holds AsymKind, which error.rs needs for Error::WrongKeyKind; everything else
    // builds on both. It imports nothing from its siblings.
    let graph = graph_of(&crate_sources());
    assert_eq!(
        graph["kind"],
        BTreeSet::new(),
        "kind.rs must not import siblings"
    );
}

/// The checker itself: it must see cycles through `use` groups spanning lines, through the
/// crate root and through `super::`, and must not be fooled by comments, strings or test
/// modules.
#[test]
fn checker_finds_cycles_and_ignores_non_imports() {
    let src = |files: &[(&str, &str)]| -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(m, s)| (m.to_string(), s.to_string()))
            .collect()
    };
    let acyclic = src(&[
        ("lib", "mod a;\nmod b;\npub use crate::a::A;\n"),
        (
            "a",
            "use crate::{\n    b::{self, B},\n};\n// use crate::lib_thing; crate::a\n",
        ),
        (
            "b",
            "/// crate::a\nconst S: &str = \"crate::a::x\";\nconst C: char = '{';\n\
             #[cfg(test)]\nmod tests {\n    use super::*;\n    use super::S;\n}\n",
        ),
    ]);
    let g = graph_of(&acyclic);
    assert_eq!(g["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(g["b"], BTreeSet::new());
    assert_eq!(find_cycle(&g), None);

    let through_group = src(&[
        ("a", "use crate::{\n    b::B,\n};\n"),
        ("b", "fn f() { crate::a::g() }\n"),
    ]);
    assert!(find_cycle(&graph_of(&through_group)).is_some());

    let through_root = src(&[
        ("lib", "pub use crate::a::A;\n"),
        ("a", "use crate::Error;\n"),
    ]);
    assert!(find_cycle(&graph_of(&through_root)).is_some());

    let through_super = src(&[
        ("a", "use super::b::B;\n"),
        ("b", "mod tests {\n    use super::super::a::A;\n}\n"),
    ]);
    assert!(find_cycle(&graph_of(&through_super)).is_some());
}

/// Module name (file stem) -> source text, for every `src/*.rs`.
fn crate_sources() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        assert!(
            !path.is_dir(),
            "{} is a directory; extend tests/module_deps.rs to nested modules",
            path.display()
        );
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("read source");
            out.insert(stem, text);
        }
    }
    out
}

fn graph_of(sources: &BTreeMap<String, String>) -> Graph {
    let modules: BTreeSet<&str> = sources.keys().map(String::as_str).collect();
    sources
        .iter()
        .map(|(m, text)| {
            let mut deps = edges(&blank_non_code(text), &modules);
            deps.remove(m);
            (m.clone(), deps)
        })
        .collect()
}

/// Targets of the `crate::` / `super::` paths in `code` (already blanked by
/// [`blank_non_code`]).
fn edges(code: &str, modules: &BTreeSet<&str>) -> BTreeSet<String> {
    let bytes = code.as_bytes();
    let mut out = BTreeSet::new();
    // Brace depths at which inline `mod x {` blocks opened.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = i == 0 || !is_ident(bytes[i - 1]);
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if inline_mods.last() == Some(&depth) {
                    inline_mods.pop();
                }
            }
            _ if at_word_start && bytes[i..].starts_with(b"mod ") => {
                let rest = code[i + 4..].trim_start();
                let after_name = rest.trim_start_matches(|c: char| is_ident(c as u8));
                if after_name.trim_start().starts_with('{') {
                    inline_mods.push(depth);
                }
            }
            _ if at_word_start && bytes[i..].starts_with(b"crate::") => {
                i += "crate::".len();
                out.extend(path_heads(&code[i..], modules));
                continue;
            }
            _ if at_word_start && bytes[i..].starts_with(b"super::") => {
                let mut supers = 0;
                while bytes[i..].starts_with(b"super::") {
                    supers += 1;
                    i += "super::".len();
                }
                // Within the same file: not an edge. One level more: the crate root.
                if supers == inline_mods.len() + 1 {
                    out.extend(path_heads(&code[i..], modules));
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// What `rest` (the text after `crate::`) names: the module for each first path segment, or
/// the crate root for an item that is not a module. Handles `{a, b::{c, d}}` groups.
fn path_heads(rest: &str, modules: &BTreeSet<&str>) -> Vec<String> {
    let resolve = |seg: &str| {
        let name: String = seg
            .trim_start()
            .chars()
            .take_while(|&c| is_ident(c as u8))
            .collect();
        if modules.contains(name.as_str()) {
            name
        } else {
            ROOT.to_owned()
        }
    };
    let rest = rest.trim_start();
    let Some(group) = rest.strip_prefix('{') else {
        return vec![resolve(rest)];
    };
    // Split the group's top level at commas; nested groups belong to their head segment.
    let mut heads = Vec::new();
    let (mut level, mut start) = (0usize, 0usize);
    for (j, c) in group.char_indices() {
        match c {
            '{' => level += 1,
            '}' if level == 0 => {
                heads.push(&group[start..j]);
                break;
            }
            '}' => level -= 1,
            ',' if level == 0 => {
                heads.push(&group[start..j]);
                start = j + 1;
            }
            _ => {}
        }
    }
    heads
        .into_iter()
        .filter(|h| !h.trim().is_empty())
        .map(resolve)
        .collect()
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `src` with comments and the contents of string and char literals replaced by spaces
/// (newlines kept), so that only code is scanned for paths and braces.
fn blank_non_code(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        let prev_ident = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut level = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    level += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    level -= 1;
                    i += 2;
                    if level == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r' && !prev_ident && matches!(next, Some('"' | '#')) {
            // Raw string r"…" / r#"…"#: ends at a quote followed by as many '#'.
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            i = j + 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            i += 1;
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // A char literal ('x' or '\n', '\u{..}'); a lone ' is a lifetime, left alone.
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Some cycle as `[a, b, …, a]`, or `None` for a DAG.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnPath,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::OnPath);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::Unvisited) {
                Mark::OnPath => {
                    let from = path.iter().position(|n| n == next).unwrap();
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::Unvisited => {
                    if let Some(cycle) = visit(next, graph, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::Unvisited) == Mark::Unvisited {
            if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}
