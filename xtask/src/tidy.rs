//! `cargo xtask tidy`: repository rules that neither rustc nor clippy checks.
//!
//! Each check returns [`Violation`]s that name a file and a line. [`run`] prints them all and
//! fails if there are any. The same checks run as `#[test] fn tidy()` below, so
//! `cargo test --workspace` enforces them too.
//!
//! | check | rule |
//! |---|---|
//! | [`check_dag`] | edges between mm-* crates follow the allow-list [`LAYERS`] (style.md §5); only `mm-sync` depends on the runtime crates ([`RUNTIME_CRATES`]) |
//! | [`check_lib_header`] | every `crates/*/src/lib.rs` opens with a `//!` header that has `# Invariants` and `# Locking protocol` sections (rule 10) |
//! | [`check_concurrency_names`] | no file outside `crates/mm-sync` names `std::sync`, `std::thread`, `loom`, `shuttle`, `tokio`, `crossbeam_channel` or `dashmap` (rule 3) |
//! | [`check_test_attrs`] | no `#[should_panic]` and no `#[ignore]` (rule 12) |
//! | [`check_todo`] | no `todo!` and no `unimplemented!` |
//! | [`check_safety`] | every `unsafe { .. }` and `unsafe impl` has a `// SAFETY:` comment on its line or just above (rule 11) |
//!
//! The source checks read code with comments and string literals blanked out
//! ([`strip_comments_and_strings`]), so prose and test inputs do not trip them.

use crate::util;
use anyhow::{bail, Context, Result};
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// The dependency allow-list of style.md §5: each layered crate with the mm-* crates that its
/// normal and build dependencies may name. A new edge is an architecture change: update this
/// table, style.md §5 and docs/architecture.md together.
pub(crate) const LAYERS: &[(&str, &[&str])] = &[
    // L0
    ("mm-types", &[]),
    ("mm-sync", &[]),
    // L1
    ("mm-phys", &["mm-sync", "mm-types"]),
    // L2
    ("mm-buddy", &["mm-phys", "mm-sync", "mm-types"]),
    ("mm-swap", &["mm-phys", "mm-sync", "mm-types"]),
    // L3
    ("mm-slab", &["mm-buddy", "mm-phys", "mm-sync", "mm-types"]),
    ("mm-mmu", &["mm-buddy", "mm-phys", "mm-sync", "mm-types"]),
    ("mm-lru", &["mm-phys", "mm-sync", "mm-types"]),
    (
        "mm-pagecache",
        &["mm-buddy", "mm-phys", "mm-sync", "mm-types"],
    ),
    // L4
    (
        "mm-vma",
        &[
            "mm-mmu",
            "mm-lru",
            "mm-slab",
            "mm-pagecache",
            "mm-swap",
            "mm-buddy",
            "mm-phys",
            "mm-sync",
            "mm-types",
        ],
    ),
    // L5
    (
        "mm-kswapd",
        &[
            "mm-vma",
            "mm-pagecache",
            "mm-lru",
            "mm-mmu",
            "mm-swap",
            "mm-buddy",
            "mm-phys",
            "mm-sync",
            "mm-types",
        ],
    ),
    ("mm-oom", &["mm-vma", "mm-buddy", "mm-sync", "mm-types"]),
    // L6
    (
        "mm-sim",
        &[
            "mm-kswapd",
            "mm-oom",
            "mm-vma",
            "mm-pagecache",
            "mm-lru",
            "mm-mmu",
            "mm-slab",
            "mm-swap",
            "mm-buddy",
            "mm-phys",
            "mm-sync",
            "mm-types",
        ],
    ),
    // L7
    ("mm-scenario", &["mm-sim", "mm-types"]),
    // L8
    ("mm-cli", &["mm-scenario", "mm-sim", "mm-types"]),
];

/// Crates above every layer: the benchmarks (`crates/mm-bench`) and the integration-test holder
/// (`tests/`, package `mm-tests`). They may depend on any layered crate; nothing depends on them.
pub(crate) const TOP: &[&str] = &["mm-bench", "mm-tests"];

/// Dev-only crates: they may depend on any layered crate, and only `[dev-dependencies]` may
/// name them.
pub(crate) const DEV_ONLY: &[&str] = &["mm-testkit"];

/// Crates that only `mm-sync` may depend on: the runtimes and the std-runtime channel and
/// concurrent-map implementations behind the facade (style.md §2).
pub(crate) const RUNTIME_CRATES: &[&str] =
    &["loom", "shuttle", "tokio", "crossbeam-channel", "dashmap"];

/// The only crate that may name the concurrency primitives and runtime crates.
const FACADE: &str = "mm-sync";

/// A broken rule, at a file and line (1-based) relative to the workspace root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) path: PathBuf,
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

fn violation(path: &Path, line: usize, message: impl Into<String>) -> Violation {
    Violation {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Runs every check on the workspace at `root`, prints the violations and fails if any.
pub(crate) fn run(root: &Path) -> Result<()> {
    let report = check_repo(root)?;
    if report.violations.is_empty() {
        println!(
            "tidy: ok ({} packages, {} source files checked)",
            report.packages, report.files
        );
        return Ok(());
    }
    for v in &report.violations {
        eprintln!("{v}");
    }
    bail!(
        "tidy found {} violation(s), listed above",
        report.violations.len()
    );
}

/// What [`check_repo`] looked at and found.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) packages: usize,
    pub(crate) files: usize,
    pub(crate) violations: Vec<Violation>,
}

/// Runs every check on the workspace at `root`.
pub(crate) fn check_repo(root: &Path) -> Result<Report> {
    let meta = util::metadata(root)?;
    let mut manifests = Vec::new();
    for p in &meta.packages {
        let text = std::fs::read_to_string(&p.manifest_path)
            .with_context(|| format!("could not read {}", p.manifest_path.display()))?;
        manifests.push(Manifest {
            name: p.name.clone(),
            path: relative(root, &p.manifest_path),
            text,
            deps: p
                .dependencies
                .iter()
                .map(|d| (d.name.clone(), DepKind::from_metadata(d.kind.as_deref())))
                .collect(),
        });
    }
    let mut violations = check_dag(&manifests);

    let mut files = 0;
    for top in ["crates", "tests", "xtask"] {
        for path in util::walk_files(&root.join(top))? {
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("could not read {}", path.display()))?;
            files += 1;
            violations.extend(check_source(&relative(root, &path), &text));
        }
    }

    let crates_dir = root.join("crates");
    let mut crate_dirs: Vec<PathBuf> = std::fs::read_dir(&crates_dir)
        .with_context(|| format!("could not read {}", crates_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    crate_dirs.sort();
    for dir in crate_dirs {
        let lib = dir.join("src/lib.rs");
        let main = dir.join("src/main.rs");
        let root_file = if lib.exists() { lib } else { main };
        if let Ok(text) = std::fs::read_to_string(&root_file) {
            violations.extend(check_lib_header(&relative(root, &root_file), &text));
        }
    }

    violations.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    Ok(Report {
        packages: manifests.len(),
        files,
        violations,
    })
}

fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

/// Runs the per-file checks that apply to `path` (relative to the workspace root).
pub(crate) fn check_source(path: &Path, text: &str) -> Vec<Violation> {
    let code = strip_comments_and_strings(text);
    let in_crates = path.starts_with("crates");
    let in_tests = path.starts_with("tests");
    let in_xtask = path.starts_with("xtask");
    let mut out = Vec::new();
    if (in_crates && !path.starts_with(Path::new("crates").join(FACADE))) || in_tests {
        out.extend(check_concurrency_names(path, &code));
    }
    if in_crates || in_tests {
        out.extend(check_test_attrs(path, &code));
    }
    if in_crates || in_tests || in_xtask {
        out.extend(check_todo(path, &code));
    }
    if in_crates {
        out.extend(check_safety(path, text, &code));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The dependency DAG.

/// How a manifest declares a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DepKind {
    Normal,
    Build,
    Dev,
}

impl DepKind {
    fn from_metadata(kind: Option<&str>) -> DepKind {
        match kind {
            Some("dev") => DepKind::Dev,
            Some("build") => DepKind::Build,
            _ => DepKind::Normal,
        }
    }

    fn section(self) -> &'static str {
        match self {
            DepKind::Normal => "[dependencies]",
            DepKind::Build => "[build-dependencies]",
            DepKind::Dev => "[dev-dependencies]",
        }
    }
}

/// A workspace member's manifest: its path (relative to the root), text and dependencies.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) text: String,
    pub(crate) deps: Vec<(String, DepKind)>,
}

fn is_internal(name: &str) -> bool {
    name.starts_with("mm-")
}

fn layer_allow_list(name: &str) -> Option<&'static [&'static str]> {
    LAYERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, deps)| *deps)
}

fn is_known(name: &str) -> bool {
    layer_allow_list(name).is_some() || TOP.contains(&name) || DEV_ONLY.contains(&name)
}

/// Checks the edges between workspace crates against [`LAYERS`], [`TOP`] and [`DEV_ONLY`], and
/// that only `mm-sync` depends on [`RUNTIME_CRATES`].
///
/// - A layered crate's normal and build dependencies on mm-* crates must be on its allow-list.
/// - Nothing depends on a [`TOP`] crate; only `[dev-dependencies]` name a [`DEV_ONLY`] crate.
/// - `[dev-dependencies]` are otherwise free, but must not form a cycle: a dev-dependency of
///   `a` on `b` is rejected when `b` depends on `a` (through normal or build edges), since `a`'s
///   tests would then link two copies of `a`.
/// - An mm-* crate missing from the tables fails until it is added.
/// - Non-mm members (`xtask`) depend on no mm-* crate.
pub(crate) fn check_dag(manifests: &[Manifest]) -> Vec<Violation> {
    let mut out = Vec::new();
    let normal_edges: BTreeMap<&str, Vec<&str>> = manifests
        .iter()
        .map(|m| {
            let deps = m
                .deps
                .iter()
                .filter(|(d, k)| is_internal(d) && *k != DepKind::Dev)
                .map(|(d, _)| d.as_str())
                .collect();
            (m.name.as_str(), deps)
        })
        .collect();

    for m in manifests {
        let name = m.name.as_str();
        if !is_internal(name) {
            for (dep, kind) in &m.deps {
                if is_internal(dep) {
                    out.push(violation(
                        &m.path,
                        manifest_line(&m.text, dep),
                        format!(
                            "`{name}` must not depend on `{dep}` ({}): {name} depends on no mm-* crate",
                            kind.section()
                        ),
                    ));
                }
            }
        } else if !is_known(name) {
            out.push(violation(
                &m.path,
                package_name_line(&m.text),
                format!(
                    "`{name}` is not in the dependency table: add it to LAYERS (or TOP/DEV_ONLY) in \
                     xtask/src/tidy.rs, to style.md §5 and to docs/architecture.md"
                ),
            ));
        }

        for (dep, kind) in &m.deps {
            let line = || manifest_line(&m.text, dep);
            if RUNTIME_CRATES.contains(&dep.as_str()) && name != FACADE {
                out.push(violation(
                    &m.path,
                    line(),
                    format!(
                        "`{name}` depends on `{dep}`: only {FACADE} may; use the mm_sync facade"
                    ),
                ));
                continue;
            }
            if !is_internal(dep) || !is_internal(name) {
                continue;
            }
            if TOP.contains(&dep.as_str()) {
                out.push(violation(
                    &m.path,
                    line(),
                    format!("`{name}` depends on `{dep}`: nothing may depend on {dep}"),
                ));
                continue;
            }
            if *kind == DepKind::Dev {
                if reaches(&normal_edges, dep, name) {
                    out.push(violation(
                        &m.path,
                        line(),
                        format!(
                            "dev-dependency `{name}` -> `{dep}` forms a cycle (`{dep}` depends on \
                             `{name}`), so `{name}`'s tests would link two copies of `{name}`"
                        ),
                    ));
                }
                continue;
            }
            if DEV_ONLY.contains(&dep.as_str()) {
                out.push(violation(
                    &m.path,
                    line(),
                    format!(
                        "`{name}` has `{dep}` in {}: {dep} is dev-only, use [dev-dependencies]",
                        kind.section()
                    ),
                ));
                continue;
            }
            if !is_known(dep) {
                out.push(violation(
                    &m.path,
                    line(),
                    format!("`{name}` depends on `{dep}`, which is not in the dependency table"),
                ));
                continue;
            }
            if let Some(allowed) = layer_allow_list(name) {
                if !allowed.contains(&dep.as_str()) {
                    out.push(violation(
                        &m.path,
                        line(),
                        format!(
                            "edge `{name}` -> `{dep}` ({}) is not on the allow-list (style.md §5); \
                             {name} may depend on: {}",
                            kind.section(),
                            if allowed.is_empty() {
                                "no mm-* crate".to_string()
                            } else {
                                allowed.join(", ")
                            }
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// Returns true if `to` is reachable from `from` along `edges`.
fn reaches(edges: &BTreeMap<&str, Vec<&str>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n) {
            stack.extend(edges.get(n).into_iter().flatten().copied());
        }
    }
    false
}

/// Returns the line of a manifest that declares `dep`, or 1.
fn manifest_line(text: &str, dep: &str) -> usize {
    let dep = regex::escape(dep);
    let re = Regex::new(&format!(
        r#"^\s*(?:"{dep}"|{dep})\s*(?:=|\.)|package\s*=\s*"{dep}"|^\s*\[.*dependencies\.{dep}\]"#
    ))
    .expect("valid regex");
    text.lines()
        .position(|l| re.is_match(l))
        .map_or(1, |i| i + 1)
}

fn package_name_line(text: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with("name"))
        .map_or(1, |i| i + 1)
}

// ---------------------------------------------------------------------------------------------
// Crate headers.

/// Checks that a crate root opens with a `//!` header holding `# Invariants` and
/// `# Locking protocol` sections.
pub(crate) fn check_lib_header(path: &Path, text: &str) -> Vec<Violation> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(first) = lines.iter().position(|l| !l.trim().is_empty()) else {
        return vec![violation(
            path,
            1,
            "empty crate root: it must open with a `//!` header",
        )];
    };
    if !lines[first].trim_start().starts_with("//!") {
        return vec![violation(
            path,
            first + 1,
            "the crate root must open with a `//!` header saying what the crate owns, its \
             invariants and its locking protocol (`# Invariants`, `# Locking protocol`; style.md \
             rule 10)",
        )];
    }
    let header: Vec<&str> = lines[first..]
        .iter()
        .take_while(|l| l.trim_start().starts_with("//!"))
        .copied()
        .collect();
    let mut out = Vec::new();
    for heading in ["Invariants", "Locking protocol"] {
        let re = Regex::new(&format!(r"^\s*//!\s*#+\s*{heading}\b")).expect("valid regex");
        if !header.iter().any(|l| re.is_match(l)) {
            out.push(violation(
                path,
                first + 1,
                format!("the `//!` header has no `# {heading}` section (style.md rule 10)"),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Source checks. `code` is the file with comments and string literals blanked out.

fn line_of(code: &str, offset: usize) -> usize {
    code[..offset].bytes().filter(|&b| b == b'\n').count() + 1
}

static STD_SYNC_THREAD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^\w:])(?:::)?(std\s*::\s*(?:sync|thread))\b").expect("valid regex")
});
static STD_GROUP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^\w:])(?:::)?std\s*::\s*\{").expect("valid regex"));
static GROUP_SYNC_THREAD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[{,\s])(sync|thread)\b").expect("valid regex"));
static RUNTIME_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:^|[^\w:])(?:::)?(loom|shuttle|tokio)\s*::|\b(?:use|extern\s+crate)\s+(?:::)?(loom|shuttle|tokio)\b|\b(crossbeam_channel|dashmap)\b",
    )
    .expect("valid regex")
});

/// Checks that `code` names no concurrency primitive or runtime crate except through `mm_sync`.
///
/// `crates/mm-bench` may name `std::sync` and `std::thread`. It is host-side harness code, never
/// built for loom or shuttle: it drives benchmarks from host threads with primitives the facade
/// does not offer (`std::thread::scope`, `std::sync::Barrier`), and its peer measurements run
/// other allocators under std locks, as their own users do. It still may not name loom, shuttle,
/// tokio, crossbeam-channel or dashmap.
pub(crate) fn check_concurrency_names(path: &Path, code: &str) -> Vec<Violation> {
    let std_allowed = path.starts_with("crates/mm-bench");
    let mut out = Vec::new();
    let fix = "take it from `mm_sync` (Architecture Invariant: only mm-sync names it)";
    if !std_allowed {
        for c in STD_SYNC_THREAD.captures_iter(code) {
            let m = c.get(1).expect("group 1 always matches");
            let name: String = m.as_str().split_whitespace().collect();
            out.push(violation(
                path,
                line_of(code, m.start()),
                format!("`{name}` named outside mm-sync: {fix}"),
            ));
        }
        for m in STD_GROUP.find_iter(code) {
            let group = brace_group(code, m.end());
            for c in GROUP_SYNC_THREAD.captures_iter(group) {
                let g = c.get(1).expect("group 1 always matches");
                out.push(violation(
                    path,
                    line_of(code, m.end() + g.start()),
                    format!("`std::{}` named outside mm-sync: {fix}", g.as_str()),
                ));
            }
        }
    }
    for c in RUNTIME_PATH.captures_iter(code) {
        let m = (1..=3)
            .find_map(|i| c.get(i))
            .expect("one alternative always matches");
        out.push(violation(
            path,
            line_of(code, m.start()),
            format!("`{}` named outside mm-sync: {fix}", m.as_str()),
        ));
    }
    out.sort_by_key(|v| v.line);
    out
}

/// Returns the text of a `{ .. }` group whose opening brace ends just before `start`.
fn brace_group(code: &str, start: usize) -> &str {
    let mut depth = 1;
    for (i, c) in code[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &code[start..start + i];
                }
            }
            _ => {}
        }
    }
    &code[start..]
}

static TEST_ATTR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"#\s*\[\s*(should_panic|ignore)\b|#\s*\[\s*cfg_attr\s*\([^\]]*?\b(should_panic|ignore)\b",
    )
    .expect("valid regex")
});

/// Checks that no test is `#[should_panic]` or `#[ignore]` (assert the current behaviour and
/// add a FIXME instead).
pub(crate) fn check_test_attrs(path: &Path, code: &str) -> Vec<Violation> {
    TEST_ATTR
        .captures_iter(code)
        .map(|c| {
            let m = c.get(1).or_else(|| c.get(2)).expect("one group matches");
            violation(
                path,
                line_of(code, m.start()),
                format!(
                    "`#[{}]` is not allowed: assert the current behaviour and add a FIXME (style.md rule 12)",
                    m.as_str()
                ),
            )
        })
        .collect()
}

static TODO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(todo|unimplemented)\s*!\s*[(\[{]").expect("valid regex"));

/// Checks that no code calls `todo!` or `unimplemented!`.
pub(crate) fn check_todo(path: &Path, code: &str) -> Vec<Violation> {
    TODO.captures_iter(code)
        .map(|c| {
            let m = c.get(1).expect("group 1 always matches");
            violation(
                path,
                line_of(code, m.start()),
                format!(
                    "`{}!` left in the code: implement it or return an error",
                    m.as_str()
                ),
            )
        })
        .collect()
}

static UNSAFE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bunsafe\s*\{|\bunsafe\s+impl\b").expect("valid regex"));

/// Checks that every `unsafe { .. }` block and `unsafe impl` has a `// SAFETY:` comment on its
/// line, in the three lines above, or in a comment block that ends just above it (attributes
/// may stand between).
pub(crate) fn check_safety(path: &Path, text: &str, code: &str) -> Vec<Violation> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for m in UNSAFE.find_iter(code) {
        let line = line_of(code, m.start());
        if !has_safety_comment(&lines, line - 1) {
            let what = if m.as_str().ends_with('{') {
                "`unsafe` block"
            } else {
                "`unsafe impl`"
            };
            out.push(violation(
                path,
                line,
                format!(
                    "{what} without a `// SAFETY:` comment on its line or just above (style.md rule 11)"
                ),
            ));
        }
    }
    out
}

fn is_safety_comment(line: &str) -> bool {
    line.contains("// SAFETY:") || line.contains("/* SAFETY:")
}

fn has_safety_comment(lines: &[&str], idx: usize) -> bool {
    let idx = idx.min(lines.len().saturating_sub(1));
    if lines[idx.saturating_sub(3)..=idx]
        .iter()
        .any(|l| is_safety_comment(l))
    {
        return true;
    }
    for l in lines[..idx].iter().rev() {
        let t = l.trim_start();
        if t.starts_with("#[") || t.starts_with("#![") {
            continue;
        }
        if !t.starts_with("//") {
            break;
        }
        if is_safety_comment(t) {
            return true;
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------
// A small Rust lexer: enough to tell code from comments and string literals.

/// Returns `src` with every comment and every string and char literal replaced by spaces.
/// Line breaks are kept, so line numbers in the result match the source.
pub(crate) fn strip_comments_and_strings(src: &str) -> String {
    let s: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                blank(&mut out, s[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, s[i]);
                    i += 1;
                }
            }
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < s.len() && s[i] != '"' {
                if s[i] == '\\' && i + 1 < s.len() {
                    blank(&mut out, s[i]);
                    i += 1;
                }
                blank(&mut out, s[i]);
                i += 1;
            }
            if i < s.len() {
                blank(&mut out, s[i]);
                i += 1;
            }
        } else if c == 'r' && raw_string_hashes(&s, i, is_ident).is_some() {
            let hashes = raw_string_hashes(&s, i, is_ident).expect("checked above");
            // `r`, the hashes and the opening quote.
            for _ in 0..hashes + 2 {
                blank(&mut out, s[i]);
                i += 1;
            }
            while i < s.len() {
                if s[i] == '"' && (1..=hashes).all(|k| s.get(i + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        blank(&mut out, s[i]);
                        i += 1;
                    }
                    break;
                }
                blank(&mut out, s[i]);
                i += 1;
            }
        } else if c == '\'' {
            // A char literal (`'x'`, `'\n'`, `'\u{1F600}'`) or a lifetime/label (`'a`).
            let end = if next == Some('\\') {
                s[i + 2..]
                    .iter()
                    .skip(1)
                    .position(|&c| c == '\'')
                    .map(|p| i + 3 + p)
            } else if next.is_some() && s.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for &c in &s[i..=end] {
                        blank(&mut out, c);
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// If a raw string literal (`r"`, `r#"`, `br"`, `cr#"` ...) starts at `s[i] == 'r'`, returns its
/// number of `#`s.
fn raw_string_hashes(s: &[char], i: usize, is_ident: impl Fn(char) -> bool) -> Option<usize> {
    let before = |k: usize| i.checked_sub(k).map(|j| s[j]);
    let prefix_ok = match before(1) {
        None => true,
        Some('b' | 'c') => before(2).is_none_or(|c| !is_ident(c)),
        Some(c) => !is_ident(c),
    };
    if !prefix_ok {
        return None;
    }
    let hashes = s[i + 1..].iter().take_while(|&&c| c == '#').count();
    (s.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str, deps: &[(&str, DepKind)]) -> Manifest {
        let mut text = format!("[package]\nname = \"{name}\"\n\n[dependencies]\n");
        for (d, _) in deps {
            text.push_str(&format!("{d}.workspace = true\n"));
        }
        Manifest {
            name: name.to_string(),
            path: PathBuf::from(format!("crates/{name}/Cargo.toml")),
            text,
            deps: deps.iter().map(|(d, k)| (d.to_string(), *k)).collect(),
        }
    }

    fn messages(v: &[Violation]) -> Vec<String> {
        v.iter().map(|v| v.to_string()).collect()
    }

    /// The repository itself passes every check.
    #[test]
    fn tidy() {
        let report = check_repo(&util::project_root()).expect("tidy could run");
        assert!(report.files > 0, "tidy checked no source file");
        assert!(
            report.violations.is_empty(),
            "tidy found {} violation(s):\n{}",
            report.violations.len(),
            messages(&report.violations).join("\n")
        );
    }

    #[test]
    fn dag_accepts_the_allowed_edges() {
        use DepKind::*;
        let ms = [
            manifest("mm-types", &[("thiserror", Normal)]),
            manifest("mm-sync", &[("loom", Normal), ("dashmap", Normal)]),
            manifest("mm-phys", &[("mm-sync", Normal), ("mm-types", Normal)]),
            manifest("mm-buddy", &[("mm-phys", Normal), ("mm-testkit", Dev)]),
            manifest("mm-testkit", &[("mm-buddy", Normal)]),
            manifest("mm-bench", &[("mm-buddy", Normal), ("criterion", Dev)]),
            manifest("mm-tests", &[("mm-phys", Dev), ("mm-testkit", Dev)]),
            manifest("xtask", &[("anyhow", Normal)]),
        ];
        // mm-buddy -> mm-testkit (dev) -> mm-buddy is a cycle: the only violation.
        assert_eq!(
            messages(&check_dag(&ms)),
            [
                "crates/mm-buddy/Cargo.toml:6: dev-dependency `mm-buddy` -> `mm-testkit` forms a \
              cycle (`mm-testkit` depends on `mm-buddy`), so `mm-buddy`'s tests would link two \
              copies of `mm-buddy`"
            ]
        );
    }

    #[test]
    fn dag_reports_forbidden_edges() {
        use DepKind::*;
        let ms = [
            manifest("mm-phys", &[("mm-types", Normal), ("mm-buddy", Normal)]),
            manifest("mm-buddy", &[("mm-phys", Build), ("mm-testkit", Normal)]),
            manifest("mm-sim", &[("mm-bench", Dev), ("tokio", Normal)]),
            manifest("mm-frobnicate", &[("mm-types", Normal)]),
            manifest("xtask", &[("mm-types", Normal)]),
        ];
        let got = messages(&check_dag(&ms));
        let expect = [
            "crates/mm-phys/Cargo.toml:6: edge `mm-phys` -> `mm-buddy` ([dependencies]) is not on \
             the allow-list (style.md §5); mm-phys may depend on: mm-sync, mm-types",
            "crates/mm-buddy/Cargo.toml:6: `mm-buddy` has `mm-testkit` in [dependencies]: \
             mm-testkit is dev-only, use [dev-dependencies]",
            "crates/mm-sim/Cargo.toml:5: `mm-sim` depends on `mm-bench`: nothing may depend on \
             mm-bench",
            "crates/mm-sim/Cargo.toml:6: `mm-sim` depends on `tokio`: only mm-sync may; use the \
             mm_sync facade",
            "crates/mm-frobnicate/Cargo.toml:2: `mm-frobnicate` is not in the dependency table: \
             add it to LAYERS (or TOP/DEV_ONLY) in xtask/src/tidy.rs, to style.md §5 and to \
             docs/architecture.md",
            "crates/xtask/Cargo.toml:5: `xtask` must not depend on `mm-types` ([dependencies]): \
             xtask depends on no mm-* crate",
        ];
        assert_eq!(got, expect);
    }

    #[test]
    fn every_layered_edge_points_down() {
        // The allow-list itself is a DAG ordered by the table: each crate names only crates
        // listed before it.
        for (i, (name, deps)) in LAYERS.iter().enumerate() {
            for d in *deps {
                let j = LAYERS.iter().position(|(n, _)| n == d);
                assert!(
                    j.is_some_and(|j| j < i),
                    "{name} -> {d} does not point down"
                );
            }
        }
    }

    #[test]
    fn header_must_exist_and_name_invariants_and_locking() {
        let p = Path::new("crates/mm-x/src/lib.rs");
        let good = "//! Owns x.\n//!\n//! # Invariants\n//! - a\n//!\n//! # Locking protocol\n//! None.\n#![deny(unsafe_code)]\n";
        assert_eq!(check_lib_header(p, good), []);
        assert_eq!(
            messages(&check_lib_header(p, "#![deny(unsafe_code)]\n//! late\n")),
            ["crates/mm-x/src/lib.rs:1: the crate root must open with a `//!` header saying what \
              the crate owns, its invariants and its locking protocol (`# Invariants`, `# Locking \
              protocol`; style.md rule 10)"]
        );
        // The words outside a heading, or after the header, do not count.
        let no_locking = "//! Owns x.\n//! # Invariants\n//! Locking protocol: none.\n\n//! # Locking protocol\n";
        assert_eq!(
            messages(&check_lib_header(p, no_locking)),
            [
                "crates/mm-x/src/lib.rs:1: the `//!` header has no `# Locking protocol` section \
              (style.md rule 10)"
            ]
        );
    }

    fn check(path: &str, src: &str) -> Vec<String> {
        messages(&check_source(Path::new(path), src))
    }

    #[test]
    fn concurrency_names_are_reported_outside_mm_sync_only() {
        let src = r#"
use std::sync::Arc; // std::thread in a comment is fine
use mm_sync::sync::Mutex;
use std::{collections::HashMap, thread};
fn f() { let s = "std::sync and loom:: in a string"; crate::loom::model(|| {}); }
/* dashmap in a block comment */
fn g() { loom::model(|| {}); let _ = ::std::thread::current(); }
"#;
        assert_eq!(
            check("crates/mm-x/src/a.rs", src),
            [
                "crates/mm-x/src/a.rs:2: `std::sync` named outside mm-sync: take it from `mm_sync` \
                 (Architecture Invariant: only mm-sync names it)",
                "crates/mm-x/src/a.rs:4: `std::thread` named outside mm-sync: take it from \
                 `mm_sync` (Architecture Invariant: only mm-sync names it)",
                "crates/mm-x/src/a.rs:7: `std::thread` named outside mm-sync: take it from \
                 `mm_sync` (Architecture Invariant: only mm-sync names it)",
                "crates/mm-x/src/a.rs:7: `loom` named outside mm-sync: take it from `mm_sync` \
                 (Architecture Invariant: only mm-sync names it)",
            ]
        );
        assert_eq!(
            check("crates/mm-sync/src/sync.rs", src),
            Vec::<String>::new()
        );
        // mm-bench may use std threads and locks for host-side peers, but not the runtimes.
        assert_eq!(
            check("crates/mm-bench/benches/peer.rs", src),
            [
                "crates/mm-bench/benches/peer.rs:7: `loom` named outside mm-sync: take it from \
              `mm_sync` (Architecture Invariant: only mm-sync names it)"
            ]
        );
        assert_eq!(
            check("tests/it/main.rs", "use crossbeam_channel::unbounded;\n"),
            [
                "tests/it/main.rs:1: `crossbeam_channel` named outside mm-sync: take it from \
              `mm_sync` (Architecture Invariant: only mm-sync names it)"
            ]
        );
    }

    #[test]
    fn test_attrs_and_todo_are_reported() {
        // The macro names are spliced together so this input does not read as a stub itself.
        let (todo, unimpl) = (concat!("to", "do!"), concat!("unimple", "mented!"));
        let src = format!(
            "#[test]\n#[should_panic]\nfn a() {{}}\n#[test]\n#[ignore = \"slow\"]\nfn b() {{ {todo}() }}\n// #[ignore] and {unimpl}() in a comment\nfn c() {{ let _ = \"{todo}()\"; }}\n"
        );
        let src = src.as_str();
        assert_eq!(
            check("crates/mm-x/src/tests.rs", src),
            [
                "crates/mm-x/src/tests.rs:2: `#[should_panic]` is not allowed: assert the current \
                 behaviour and add a FIXME (style.md rule 12)",
                "crates/mm-x/src/tests.rs:5: `#[ignore]` is not allowed: assert the current \
                 behaviour and add a FIXME (style.md rule 12)",
                "crates/mm-x/src/tests.rs:6: `todo!` left in the code: implement it or return an \
                 error",
            ]
        );
        // xtask is checked for todo! only.
        assert_eq!(
            check("xtask/src/x.rs", src),
            ["xtask/src/x.rs:6: `todo!` left in the code: implement it or return an error"]
        );
    }

    #[test]
    fn unsafe_needs_a_safety_comment() {
        let src = r#"
fn a(p: *const u8) -> u8 {
    // SAFETY: (1) p is valid.
    unsafe { *p }
}
fn b(p: *const u8) -> u8 {
    let x = 1;
    let y = 2;
    let z = 3;
    let w = 4;
    unsafe { *p }
}
// SAFETY: (1) a long justification
// that runs over
// several
// lines.
#[cfg(unix)]
unsafe impl Send for X {}
unsafe impl Sync for X {}
unsafe fn c() {}
"#;
        assert_eq!(
            check("crates/mm-x/src/a.rs", src),
            [
                "crates/mm-x/src/a.rs:11: `unsafe` block without a `// SAFETY:` comment on its line \
                 or just above (style.md rule 11)",
                "crates/mm-x/src/a.rs:19: `unsafe impl` without a `// SAFETY:` comment on its \
                 line or just above (style.md rule 11)",
            ]
        );
    }

    #[test]
    fn lexer_blanks_comments_and_literals_only() {
        let src = "a /* x /* y */ z */ b // c\nlet s = r#\"q \" // \"#; let c = '\"'; 'l: loop {}\nlet e = \"\\\" // \"; f(b'\\'', 'x')";
        let got = strip_comments_and_strings(src);
        assert_eq!(got.lines().count(), src.lines().count());
        let words: Vec<&str> = got.split_whitespace().collect();
        assert_eq!(
            words,
            [
                "a", "b", "let", "s", "=", ";", "let", "c", "=", ";", "'l:", "loop", "{}", "let",
                "e", "=", ";", "f(b", ",", ")"
            ]
        );
    }
}
