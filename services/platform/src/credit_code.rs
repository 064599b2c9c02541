//! The unified social credit code (统一社会信用代码, GB 32100-2015) that names every
//! organization: one check for every service (matching's companies and water users, accounts'
//! organizations).

use crate::{Error, Result};

/// 18 characters from a 31-letter alphabet, the last a check character over the first 17;
/// errors are INVALID_ARGUMENT on `field`.
pub fn check(field: &str, code: &str) -> Result<()> {
    const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
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
    let mut values = Vec::with_capacity(18);
    for (i, c) in chars.iter().enumerate() {
        let v = ALPHABET.find(*c).ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "character {} ({c:?}) is not allowed (digits and capitals except I, O, S, V, Z)",
                    i + 1
                ),
            )
        })?;
        values.push(v as u32);
    }
    let sum: u32 = values[..17].iter().zip(WEIGHTS).map(|(v, w)| v * w).sum();
    let check = (31 - sum % 31) % 31;
    if values[17] != check {
        let expected = ALPHABET.chars().nth(check as usize).unwrap_or('?');
        return Err(Error::invalid(
            field,
            format!("check character is wrong (expected {expected} for the first 17 characters)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_checked_by_gb_32100() {
        assert!(super::check("c", "91350100M000100Y43").is_ok());
        assert!(super::check("c", "91350100M000100Y44").is_err());
        assert!(super::check("c", "91350100M000100Y4").is_err());
        assert!(super::check("c", "91350100M000100YI3").is_err());
    }
}
