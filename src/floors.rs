//! The floors of the house (README, "Layout"), checked on the source text: every `crate::` path
//! outside tests, `use crate::{..}` groups expanded, against which module may import which.
//!
//! - the lower floors (config parsing, tokens, identity, routing, headers, metrics, the context,
//!   outbound calls, shared state, upstreams) import no mode, no contract and nothing above the
//!   modes; the one exception is `config/schema.rs` naming a `...Config` type, and those config
//!   modules import only `config/` and the contract's `auth::limits`;
//! - metrics imports nothing of the crate;
//! - a mode (`auth/<mode>/`) imports no other mode and nothing above the modes;
//! - the contract (`auth/*.rs`) imports no mode and nothing above the modes.

use std::path::Path;

/// The modes: one folder (or file) under `src/auth/` each.
const MODES: &[&str] = &["jwt", "opaque", "signed", "oidc", "pkce", "probe"];
/// What sits above the modes: the compile step, the proxy roles, the wiring, the drop-ins.
const ABOVE_MODES: &[&str] = &[
    "snapshot", "proxy", "server", "reload", "compat", "signer", "wire", "echo", "conncap", "tls",
];
/// The lower floors.
const LOWER: &[&str] = &[
    "config", "tokens", "identity", "routing", "headers", "metrics", "context", "outbound",
    "state", "upstream", "lognoise",
];

/// Which module a file belongs to: (`auth`, `Some("jwt")`), (`auth`, `None`) for the contract,
/// (`config`, `None`), ...
fn module_of(rel: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = rel.split('/').collect();
    let first = parts[0].trim_end_matches(".rs").to_string();
    if first == "auth" && parts.len() > 1 {
        let second = parts[1].trim_end_matches(".rs");
        if MODES.contains(&second) {
            return (first, Some(second.to_string()));
        }
    }
    (first, None)
}

/// Test-only files and test modules are not part of the house.
fn is_test_file(rel: &str) -> bool {
    rel.split('/').any(|p| p == "tests" || p == "tests.rs")
        || rel.ends_with("_tests.rs")
        || rel == "floors.rs"
}

fn sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if is_test_file(&rel) {
                continue;
            }
            let mut text = std::fs::read_to_string(&p).unwrap();
            if let Some(i) = text.find("#[cfg(test)]\nmod tests") {
                text.truncate(i);
            }
            // Comments name modules freely (doc links, prose).
            let code: Vec<&str> = text
                .lines()
                .map(|l| match l.find("//") {
                    Some(i) => &l[..i],
                    None => l,
                })
                .collect();
            out.push((rel, code.join("\n")));
        }
    }
}

/// Expand a use-tree group (`a::{b, c::{d}}` without the outer braces) under `prefix`.
fn expand(prefix: &str, group: &str, out: &mut Vec<String>) {
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.find('{') {
            Some(b) => {
                let head = item[..b].trim_end_matches("::");
                let inner = &item[b + 1..item.rfind('}').unwrap_or(item.len())];
                expand(&join(prefix, head), inner, out);
            }
            None => {
                let name = item.split(" as ").next().unwrap_or(item).trim();
                out.push(join(prefix, name));
            }
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name) {
        (true, _) => name.to_string(),
        (false, "self") => prefix.to_string(),
        (false, _) => format!("{prefix}::{name}"),
    }
}

/// Every `crate::` path in `code`, groups expanded (`auth::jwt::JwtConfig`, ...).
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let preceded = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[i + "crate::".len()..];
        if preceded {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let head = rest[..end].trim_end_matches("::");
        if rest[end..].starts_with('{') {
            let mut depth = 0;
            let mut close = rest.len();
            for (j, c) in rest[end..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            close = end + j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            expand(head, &rest[end + 1..close], &mut out);
        } else if !head.is_empty() {
            out.push(head.to_string());
        }
    }
    out
}

/// What a path reaches: (`auth`, `Some(mode)`) or (`<module>`, `None`).
fn target(path: &str) -> (String, Option<String>) {
    let mut segs = path.split("::");
    let first = segs.next().unwrap_or("").to_string();
    let second = segs.next();
    match second {
        Some(s) if first == "auth" && MODES.contains(&s) => (first, Some(s.to_string())),
        _ => (first, None),
    }
}

/// A mode's config type named by the file schema (`auth::jwt::JwtConfig`, `signer::SignerConfig`).
fn is_config_type(path: &str) -> bool {
    path.rsplit("::")
        .next()
        .is_some_and(|l| l.ends_with("Config"))
}

fn violations() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    assert!(files.len() > 50, "read {} files", files.len());
    let mut bad = Vec::new();
    for (rel, code) in &files {
        let (module, mode) = module_of(rel);
        let config_module = rel.ends_with("/config.rs") && module != "config";
        for path in crate_paths(code) {
            let (to, to_mode) = target(&path);
            if to == module && to_mode == mode {
                continue;
            }
            let above = ABOVE_MODES.contains(&to.as_str());
            let why = if config_module && !(to == "config" || path.starts_with("auth::limits")) {
                Some("a config module imports only config/ and auth::limits")
            } else if module == "metrics" {
                Some("metrics imports nothing of the crate")
            } else if LOWER.contains(&module.as_str()) && (above || to == "auth") {
                (!(rel == "config/schema.rs" && is_config_type(&path)))
                    .then_some("a lower floor imports no mode, contract or module above")
            } else if module == "auth" && mode.is_some() && (above || (to_mode.is_some())) {
                Some("a mode imports no other mode and nothing above the modes")
            } else if module == "auth" && mode.is_none() && (above || to_mode.is_some()) {
                Some("the contract imports no mode and nothing above the modes")
            } else {
                None
            };
            if let Some(why) = why {
                bad.push(format!("src/{rel}: crate::{path}: {why}"));
            }
        }
    }
    bad
}

#[test]
fn every_module_imports_only_what_is_below_it() {
    let bad = violations();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_scanner_sees_grouped_and_inline_paths() {
    let code = "use crate::auth::{jwt, oidc::{a, b as c}, self};\nlet x = crate::snapshot::load;\n";
    assert_eq!(
        crate_paths(code),
        vec![
            "auth::jwt",
            "auth::oidc::a",
            "auth::oidc::b",
            "auth",
            "snapshot::load"
        ]
    );
    assert_eq!(
        target("auth::pkce::dropin"),
        ("auth".into(), Some("pkce".into()))
    );
    assert_eq!(
        module_of("auth/signed/keyserver/mod.rs").1.as_deref(),
        Some("signed")
    );
    assert!(is_config_type("auth::oidc::OidcRouteConfig"));
}
