/// NATS subject matching: `*` matches one token, `>` one or more trailing tokens.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subject_matches as m;

    #[test]
    fn wildcards() {
        assert!(m("a.b", "a.b"));
        assert!(m("a.*", "a.b"));
        assert!(!m("a.*", "a.b.c"));
        assert!(m("a.>", "a.b.c"));
        assert!(!m("a.>", "a"));
        assert!(!m("a.b", "a.c"));
        assert!(m(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.*",
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.w"
        ));
    }
}
