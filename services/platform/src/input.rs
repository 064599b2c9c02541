//! Checks of request input that every service shares: the length of strings and lists (an
//! INVALID_ARGUMENT naming the field, never a 3 MB title stored or echoed), and `LIKE` patterns
//! that match the text asked for literally.

use crate::Error;

/// `text` with the `LIKE` wildcards `%` and `_` (and the escape character `\` itself) escaped
/// by a backslash, for a pattern used with `ESCAPE '\'` (the same on SQLite and PostgreSQL): a
/// filter for "50%" must not match "500".
pub fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `LIKE … ESCAPE '\'` pattern of "contains `text`"; empty for an empty `text` (no filter).
pub fn like_contains(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("%{}%", escape_like(text))
    }
}

/// At most `max` characters in `value`.
pub fn check_len(field: &str, value: &str, max: usize) -> Result<(), Error> {
    // Bytes bound characters: most values never need counting.
    if value.len() <= max {
        return Ok(());
    }
    let n = value.chars().count();
    if n <= max {
        return Ok(());
    }
    Err(Error::invalid(
        field,
        format!("at most {max} characters (got {n})"),
    ))
}

/// At most `max` bytes in `value` (documents: a plan file, an import).
pub fn check_bytes(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.len() <= max {
        return Ok(());
    }
    Err(Error::invalid(
        field,
        format!("at most {max} bytes (got {})", value.len()),
    ))
}

/// At most `max` items in a list of `len`.
pub fn check_count(field: &str, len: usize, max: usize) -> Result<(), Error> {
    if len <= max {
        return Ok(());
    }
    Err(Error::invalid(
        field,
        format!("at most {max} items (got {len})"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%"), "50\\%");
        assert_eq!(escape_like("a_b\\c"), "a\\_b\\\\c");
        assert_eq!(escape_like("新桥"), "新桥");
        assert_eq!(like_contains("50%"), "%50\\%%");
        assert_eq!(like_contains(""), "");
    }

    #[test]
    fn limits_name_the_field() {
        assert!(check_len("title", "新桥街道", 4).is_ok());
        let e = check_len("title", "新桥街道x", 4).expect_err("long");
        assert!(
            matches!(&e, Error::InvalidArgument { field, reason } if field == "title" && reason.contains("at most 4 characters (got 5)")),
            "{e}"
        );
        assert!(check_bytes("plan_toml", "abc", 3).is_ok());
        assert!(check_bytes("plan_toml", "abcd", 3).is_err());
        assert!(check_count("sites", 10, 10).is_ok());
        assert!(matches!(
            check_count("sites", 11, 10),
            Err(Error::InvalidArgument { field, .. }) if field == "sites"
        ));
    }
}
