//! Who may pass once logged in: e-mail domains (exact, after the `@`; `*` for any), single
//! e-mail addresses, and groups. A logged-in user who fails gets 403, never another login.
//! E-mails with more than one `@` or a quoted local part are refused outright (parsers disagree
//! on where such a domain starts: oauth2-proxy's domain-check bypasses).

/// A compiled policy; every part that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `None`: no domain rule here (a filter that narrows only groups). `Some(empty)` never
    /// happens (refused at load).
    domains: Option<Vec<Box<str>>>,
    any_domain: bool,
    emails: Vec<Box<str>>,
    groups: Vec<Box<str>>,
}

impl Policy {
    /// Build from config lists (domains and e-mails compared ASCII case-insensitively).
    pub fn new(domains: Option<&[String]>, emails: &[String], groups: &[String]) -> Policy {
        let any_domain = domains.is_some_and(|d| d.iter().any(|x| x == "*"));
        Policy {
            domains: domains.map(|d| {
                d.iter()
                    .filter(|x| *x != "*")
                    .map(|x| x.trim_start_matches('@').to_ascii_lowercase().into())
                    .collect()
            }),
            any_domain,
            emails: emails
                .iter()
                .map(|e| e.to_ascii_lowercase().into())
                .collect(),
            groups: groups.iter().map(|g| g.as_str().into()).collect(),
        }
    }

    /// Whether a user with this e-mail and these groups passes.
    pub fn allows(&self, email: Option<&str>, groups: &[String]) -> bool {
        self.email_ok(email) && self.groups_ok(groups)
    }

    fn email_ok(&self, email: Option<&str>) -> bool {
        if self.domains.is_none() && self.emails.is_empty() {
            return true;
        }
        let Some(email) = email.and_then(valid_email) else {
            return false;
        };
        if self.emails.iter().any(|e| e.eq_ignore_ascii_case(email)) {
            return true;
        }
        let Some(domains) = &self.domains else {
            return false;
        };
        if self.any_domain {
            return true;
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    fn groups_ok(&self, groups: &[String]) -> bool {
        self.groups.is_empty()
            || groups
                .iter()
                .any(|g| self.groups.iter().any(|want| **want == **g))
    }
}

/// The e-mail when it is plain `local@domain` (one `@`, both parts non-empty, no quotes,
/// whitespace or control bytes).
fn valid_email(e: &str) -> Option<&str> {
    let (local, domain) = e.split_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !local.starts_with('"')
        && e.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    ok.then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn domains_are_exact_and_tricky_addresses_refused() {
        let p = Policy::new(Some(&s(&["example.com"])), &[], &[]);
        assert!(p.allows(Some("alice@example.com"), &[]));
        assert!(p.allows(Some("Alice@EXAMPLE.com"), &[]));
        for bad in [
            "alice@evil-example.com",
            "alice@example.com.evil.com",
            "alice@sub.example.com",
            "alice@evil.com@example.com",
            "\"alice@evil.com\"@example.com",
            "alice example@example.com",
            "@example.com",
            "alice@",
            "example.com",
        ] {
            assert!(!p.allows(Some(bad), &[]), "{bad}");
        }
        assert!(!p.allows(None, &[]), "no e-mail, a domain rule: refused");
        let any = Policy::new(Some(&s(&["*"])), &[], &[]);
        assert!(any.allows(Some("bob@anything.test"), &[]));
        assert!(!any.allows(Some("a@b@c"), &[]));
        let listed = Policy::new(Some(&s(&["example.com"])), &s(&["guest@other.test"]), &[]);
        assert!(listed.allows(Some("guest@other.test"), &[]));
        assert!(!listed.allows(Some("host@other.test"), &[]));
    }

    #[test]
    fn groups_need_one_match() {
        let p = Policy::new(None, &[], &s(&["admins", "ops"]));
        assert!(p.allows(None, &s(&["users", "ops"])));
        assert!(!p.allows(Some("a@example.com"), &s(&["users"])));
        assert!(!p.allows(Some("a@example.com"), &[]));
        assert!(!p.allows(None, &s(&["Admins"])), "exact, case-sensitive");
        assert!(Policy::default().allows(None, &[]));
    }
}
