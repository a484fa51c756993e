//! Connection options from a `postgres://` URL, with libpq's default user: a URL that names no
//! user (and no `PGUSER`) connects as the operating-system account running the process, as
//! `psql` does. sqlx asks the environment for that name and, where `$USER` is unset (a service,
//! a container, cron), falls back to a role called `anonymous` that no server has.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// The options `url` gives, with the user filled in as libpq would.
pub(crate) fn from_url(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let opts = PgConnectOptions::from_str(url)?;
    if names_user(url) || std::env::var_os("PGUSER").is_some() {
        return Ok(opts);
    }
    Ok(match os_user() {
        Some(name) => opts.username(&name),
        None => opts,
    })
}

/// Whether the URL names a user: `user@` before the host, or a `user=` parameter.
fn names_user(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, q),
        None => (rest, ""),
    };
    let authority = authority.split('/').next().unwrap_or_default();
    authority.contains('@') || query.split('&').any(|kv| kv.starts_with("user="))
}

/// The name of the account this process runs as (its effective uid in the passwd database),
/// else `$USER` or `$LOGNAME`.
fn os_user() -> Option<String> {
    let uid = rustix::process::geteuid().as_raw().to_string();
    let from_passwd = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)? == uid).then(|| name.to_string())
            })
        });
    from_passwd
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_its_user_before_the_host_or_as_a_parameter() {
        assert!(names_user("postgres://kora@db:5432/kora"));
        assert!(names_user("postgres://kora:pw@db/kora"));
        assert!(names_user("postgres://db/kora?sslmode=require&user=kora"));
        assert!(!names_user("postgres://127.0.0.1:5432/kora"));
        assert!(!names_user("postgres://db/kora?application_name=a@b"));
    }

    #[test]
    fn without_a_user_the_account_running_the_process_connects() {
        if std::env::var_os("PGUSER").is_some() {
            return;
        }
        let opts = from_url("postgres://127.0.0.1:5432/kora").unwrap();
        let expected = os_user().expect("this process's account has a name");
        assert_eq!(opts.get_username(), expected);
        assert_ne!(opts.get_username(), "anonymous");
        let named = from_url("postgres://someone@127.0.0.1:5432/kora").unwrap();
        assert_eq!(named.get_username(), "someone");
    }
}
