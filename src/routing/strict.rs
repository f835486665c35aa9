//! `path_strictness`: refusals on top of the canonical path, each guarding against an upstream
//! that reads the path differently from the edge.

use std::borrow::Cow;

use serde::Deserialize;

use super::{canonical_path, PathError};

/// How strictly request paths are read (`path_strictness:` in the config). Each refusal is a 400
/// and guards against an upstream that reads the path differently from the edge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathStrictness {
    /// Allow `;` in the path. Refused by default: servlet containers (Tomcat, Jetty) drop
    /// `;parameters`, so `/admin;x` would be `/admin` to them.
    #[serde(default)]
    pub allow_path_parameters: bool,
    /// Match routes ignoring ASCII case, for backends that do (IIS, macOS/Windows file servers):
    /// then `/ADMIN` and `/%41DMIN` are the `/admin` route.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Allow a segment that ends in `.` or a space (`/admin.`, `/admin%20`). Refused by default:
    /// Windows/IIS and some file servers trim them.
    #[serde(default)]
    pub allow_trailing_dots: bool,
}

/// The canonical path with the strictness rules applied on top of `canonical_path`.
pub fn strict_path<'a>(raw: &'a str, rules: &PathStrictness) -> Result<Cow<'a, str>, PathError> {
    let path = canonical_path(raw)?;
    let b = path.as_bytes();
    if !rules.allow_path_parameters && b.contains(&b';') {
        return Err(PathError::Forbidden);
    }
    if !rules.allow_trailing_dots {
        for seg in path.split('/') {
            if seg.ends_with('.') || seg.ends_with("%20") {
                return Err(PathError::Forbidden);
            }
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictness_rules() {
        let d = PathStrictness::default();
        for bad in [
            "/admin;x",
            "/admin;jsessionid=1/x",
            "/admin.",
            "/admin%2e",
            "/admin%20",
            "/a./b",
            "/pub/%c0%ae%c0%ae/admin",
            "/%ff",
            "/%e2%82",
            "/adm%09in",
            "/adm%7fin",
            "/adm%1bin",
        ] {
            assert_eq!(strict_path(bad, &d), Err(PathError::Forbidden), "{bad}");
        }
        for good in ["/admin", "/a.b/c", "/caf%C3%A9", "/x/", "/a%20b"] {
            assert!(strict_path(good, &d).is_ok(), "{good}");
        }
        let lenient = PathStrictness {
            allow_path_parameters: true,
            allow_trailing_dots: true,
            case_insensitive: false,
        };
        assert_eq!(strict_path("/admin;x", &lenient).unwrap(), "/admin;x");
        assert_eq!(strict_path("/admin.", &lenient).unwrap(), "/admin.");
        // Overlong escapes stay refused whatever the settings.
        assert!(strict_path("/%c0%ae", &lenient).is_err());
    }
}
