//! The crate's layering, checked from its source: every module may import only modules
//! declared before it among its siblings (the order of the `mod` lines in `lib.rs` and in
//! each module's own file), its own parts, and what its owners define. Both `use` lines
//! and inline `crate::` / `super::` paths count; comments and string literals do not.

use std::collections::BTreeMap;
use std::path::Path;

/// A module's path from the crate root, e.g. `["sim", "world"]`.
type ModPath = Vec<String>;

/// One import that points up: the file, the path as written, and why it is refused.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    path: String,
    why: String,
}

/// The crate's source: each file's module path, its text, and its name for messages.
struct Tree {
    files: Vec<(ModPath, String, String)>,
}

impl Tree {
    fn read(src: &Path) -> Tree {
        let mut files = Vec::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src/ reads") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path.strip_prefix(src).unwrap().to_string_lossy().replace('\\', "/");
                    if rel == "main.rs" {
                        continue;
                    }
                    let text = std::fs::read_to_string(&path).expect("source reads");
                    files.push((module_of(&rel), text, format!("src/{rel}")));
                }
            }
        }
        files.sort();
        Tree { files }
    }

    fn of(files: &[(&str, &str)]) -> Tree {
        Tree { files: files.iter().map(|(rel, text)| (module_of(rel), text.to_string(), format!("src/{rel}"))).collect() }
    }

    /// Every import against the order, in file order.
    fn violations(&self) -> Vec<Violation> {
        // The written order: each module's file-declared children, as they appear.
        let mut order: BTreeMap<ModPath, Vec<String>> = BTreeMap::new();
        for (module, text, _) in &self.files {
            order.insert(module.clone(), declared_children(&blank_comments_and_strings(text)));
        }
        let known: Vec<&ModPath> = self.files.iter().map(|(m, _, _)| m).collect();
        let mut out = Vec::new();
        for (module, text, name) in &self.files {
            let code = blank_comments_and_strings(text);
            let inline = inline_module_spans(&code);
            for (offset, written, segments, from_super) in paths(&code) {
                // Inside an inline `mod tests { .. }`, `super` is the file's own module.
                let depth = inline.iter().filter(|(a, b)| *a <= offset && offset < *b).count();
                let target: ModPath = if from_super == 0 {
                    segments
                } else {
                    let ups = from_super.saturating_sub(depth);
                    if ups > module.len() {
                        continue;
                    }
                    let mut t = module[..module.len() - ups].to_vec();
                    t.extend(segments);
                    t
                };
                // The module the path lands in: its longest prefix that is a module.
                let landed = (0..=target.len()).rev().map(|n| target[..n].to_vec()).find(|p| known.contains(&p)).unwrap_or_default();
                if landed.starts_with(module) || module.starts_with(&landed) {
                    continue; // its own parts, or what its owners define
                }
                let common = module.iter().zip(&landed).take_while(|(a, b)| a == b).count();
                let (importer, imported) = (&module[common], &landed[common]);
                let siblings = &order[&module[..common].to_vec()];
                let rank = |name: &String| siblings.iter().position(|s| s == name);
                let why = match (rank(importer), rank(imported)) {
                    (Some(a), Some(b)) if b < a => continue,
                    (Some(_), Some(_)) => {
                        format!("`{imported}` stands above `{importer}` in the order of {}", owner_name(&module[..common]))
                    }
                    _ => format!("`{importer}` or `{imported}` is not declared in {}", owner_name(&module[..common])),
                };
                let line = code[..offset].matches('\n').count() + 1;
                out.push(Violation { file: name.clone(), line, path: written, why });
            }
        }
        out
    }
}

fn owner_name(path: &[String]) -> String {
    if path.is_empty() {
        "lib.rs".into()
    } else {
        format!("`{}`", path.join("::"))
    }
}

fn module_of(rel: &str) -> ModPath {
    let rel = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod") | Some("lib")) {
        parts.pop();
    }
    parts
}

/// `mod name;` lines (any visibility), in order; inline modules are parts of the file.
fn declared_children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("pub ").or_else(|| l.strip_prefix("pub(crate) ")).unwrap_or(l);
            rest.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')).map(|n| n.trim().to_string())
        })
        .collect()
}

/// The byte ranges of inline `mod name { .. }` blocks.
fn inline_module_spans(code: &str) -> Vec<(usize, usize)> {
    let bytes = code.as_bytes();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("mod ") {
        let start = from + at;
        from = start + 4;
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let rest = &code[from..];
        let name_len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let after = rest[name_len..].trim_start();
        if name_len == 0 || !after.starts_with('{') {
            continue;
        }
        let open = from + name_len + (rest[name_len..].len() - after.len());
        let mut depth = 0usize;
        for (i, b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        spans.push((open, i));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    spans
}

/// Every `crate::..` and `super::..` path: (offset, as written, segments after the
/// `crate`/`super`s, how many `super`s). A group `crate::a::{b, c::d}` gives each member.
fn paths(code: &str) -> Vec<(usize, String, Vec<String>, usize)> {
    let bytes = code.as_bytes();
    let ident = |i: usize| -> (String, usize) {
        let rest = &code[i..];
        let n = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        (rest[..n].to_string(), i + n)
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':');
        let head = if code[i..].starts_with("crate::") && starts_word {
            Some(0)
        } else if code[i..].starts_with("super::") && starts_word {
            Some(1)
        } else {
            None
        };
        let Some(first_super) = head else {
            i += 1;
            continue;
        };
        let start = i;
        let mut supers = first_super;
        let mut j = i + 7;
        while code[j..].starts_with("super::") {
            supers += 1;
            j += 7;
        }
        let mut segments = Vec::new();
        let mut groups = Vec::new();
        loop {
            if bytes.get(j) == Some(&b'{') {
                // A group: each member's leading segments.
                let close = code[j..].find('}').map(|c| j + c).unwrap_or(bytes.len());
                for member in code[j + 1..close].split(',') {
                    let m = member.trim();
                    let seg: Vec<String> = m.split("::").map(|s| s.trim().to_string()).take_while(|s| !s.is_empty() && s != "{").collect();
                    groups.push(seg);
                }
                j = (close + 1).min(bytes.len());
                break;
            }
            let (name, end) = ident(j);
            if name.is_empty() {
                break;
            }
            segments.push(name);
            j = end;
            if code[j..].starts_with("::") {
                j += 2;
            } else {
                break;
            }
        }
        let written = code[start..j.min(bytes.len())].to_string();
        if groups.is_empty() {
            out.push((start, written, segments, supers));
        } else {
            for g in groups {
                let mut s = segments.clone();
                s.extend(g);
                out.push((start, written.clone(), s, supers));
            }
        }
        i = j.max(i + 1);
    }
    out
}

/// The code with comments and the insides of string and char literals blanked (newlines
/// kept, so offsets and line numbers stay those of the file).
fn blank_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = text[i..].find('\n').map(|n| i + n).unwrap_or(b.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map(|n| i + n + 4).unwrap_or(b.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
        {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + 2 + hashes;
            let end = text[body..].find(&close).map(|n| body + n + close.len()).unwrap_or(b.len());
            blank(&mut out, body, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j.min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '"'); a lifetime ('a) is left alone.
            let len = if b.get(i + 1) == Some(&b'\\') {
                text[i + 2..].find('\'').map(|n| n + 3)
            } else {
                (b.get(i + 2) == Some(&b'\'')).then_some(3)
            };
            match len {
                Some(n) => {
                    blank(&mut out, i + 1, i + n - 1);
                    i += n;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 boundaries of ASCII")
}

#[test]
fn every_import_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tree = Tree::read(&src);
    assert!(tree.files.len() > 40, "read {} files from {}", tree.files.len(), src.display());
    let found = tree.violations();
    let listed: Vec<String> = found.iter().map(|v| format!("{}:{}: {} ({})", v.file, v.line, v.path, v.why)).collect();
    assert!(found.is_empty(), "{} imports point up:\n{}", found.len(), listed.join("\n"));
}

#[test]
fn the_aws_backend_names_nothing_of_the_simulator_or_its_baseline() {
    // An AWS lab learns its own traffic (`cis arm`): no model, training rows or threshold
    // of the simulator's baseline capture may reach it, so its backend may not even name
    // the simulator (`sim`) or the baseline's training (`training`).
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let tree = Tree::read(&src);
    let mut found = Vec::new();
    for (module, text, file) in &tree.files {
        if !module.starts_with(&["backends".to_string(), "aws".to_string()]) {
            continue;
        }
        let code = blank_comments_and_strings(text);
        for (at, written, segments, supers) in paths(&code) {
            if supers == 0 && segments.first().is_some_and(|s| s == "sim" || s == "training") {
                found.push(format!("{file}:{}: {written}", code[..at].lines().count().max(1)));
            }
        }
    }
    assert!(tree.files.iter().filter(|(m, _, _)| m.starts_with(&["backends".to_string(), "aws".to_string()])).count() > 5);
    assert!(found.is_empty(), "the AWS backend names the simulator or its baseline:\n{}", found.join("\n"));
}

#[test]
fn the_layer_order_is_the_one_lib_rs_writes() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let order = declared_children(&blank_comments_and_strings(&text));
    let expected = [
        "base",
        "formats",
        "detect",
        "model",
        "functions",
        "cloud",
        "store",
        "sim",
        "training",
        "orchestrator",
        "calibration",
        "backends",
        "analysis",
        "report",
        "app",
    ];
    assert_eq!(order, expected, "README's layout section and this list follow lib.rs: change all three together");
}

#[test]
fn the_check_names_an_upward_import_and_ignores_comments_strings_and_its_own_parts() {
    let tree = Tree::of(&[
        ("lib.rs", "mod low;\nmod high;\n"),
        ("low/mod.rs", "mod a;\nmod b;\n// crate::high is only mentioned\nconst S: &str = \"crate::high\";\n"),
        ("low/a.rs", "use super::b::Thing;\n"),
        ("low/b.rs", "use crate::low::a;\nfn f() { crate::high::go(); }\nmod tests { use super::*; use crate::{low::a, high}; }\n"),
        ("high.rs", "use crate::low::{a::X, b};\nuse super::low;\n"),
    ]);
    let found: Vec<(String, usize, String)> = tree.violations().into_iter().map(|v| (v.file, v.line, v.path)).collect();
    assert_eq!(
        found,
        vec![
            ("src/low/a.rs".to_string(), 1, "super::b::Thing".to_string()),
            ("src/low/b.rs".to_string(), 2, "crate::high::go".to_string()),
            ("src/low/b.rs".to_string(), 3, "crate::{low::a, high}".to_string()),
        ]
    );
    let why = &tree.violations()[0].why;
    assert!(why.contains("`b` stands above `a` in the order of `low`"), "{why}");
}
