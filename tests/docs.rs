//! The module maps new contributors read first stay complete (issue 33): every file of a
//! module directory (`src/http/`, `src/source/`, `src/cli/`) is named in its `mod.rs`'s
//! module docs, and every module of the crate in `lib.rs`'s table, each in backticks. A
//! module added without a line there fails here.

use std::path::Path;

fn src(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(path))
        .unwrap_or_else(|e| panic!("src/{path}: {e}"))
}

/// The `//!` lines of a file, joined.
fn module_docs(text: &str) -> String {
    text.lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Rust modules in `dir` (file stems, and directories with a `mod.rs`), `mod.rs` and
/// `lib.rs`/`main.rs` left out.
fn modules_in(dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().to_string();
            if e.path().is_dir() {
                e.path().join("mod.rs").exists().then_some(name)
            } else {
                let stem = name.strip_suffix(".rs")?;
                (!["mod", "lib", "main"].contains(&stem)).then(|| stem.to_string())
            }
        })
        .collect();
    names.sort();
    names
}

/// The directories of `src/` that are modules (`http/`, `source/`, `cli/`, ...).
fn module_dirs() -> Vec<String> {
    modules_in("")
        .into_iter()
        .filter(|m| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src")
                .join(m)
                .is_dir()
        })
        .collect()
}

#[test]
fn every_module_directory_names_its_files_in_its_map() {
    let dirs = module_dirs();
    for dir in &dirs {
        let docs = module_docs(&src(&format!("{dir}/mod.rs")));
        let missing: Vec<String> = modules_in(dir)
            .into_iter()
            .filter(|m| !docs.contains(&format!("`{m}`")) && !docs.contains(&format!("[`{m}`]")))
            .collect();
        assert!(
            missing.is_empty(),
            "{dir}/mod.rs's docs do not name {missing:?}"
        );
    }
    // The control: the reader finds the directories and files it should.
    for dir in ["http", "source", "cli"] {
        assert!(dirs.iter().any(|d| d == dir), "{dirs:?}");
    }
    assert!(modules_in("http").len() >= 15);
}

#[test]
fn the_crates_table_names_every_module() {
    let docs = module_docs(&src("lib.rs"));
    let table: String = docs
        .lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .collect::<Vec<_>>()
        .join("\n");
    let missing: Vec<String> = modules_in("")
        .into_iter()
        .filter(|m| !table.contains(&format!("`{m}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "lib.rs's table does not name {missing:?}"
    );
    assert!(modules_in("").len() >= 20);
}

/// `parser.rs` lists the modules where plain indexing is denied (they read network bytes or
/// index by them): the list names exactly the files that carry the lint.
#[test]
fn the_no_panic_list_names_exactly_the_files_that_deny_indexing() {
    let docs = module_docs(&src("parser.rs"));
    let start = docs
        .find("The same lint")
        .expect("parser.rs names the guarded modules");
    let end = docs[start..].find("\n\n").map_or(docs.len(), |e| start + e);
    let listed: std::collections::BTreeSet<String> = docs[start..end]
        .split('`')
        .filter(|w| w.ends_with(".rs"))
        .map(str::to_string)
        .chain(["parser.rs".to_string()])
        .collect();
    let mut guarded = std::collections::BTreeSet::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains("#![cfg_attr(not(test), deny(clippy::indexing_slicing))]") {
                    let rel = path.strip_prefix(&root).unwrap();
                    guarded.insert(rel.to_string_lossy().to_string());
                }
            }
        }
    }
    assert!(guarded.len() >= 10, "{guarded:?}");
    assert_eq!(
        listed, guarded,
        "parser.rs's list against the files that deny indexing"
    );
}
