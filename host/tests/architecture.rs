//! The layering rules of docs/architecture.md, checked by scanning host/src: a test fails when
//! an import breaks one of them. It reads paths (`crate::x`, the backend crates' names) in
//! code, with comments and string literals removed, so prose may name any module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files under host/src with their top-level module (`api`, `kms`, `pubkey`, ...).
struct Source {
    path: String,
    module: String,
    /// The text without comments and string literals.
    code: String,
    lines: usize,
    raw: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap().to_string_lossy().to_string();
            let first = rel.split('/').next().unwrap();
            let module = first.strip_suffix(".rs").unwrap_or(first).to_string();
            let raw = std::fs::read_to_string(&p).unwrap();
            Source {
                module,
                code: strip(&raw),
                lines: raw.lines().count(),
                raw,
                path: rel,
            }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Removes `//` comments and the contents of string and char literals (good enough for
/// this code base: no raw strings carry module paths).
fn strip(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// The top-level modules a file names as `crate::<module>`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .map(|(i, _)| {
            code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

/// Whether `code` names `word` as a whole identifier that is not a path's later segment
/// (`Error::Store` is a variant, not the `Store` trait).
fn names_type(code: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(word).any(|(i, _)| {
        let before = &code[..i];
        let after = code[i + word.len()..].chars().next();
        !before.ends_with("::")
            && !before.chars().next_back().is_some_and(ident)
            && !after.is_some_and(ident)
    })
}

fn violations(rule: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{rule}:\n  {}", found.join("\n  "));
}

#[test]
fn api_adapts_and_never_reaches_the_store_or_the_hsm() {
    const STORE_TRAITS: [&str; 8] = [
        "Store",
        "KeyStore",
        "DataKeyStore",
        "SecretStore",
        "AccountStore",
        "AuditStore",
        "AlarmStore",
        "MetaStore",
    ];
    let mut found = Vec::new();
    for s in sources().iter().filter(|s| s.module == "api") {
        if crate_refs(&s.code).contains("hsm") {
            found.push(format!("{} imports hsm", s.path));
        }
        for word in STORE_TRAITS {
            if names_type(&s.code, word) {
                found.push(format!("{} names the store trait {word}", s.path));
            }
        }
        if s.code.contains(".store()") {
            found.push(format!("{} calls the store", s.path));
        }
    }
    violations("api/ imports services and record types only", found);
}

#[test]
fn services_and_adapters_never_import_the_front() {
    let inner = [
        "kms",
        "ssm",
        "cam",
        "audit",
        "store",
        "hsm",
        "pubkey",
        "jobs",
        "alarms",
        "integrity",
    ];
    let mut found = Vec::new();
    for s in sources()
        .iter()
        .filter(|s| inner.contains(&s.module.as_str()))
    {
        for m in crate_refs(&s.code) {
            if ["api", "server", "cli"].contains(&m.as_str()) {
                found.push(format!("{} imports {m}", s.path));
            }
        }
    }
    violations("services never import api, server or cli", found);
}

#[test]
fn ssm_reaches_key_material_only_through_kms() {
    let mut found = Vec::new();
    for s in sources().iter().filter(|s| s.module == "ssm") {
        for m in crate_refs(&s.code) {
            if ["hsm", "api"].contains(&m.as_str()) {
                found.push(format!("{} imports {m}", s.path));
            }
        }
        for c in ["keyward_firmware", "keyward_hsm_pkcs11", "aes_gcm", "sm4"] {
            if s.code.contains(&format!("{c}::")) {
                found.push(format!("{} uses {c}", s.path));
            }
        }
    }
    violations("ssm uses kms for key material", found);
}

/// The console acts only through the API front (`api::run_as`), so it can do nothing the
/// signed API would not let the same account do, and nothing escapes the audit log.
#[test]
fn the_console_reaches_services_only_through_the_api() {
    let mut found = Vec::new();
    for s in sources().iter().filter(|s| s.module == "console") {
        for m in crate_refs(&s.code) {
            if !["api", "error", "config", "console"].contains(&m.as_str()) {
                found.push(format!("{} imports {m}", s.path));
            }
        }
        for c in [
            "keyward_firmware",
            "keyward_hsm_pkcs11",
            "rusqlite",
            "postgres",
        ] {
            if s.code.contains(&format!("{c}::")) {
                found.push(format!("{} uses {c}", s.path));
            }
        }
        // Nor through the services the API's state holds.
        for field in ["kms", "ssm", "cam", "audit", "limiter", "jobs", "alarms"] {
            if s.code.contains(&format!("app.{field}")) {
                found.push(format!("{} uses the service AppState::{field}", s.path));
            }
        }
    }
    violations("console imports only api, error and config", found);
}

#[test]
fn the_store_imports_only_error_clock_and_shared() {
    let mut found = Vec::new();
    for s in sources().iter().filter(|s| s.module == "store") {
        for m in crate_refs(&s.code) {
            if !["error", "clock", "store"].contains(&m.as_str()) {
                found.push(format!("{} imports {m}", s.path));
            }
        }
        for c in ["keyward_firmware", "keyward_hsm_pkcs11"] {
            if s.code.contains(&format!("{c}::")) {
                found.push(format!("{} uses {c}", s.path));
            }
        }
    }
    violations("store imports only error, clock and shared", found);
}

#[test]
fn the_module_graph_has_no_circle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources() {
        if s.module == "lib" || s.module == "main" {
            continue;
        }
        let refs = crate_refs(&s.code);
        let out = graph.entry(s.module.clone()).or_default();
        out.extend(refs.into_iter().filter(|m| *m != s.module));
    }
    let cycle = find_cycle(&graph);
    assert!(
        cycle.is_none(),
        "import circle: {}",
        cycle.unwrap().join(" -> ")
    );
    // The checker itself finds a circle when there is one.
    let mut bad = graph.clone();
    bad.entry("store".into()).or_default().insert("kms".into());
    assert!(find_cycle(&bad).is_some());
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in g.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut c = stack[from..].to_vec();
                    c.push(next.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(g, next, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            if let Some(c) = visit(graph, node, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Files stay under about 800 lines and functions under about 100, unless a comment says
/// why (`Long file:` anywhere in the file, `Long function:` just above the function).
#[test]
fn files_and_functions_stay_small_or_say_why() {
    let mut found = Vec::new();
    for s in sources() {
        if s.lines > 800 && !s.raw.contains("Long file:") {
            found.push(format!("{} has {} lines", s.path, s.lines));
        }
        let raw: Vec<&str> = s.raw.lines().collect();
        let code: Vec<&str> = s.code.lines().collect();
        for (i, line) in code.iter().enumerate() {
            if !is_fn_start(line) {
                continue;
            }
            let len = body_len(&code[i..]);
            let said = raw[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let t = l.trim_start();
                    t.starts_with("//") || t.starts_with("#[")
                })
                .any(|l| l.contains("Long function:"));
            if len > 100 && !said {
                found.push(format!("{}:{} is a {len}-line function", s.path, i + 1));
            }
        }
    }
    violations("small files and functions", found);
}

fn is_fn_start(line: &str) -> bool {
    let t = line.trim_start();
    let t = t
        .strip_prefix("pub(crate) ")
        .or_else(|| t.strip_prefix("pub(super) "))
        .or_else(|| t.strip_prefix("pub "))
        .unwrap_or(t);
    let t = t.strip_prefix("const ").unwrap_or(t);
    t.starts_with("fn ") && !line.trim_end().ends_with(';')
}

/// Lines from a function's signature to its closing brace.
fn body_len(lines: &[&str]) -> usize {
    let (mut depth, mut opened) = (0i64, false);
    for (n, l) in lines.iter().enumerate() {
        for c in l.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if opened && depth <= 0 {
            return n + 1;
        }
        if !opened && l.trim_end().ends_with(';') {
            return n + 1;
        }
    }
    lines.len()
}
