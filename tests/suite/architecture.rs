//! The layer order of ARCHITECTURE.md, enforced: every `crate::…` and `super::…` path in the
//! library's sources is read, and a module that reaches a module of a higher layer — or a
//! product module that reaches the simulators — fails this test with the file and the line.
//!
//! The order is read from the ```` ```layers ```` block of ARCHITECTURE.md, so the document and
//! the check cannot drift apart: a module missing from the block fails the test too.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Where each top-level module stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A product layer; higher numbers sit above lower ones.
    Layer(usize),
    /// The other side of the wire (the simulators): may use any product layer, and no product
    /// module may use it.
    Side,
}

/// The layers as ARCHITECTURE.md states them: one line a layer, bottom first, module names
/// separated by spaces; a line `side: …` names the modules beside the order.
fn layers_from(architecture: &str) -> BTreeMap<String, Place> {
    let block = architecture
        .split("```layers")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no ```layers block"));
    let mut places = BTreeMap::new();
    let mut level = 0;
    for line in block
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
    {
        if line.is_empty() {
            continue;
        }
        if let Some(side) = line.strip_prefix("side:") {
            for module in side.split_whitespace() {
                places.insert(module.to_owned(), Place::Side);
            }
            continue;
        }
        for module in line.split_whitespace() {
            places.insert(module.to_owned(), Place::Layer(level));
        }
        level += 1;
    }
    places
}

/// One import that breaks the order.
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}` imports `{}`",
            self.file, self.line, self.from, self.to
        )
    }
}

/// The module path of a source file below `src/` (`src/settle/service/commit.rs` →
/// `settle::service::commit`; `mod.rs` names its folder).
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a file without its `//` comments (doc comments included) or string literals,
/// so that prose and text that merely mention a module do not count. Line breaks stay, so an
/// offset still tells its line.
fn code_of(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' => in_string = !in_string,
                '\\' if in_string => {
                    chars.next();
                }
                '/' if !in_string && chars.peek() == Some(&'/') => break,
                _ if !in_string => code.push(c),
                _ => {}
            }
        }
        code.push('\n');
    }
    code
}

/// The top-level modules that the code of `file_module` reaches, each with its byte offset:
/// `crate::x…` (also every item of a grouped import such as `use crate::{x, y::{z, w}}`, over
/// several lines) and `super::…` chains that climb out of the file's own top-level module.
fn reached(code: &str, file_module: &[String]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with('$') {
            continue;
        }
        found.extend(named_at(at, &code[at + "crate::".len()..]));
    }
    for (at, _) in code.match_indices("super::") {
        if code[..at].ends_with("super::") {
            continue;
        }
        let mut rest = &code[at..];
        let mut path: Vec<String> = file_module.to_vec();
        path.extend((0..inline_modules_around(code, at)).map(|_| String::from("{inline}")));
        while let Some(after) = rest.strip_prefix("super::") {
            path.pop();
            rest = after;
        }
        if path.is_empty() {
            found.extend(named_at(at, rest));
        }
    }
    found
}

/// How many inline `mod name { … }` blocks enclose `at` (each one more `super` to climb).
fn inline_modules_around(code: &str, at: usize) -> usize {
    let mut open_modules = Vec::new();
    let mut depth = 0usize;
    for (offset, c) in code[..at].char_indices() {
        match c {
            '{' => {
                if opens_module(&code[..offset]) {
                    open_modules.push(depth);
                }
                depth += 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if open_modules.last() == Some(&depth) {
                    open_modules.pop();
                }
            }
            _ => {}
        }
    }
    open_modules.len()
}

/// Whether the code before a `{` ends in `mod name`.
fn opens_module(before: &str) -> bool {
    let before = before.trim_end();
    let name_start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    let before_name = before[..name_start].trim_end();
    name_start < before.len()
        && before_name.ends_with("mod")
        && before_name[..before_name.len() - 3]
            .chars()
            .next_back()
            .is_none_or(char::is_whitespace)
}

/// Where the file's unit tests begin: the first `#[cfg(test)]` that opens a `mod`.
fn test_module_start(code: &str) -> usize {
    code.match_indices("#[cfg(test)]")
        .map(|(at, attribute)| at + attribute.len())
        .find(|&after| code[after..].trim_start().starts_with("mod "))
        .unwrap_or(code.len())
}

/// The first segment of the path `rest` starts with, or of every item of the group it opens.
fn named_at(at: usize, rest: &str) -> Vec<(usize, String)> {
    let Some(group) = rest.strip_prefix('{') else {
        return first_segment(rest)
            .map(|name| (at, name))
            .into_iter()
            .collect();
    };
    let mut names = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (offset, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if c.is_whitespace() => {}
            _ if item_start => {
                item_start = false;
                names.extend(first_segment(&group[offset..]).map(|name| (at, name)));
            }
            _ => {}
        }
    }
    names
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// Whether `from` may import `to`.
fn allowed(from: Place, to: Place) -> bool {
    match (from, to) {
        (Place::Layer(from), Place::Layer(to)) => to <= from,
        (Place::Side, _) => true,
        (Place::Layer(_), Place::Side) => false,
    }
}

/// Every import in `sources` (path below `src/`, text) that breaks `places`. Unit tests at the
/// end of a file (`#[cfg(test)]`) may use the simulators as fixtures, never a higher layer.
/// Modules missing from `places` are reported as violations too.
fn violations(places: &BTreeMap<String, Place>, sources: &[(PathBuf, String)]) -> Vec<Violation> {
    let mut found = Vec::new();
    for (relative, text) in sources {
        let module = module_path(relative);
        let Some(top) = module.first() else { continue };
        let Some(&from) = places.get(top) else {
            found.push(Violation {
                file: relative.display().to_string(),
                line: 0,
                from: top.clone(),
                to: "(no layer in ARCHITECTURE.md)".into(),
            });
            continue;
        };
        let code = code_of(text);
        let tests_from = test_module_start(&code);
        for (at, to) in reached(&code, &module) {
            if &to == top {
                continue;
            }
            let ok = match places.get(&to).copied() {
                Some(Place::Side) if at >= tests_from => true,
                Some(target) => allowed(from, target),
                None => false,
            };
            if !ok {
                found.push(Violation {
                    file: relative.display().to_string(),
                    line: code[..at].matches('\n').count() + 1,
                    from: top.clone(),
                    to,
                });
            }
        }
    }
    found
}

/// The library's sources: everything below `src/` but the binary (`main.rs`, `cli/`), which
/// sits on top and may use anything, and `lib.rs`, which only declares the modules.
fn library_sources(src: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path.strip_prefix(src).expect("below src").to_path_buf();
                let top = relative
                    .iter()
                    .next()
                    .map(|p| p.to_string_lossy().into_owned());
                if matches!(top.as_deref(), Some("main.rs" | "lib.rs" | "cli")) {
                    continue;
                }
                let text = fs::read_to_string(&path).expect("source file");
                files.push((relative, text));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn no_module_imports_one_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let places = layers_from(&architecture);
    let sources = library_sources(&root.join("src"));
    assert!(
        sources.len() > 50,
        "read only {} files below src/",
        sources.len()
    );
    let found = violations(&places, &sources);
    assert!(
        found.is_empty(),
        "imports against the layer order of ARCHITECTURE.md:\n{}",
        found.iter().map(|v| format!("  {v}\n")).collect::<String>()
    );
}

#[test]
fn every_module_of_lib_rs_has_a_place() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let places = layers_from(&architecture);
    let lib = fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|name| name.trim_end_matches(';'))
        .collect();
    assert!(!declared.is_empty());
    let missing: Vec<&&str> = declared
        .iter()
        .filter(|m| !places.contains_key(**m))
        .collect();
    assert!(
        missing.is_empty(),
        "modules with no layer in ARCHITECTURE.md: {missing:?}"
    );
}

/// The checker itself, on a small made-up tree: it must catch an upward import in each form
/// it reads, and pass the same tree without it.
mod checker {
    use super::*;

    const ORDER: &str = "```layers\nmoney\napdu\nreader\nserve\nside: sim\n```";

    fn check(files: &[(&str, &str)]) -> Vec<Violation> {
        let sources: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(path, text)| (PathBuf::from(path), (*text).to_owned()))
            .collect();
        violations(&layers_from(ORDER), &sources)
    }

    #[test]
    fn downward_imports_pass() {
        let found = check(&[
            (
                "apdu/exchange.rs",
                "use crate::money::round_fen;\nuse super::Command;",
            ),
            (
                "serve/mod.rs",
                "use crate::{apdu::{Command, Response}, reader, money};",
            ),
            ("sim/card.rs", "use crate::serve::Daemon;"),
            (
                "reader/mod.rs",
                "//! see [`crate::serve`]\nlet s = \"crate::serve\";",
            ),
        ]);
        assert_eq!(found, vec![]);
    }

    #[test]
    fn an_upward_import_fails_in_every_form() {
        let found = check(&[
            ("apdu/exchange.rs", "use crate::reader::CardChannel;"),
            (
                "apdu/command.rs",
                "use crate::{\n    money::{self, A},\n    serve::Daemon,\n};",
            ),
            ("apdu/status.rs", "fn f() { crate::reader::with_card(); }"),
            (
                "apdu/deep/inner.rs",
                "use super::super::super::serve::Daemon;",
            ),
            (
                "apdu/mod.rs",
                "mod tests {\n    use super::*;\n    use super::super::reader::X;\n}",
            ),
        ]);
        let pairs: Vec<(&str, &str)> = found
            .iter()
            .map(|v| (v.file.as_str(), v.to.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("apdu/exchange.rs", "reader"),
                ("apdu/command.rs", "serve"),
                ("apdu/status.rs", "reader"),
                ("apdu/deep/inner.rs", "serve"),
                ("apdu/mod.rs", "reader"),
            ]
        );
    }

    #[test]
    fn the_product_may_not_reach_the_simulators_outside_its_tests() {
        let found = check(&[(
            "reader/virtual.rs",
            "use crate::sim::Chip;\n#[cfg(test)]\nmod tests { use crate::sim::Chip; }",
        )]);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].to.as_str()), (1, "sim"));
    }

    #[test]
    fn tests_may_not_reach_a_higher_layer_either() {
        let found = check(&[(
            "apdu/x.rs",
            "#[cfg(test)]\nmod tests { use crate::serve::X; }",
        )]);
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn a_module_missing_from_the_order_fails() {
        let found = check(&[("newthing/mod.rs", "use crate::money::X;")]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].from, "newthing");
    }
}
