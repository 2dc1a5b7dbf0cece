//! Object and namespace names, checked as the API server checks them
//! (k8s.io/apimachinery pkg/util/validation: `IsDNS1123Label`, `IsDNS1123Subdomain`).
//!
//! A name becomes a path segment (`/namespaces/{ns}/pods/{name}`) and, in tools built
//! on the lab, a file name: `..` or `../../x` must be refused where it enters, not
//! discovered where it is used.

/// A namespace name: an RFC 1123 label (at most 63 characters of `a-z`, `0-9` and
/// `-`, starting and ending with an alphanumeric). `Err` says what is wrong, in the
/// API server's words.
pub fn dns_label(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if !is_label(s) {
        return Err(format!(
            "{s:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')"
        ));
    }
    Ok(())
}

/// An object name: an RFC 1123 subdomain (at most 253 characters; labels of
/// `a-z`, `0-9` and `-` joined by `.`).
pub fn dns_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    if s.is_empty() || !s.split('.').all(is_label) {
        return Err(format!(
            "{s:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"
        ));
    }
    Ok(())
}

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tricks_and_uppercase_are_not_names() {
        for bad in [
            "", ".", "..", "../../x", "a/b", "Hub", "-a", "a-", "a..b", "a_b",
        ] {
            assert!(dns_subdomain(bad).is_err(), "{bad:?}");
        }
        for good in ["hub-65d9f46698-dj4jb", "node-1.example.com", "a", "0"] {
            assert!(dns_subdomain(good).is_ok(), "{good:?}");
        }
        assert!(dns_label("prod").is_ok());
        assert!(dns_label("a.b").is_err());
        assert!(dns_label(&"a".repeat(64)).is_err());
        assert!(dns_subdomain(&"a".repeat(254)).is_err());
    }
}
