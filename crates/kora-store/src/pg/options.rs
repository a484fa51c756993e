//! Connection options from a `postgres://` URL, with libpq's default user: a URL that names no
//! user (and no `PGUSER`) connects as the operating-system account running the process, as
//! `psql` does. sqlx asks the environment for that name and, where `$USER` is unset (a service,
//! a container, cron), falls back to a role called `anonymous` that no server has.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use super::PgConfig;
use crate::Error;

/// The options `[database]` gives: its URL as [`from_url`] reads it, with the password from
/// `password_file` when one is named. Errors name the file, never its contents.
pub(crate) fn for_config(cfg: &PgConfig) -> Result<PgConnectOptions, Error> {
    let opts = from_url(&cfg.url)?;
    let Some(path) = &cfg.password_file else {
        return Ok(opts);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "database.password_file {}: {e} (the file must exist and be readable by this process)",
            path.display()
        ))
    })?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() || password.contains('\n') {
        return Err(Error::Config(format!(
            "database.password_file {}: expected the password alone on one line",
            path.display()
        )));
    }
    Ok(opts.password(password))
}

/// Whether the URL carries a password (`user:password@host`).
pub(crate) fn url_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(creds, _)| creds.contains(':'))
}

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
    fn a_password_in_the_url_is_seen() {
        assert!(url_password("postgres://kora:pw@db:5432/kora"));
        assert!(!url_password("postgres://kora@db:5432/kora"));
        assert!(!url_password("postgres://db:5432/kora?user=a:b@c"));
    }

    #[test]
    fn the_password_file_fills_the_password_and_its_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("kora-pwfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        let cfg = PgConfig {
            url: "postgres://kora@127.0.0.1:5432/kora".into(),
            password_file: Some(file.clone()),
            ..PgConfig::default()
        };
        // sqlx has no getter for the password; the options' Debug form holds it.
        let opts = for_config(&cfg).unwrap();
        assert!(format!("{opts:?}").contains("s3cret-from-file"));
        std::fs::write(&file, "two\nlines\n").unwrap();
        let e = for_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("one line") && !e.contains("two"), "{e}");
        let missing = PgConfig {
            password_file: Some(dir.join("absent")),
            ..cfg.clone()
        };
        let e = for_config(&missing).unwrap_err().to_string();
        assert!(e.contains("absent") && e.contains("readable"), "{e}");
        let both = PgConfig {
            url: "postgres://kora:pw@127.0.0.1:5432/kora".into(),
            ..cfg
        };
        assert!(both.validate().unwrap_err().contains("keep only the file"));
        let _ = std::fs::remove_dir_all(&dir);
    }

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
