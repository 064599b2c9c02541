//! The unified social credit code (统一社会信用代码, GB 32100-2015) that names every
//! organization on the platform: 18 characters from a 31-character alphabet (digits and capitals
//! without I, O, S, V, Z), the last a check character over the first 17 (weights 3^i mod 31).
//! One implementation for the services, the demo and the tests.

use crate::Error;

/// The characters a code may hold, in the order of their values 0..=30.
pub const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// What is wrong with a code, in words a clerk understands.
fn value_of(position: usize, c: char) -> Result<u32, String> {
    ALPHABET
        .find(c)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            format!(
                "character {position} ({c:?}) is not allowed (digits and capitals except I, O, S, V, Z)"
            )
        })
}

/// The check character of the first 17 characters `first17`.
pub fn check_character(first17: &str) -> Result<char, String> {
    let chars: Vec<char> = first17.chars().collect();
    if chars.len() != 17 {
        return Err(format!(
            "give the first 17 characters (the check character is computed), not {}",
            chars.len()
        ));
    }
    let mut sum = 0u32;
    for (i, (c, w)) in chars.iter().zip(WEIGHTS).enumerate() {
        sum += value_of(i + 1, *c)? * w;
    }
    let check = (31 - sum % 31) % 31;
    ALPHABET
        .chars()
        .nth(check as usize)
        .ok_or_else(|| format!("no check character {check}"))
}

/// `first17` with its check character: the full 18-character code.
pub fn with_check_character(first17: &str) -> Result<String, String> {
    Ok(format!("{first17}{}", check_character(first17)?))
}

/// Checks `code` (the request's `field`): INVALID_ARGUMENT naming the field and what is wrong.
pub fn check(field: &str, code: &str) -> Result<(), Error> {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != 18 {
        return Err(Error::invalid(
            field,
            format!(
                "a unified social credit code has 18 characters, not {}",
                chars.len()
            ),
        ));
    }
    let first17: String = chars[..17].iter().collect();
    let expected = check_character(&first17).map_err(|why| Error::invalid(field, why))?;
    value_of(18, chars[17]).map_err(|why| Error::invalid(field, why))?;
    if chars[17] != expected {
        return Err(Error::invalid(
            field,
            format!("check character is wrong (expected {expected} for the first 17 characters)"),
        ));
    }
    Ok(())
}

/// The subject identification code (主体标识码, characters 9–17: the organization code) of a
/// well-formed `code`; `None` if it is not 18 characters.
pub fn subject_code(code: &str) -> Option<&str> {
    (code.chars().count() == 18)
        .then(|| code.get(8..17))
        .flatten()
}

/// Whether the codes `a` and `b` name the same organization: equal, or the same subject
/// identification code under another registration department or category (characters 1–2)
/// or division (3–8). Group structures (a parent and its subsidiaries) are not in the code.
pub fn same_organization(a: &str, b: &str) -> bool {
    a == b || subject_code(a).is_some_and(|s| subject_code(b) == Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked_by_gb_32100() {
        // A code published as a worked example of the standard.
        assert!(check("c", "91350100M000100Y43").is_ok());
        let wrong = check("c", "91350100M000100Y44");
        assert!(
            matches!(&wrong, Err(Error::InvalidArgument { field, reason }) if field == "c" && reason.contains("expected 3")),
            "{wrong:?}"
        );
        assert!(check("c", "91350100M000100Y4").is_err());
        assert!(check("c", "91350100M000100I43").is_err());
        assert!(check("c", "91350100M000100Y4I").is_err());
        assert_eq!(
            with_check_character("91350100M000100Y4").as_deref(),
            Ok("91350100M000100Y43")
        );
        assert!(with_check_character("9135").is_err());
        // Multi-byte input is counted in characters, never sliced mid-character.
        assert!(check("c", "统一社会信用代码统一社会信用代码统一").is_err());
    }

    #[test]
    fn the_same_organization_is_known_by_its_subject_code() {
        let a = "91350100M000100Y43";
        assert_eq!(subject_code(a), Some("M000100Y4"));
        // Another department's and division's registration of subject M000100Y4.
        let b = with_check_character("12320411M000100Y4").unwrap_or_default();
        assert!(same_organization(a, &b) && same_organization(a, a));
        let c = with_check_character("91350100M000100Y5").unwrap_or_default();
        assert!(!same_organization(a, &c));
        assert!(
            !same_organization("", a)
                && subject_code("统一社会信用代码统一社会信用代码统一").is_none()
        );
    }
}
