//! Checks of request input that every service shares: the length of strings and lists (an
//! INVALID_ARGUMENT naming the field, never a 3 MB title stored or echoed), and `LIKE` patterns
//! that match the text asked for literally.

use crate::Error;

// Limits of the strings in requests (characters), checked before anything else: nothing
// unbounded is stored, searched or echoed back in an error.

/// Codes and ids: plan and indicator codes, resource ids, request ids.
pub const MAX_CODE: usize = 128;
/// Names: titles, units, sites, meters, departments, towns.
pub const MAX_NAME: usize = 200;
/// Free text: descriptions, evidence, notes, reasons.
pub const MAX_TEXT: usize = 4000;
/// Search text of the List calls.
pub const MAX_QUERY: usize = 200;
/// Dates ("YYYY-MM-DD").
pub const MAX_DATE: usize = 32;
/// Page tokens (ours are a few dozen characters).
pub const MAX_TOKEN: usize = 512;
/// Items of a list in a request (sites, drivers, tags).
pub const MAX_ITEMS: usize = 100;

/// Each `(field, value, max characters)` checked with [`check_len`], in order.
pub fn check_lengths(fields: &[(&str, &str, usize)]) -> Result<(), Error> {
    for (field, value, max) in fields {
        check_len(field, value, *max)?;
    }
    Ok(())
}

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
