//! Tenants: every run, trigger, registered workflow, API key and audit entry belongs to one.
//! What existed before tenants, and everything the CLI does without `--tenant`, belongs to
//! [`DEFAULT`].

/// The tenant of runs submitted without one.
pub const DEFAULT: &str = "default";

/// The default tenant's name, owned (serde's `default = ...` wants a function).
pub fn default_name() -> String {
    DEFAULT.to_string()
}

/// Whether `t` is the default tenant (serde's `skip_serializing_if`: messages of the default
/// tenant encode exactly as before tenants existed).
pub fn is_default(t: &str) -> bool {
    t == DEFAULT
}

/// A tenant name: 1-64 lowercase letters, digits, `-` or `_`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant {name:?}: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        ))
    }
}

/// How the ledger stores an idempotency key, so that another tenant's key is another key: the
/// default tenant's as given (as before tenants existed), any other's as `<tenant>/<key>`.
pub fn scoped_key(tenant: &str, key: &str) -> String {
    if is_default(tenant) {
        key.to_string()
    } else {
        format!("{tenant}/{key}")
    }
}

/// The key a tenant gave, from the one the ledger stores ([`scoped_key`]'s inverse).
pub fn unscoped_key<'a>(tenant: &str, stored: &'a str) -> &'a str {
    if is_default(tenant) {
        return stored;
    }
    stored
        .strip_prefix(tenant)
        .and_then(|k| k.strip_prefix('/'))
        .unwrap_or(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("acme-eu_2").is_ok());
        assert!(check_name(DEFAULT).is_ok());
        for bad in ["", "Acme", "-x", "a.b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_scoped_by_tenant() {
        assert_eq!(scoped_key(DEFAULT, "k/1"), "k/1");
        assert_eq!(scoped_key("acme", "k/1"), "acme/k/1");
        assert_eq!(unscoped_key("acme", &scoped_key("acme", "k/1")), "k/1");
        assert_eq!(unscoped_key(DEFAULT, "acme/k"), "acme/k");
    }
}
