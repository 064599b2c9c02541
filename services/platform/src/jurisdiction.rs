//! Jurisdictions named by their administrative division code (行政区划代码, GB/T 2260): six
//! digits, two for the province, two for the city, two for the district or county — Jiangsu
//! 320000, Changzhou 320400, Xinbei 320411 — and three more for a town or sub-district below a
//! district (320411004 新桥街道).
//!
//! The code alone says what contains what: a province (`PP0000`) contains every code starting
//! with `PP`, a city (`PPCC00`) every code starting with `PPCC`, a district only itself. So an
//! administrator of Changzhou city reaches its districts and their towns by the code alone. Which
//! codes exist, and their names, is the gazetteer's ([`crate::gazetteer`]).

use std::fmt;

use crate::Error;

/// The two-digit province-level prefixes of GB/T 2260 (provinces, autonomous regions,
/// municipalities; 71 Taiwan, 81 Hong Kong, 82 Macao).
const PROVINCES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71",
    "81", "82",
];

/// A checked six-digit administrative division code.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Jurisdiction(String);

/// The level a code names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Province,
    City,
    District,
    /// A town (镇) or sub-district (街道): nine digits, the district's six first.
    Town,
}

impl Jurisdiction {
    /// Checks `code` (surrounding blanks ignored); INVALID_ARGUMENT on `field` saying what is
    /// wrong.
    pub fn parse(field: &str, code: &str) -> Result<Jurisdiction, Error> {
        let code = code.trim();
        if !matches!(code.len(), 6 | 9) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid(
                field,
                format!(
                    "an administrative division code (行政区划代码, GB/T 2260) has six digits, e.g. 320411 for 常州市新北区 (nine for a town or sub-district); got {:?}",
                    code.chars().take(32).collect::<String>()
                ),
            ));
        }
        if !PROVINCES.contains(&&code[..2]) {
            return Err(Error::invalid(
                field,
                format!(
                    "{code}: {} is not a province-level code of GB/T 2260 (e.g. 32 Jiangsu)",
                    &code[..2]
                ),
            ));
        }
        if &code[2..4] == "00" && &code[4..] != "00" {
            return Err(Error::invalid(
                field,
                format!("{code}: a code without a city part (PP00..) names the province, PP0000"),
            ));
        }
        if code.len() == 9 && (code[4..6] == *"00" || code[6..] == *"000") {
            return Err(Error::invalid(
                field,
                format!(
                    "{code}: a town's nine digits are its district's six (PPCCDD, DD not 00) and three not all 0"
                ),
            ));
        }
        Ok(Jurisdiction(code.to_string()))
    }

    /// The platform's district when nobody configured one ([`DEFAULT_DISTRICT`], 常州市新北区).
    pub fn default_district() -> Jurisdiction {
        Jurisdiction(DEFAULT_DISTRICT.to_string())
    }

    /// Where a stored row belongs: its code, or, for a row without one (or with one that is not
    /// a code: rows from before jurisdictions), the platform's district. The one rule for rows
    /// without a code, in every service: they were all entered when the platform served one
    /// district.
    pub fn of_stored(code: &str) -> Jurisdiction {
        Jurisdiction::parse("jurisdiction_code", code).unwrap_or_else(|_| Self::default_district())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn level(&self) -> Level {
        if self.0.len() == 9 {
            Level::Town
        } else if self.0.ends_with("0000") {
            Level::Province
        } else if self.0.ends_with("00") {
            Level::City
        } else {
            Level::District
        }
    }

    /// The prefix every code inside this jurisdiction starts with.
    fn prefix(&self) -> &str {
        match self.level() {
            Level::Province => &self.0[..2],
            Level::City => &self.0[..4],
            Level::District | Level::Town => &self.0,
        }
    }

    /// The jurisdiction directly above: a town's district, a district's city, a city's
    /// province; `None` for a province. (A municipality's districts, 110101, have the city
    /// part 01 above them as in GB/T 2260.)
    pub fn parent(&self) -> Option<Jurisdiction> {
        match self.level() {
            Level::Province => None,
            Level::City => Some(Jurisdiction(format!("{}0000", &self.0[..2]))),
            Level::District => Some(Jurisdiction(format!("{}00", &self.0[..4]))),
            Level::Town => Some(Jurisdiction(self.0[..6].to_string())),
        }
    }

    /// The district a town lies in, or the district itself; `None` above district level.
    pub fn district(&self) -> Option<Jurisdiction> {
        match self.level() {
            Level::Town => self.parent(),
            Level::District => Some(self.clone()),
            Level::Province | Level::City => None,
        }
    }

    /// Whether `other` is this jurisdiction or lies inside it.
    pub fn contains(&self, other: &Jurisdiction) -> bool {
        other.0.starts_with(self.prefix())
    }

    /// The smallest and the largest code inside this jurisdiction, for
    /// `jurisdiction BETWEEN $lo AND $hi` in SQL: text order, so the six-digit code sorts
    /// before the nine-digit codes of its towns and the upper bound is padded to nine.
    pub fn bounds(&self) -> (String, String) {
        let prefix = self.prefix();
        (
            format!(
                "{prefix}{}",
                "0".repeat(6usize.saturating_sub(prefix.len()))
            ),
            format!("{prefix}{}", "9".repeat(9 - prefix.len())),
        )
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The platform's district when nobody configured one: 常州市新北区.
pub const DEFAULT_DISTRICT: &str = "320411";

/// The longest department code (the plans' department codes: `agri`, `housing`, …).
pub const MAX_DEPARTMENT: usize = 32;

/// Checks a department code as the plans write them: 1 to 32 lower-case letters, digits, `-`
/// or `_` (e.g. `agri` for 农业农村局). Empty means none.
pub fn department(field: &str, code: &str) -> Result<Option<String>, Error> {
    let code = code.trim();
    if code.is_empty() {
        return Ok(None);
    }
    if code.len() > MAX_DEPARTMENT
        || !code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid(
            field,
            format!(
                "a department code as the plan names it: 1 to {MAX_DEPARTMENT} lower-case letters, digits, - or _ (e.g. agri)"
            ),
        ));
    }
    Ok(Some(code.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(code: &str) -> Jurisdiction {
        Jurisdiction::parse("jurisdiction", code).unwrap_or_else(|e| panic!("{code}: {e}"))
    }

    #[test]
    fn codes_are_six_digits_of_a_real_province() {
        assert_eq!(j(" 320411 ").as_str(), "320411");
        assert_eq!(j(DEFAULT_DISTRICT), Jurisdiction::default_district());
        for bad in [
            "",
            "32041",
            "3204111",
            "32041a",
            "３２０４１１",
            "990411",
            "000000",
            "320011",
            "32041100",
            "320411000",
            "320400001",
            "3204110011",
        ] {
            let err = Jurisdiction::parse("jurisdiction", bad).expect_err(bad);
            assert!(
                matches!(&err, Error::InvalidArgument { field, .. } if field == "jurisdiction"),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn a_code_contains_the_codes_below_it() {
        let (jiangsu, changzhou, xinbei, wujin) =
            (j("320000"), j("320400"), j("320411"), j("320412"));
        assert_eq!(xinbei.level(), Level::District);
        assert_eq!(changzhou.level(), Level::City);
        assert_eq!(jiangsu.level(), Level::Province);
        assert!(xinbei.contains(&xinbei));
        assert!(!xinbei.contains(&wujin));
        assert!(!xinbei.contains(&changzhou));
        assert!(changzhou.contains(&xinbei) && changzhou.contains(&wujin));
        assert!(!changzhou.contains(&j("320500")));
        assert!(jiangsu.contains(&xinbei) && jiangsu.contains(&changzhou));
        assert!(!jiangsu.contains(&j("330106")));
        let xinqiao = j("320411004");
        assert_eq!(xinqiao.level(), Level::Town);
        assert!(xinbei.contains(&xinqiao) && changzhou.contains(&xinqiao));
        assert!(!wujin.contains(&xinqiao) && !xinqiao.contains(&xinbei));
        assert_eq!(xinqiao.parent(), Some(xinbei.clone()));
        assert_eq!(xinqiao.district(), Some(xinbei.clone()));
        assert_eq!(xinbei.parent(), Some(changzhou.clone()));
        assert_eq!(changzhou.parent(), Some(jiangsu.clone()));
        assert_eq!(jiangsu.parent(), None);
        assert_eq!(changzhou.district(), None);
        // Text order: each range holds its own codes and its towns', nothing of a neighbour's.
        assert_eq!(xinbei.bounds(), ("320411".into(), "320411999".into()));
        assert_eq!(changzhou.bounds(), ("320400".into(), "320499999".into()));
        assert_eq!(jiangsu.bounds(), ("320000".into(), "329999999".into()));
        assert_eq!(xinqiao.bounds(), ("320411004".into(), "320411004".into()));
        let within = |outer: &Jurisdiction, code: &str| {
            let (lo, hi) = outer.bounds();
            lo.as_str() <= code && code <= hi.as_str()
        };
        for (outer, code, inside) in [
            (&xinbei, "320411", true),
            (&xinbei, "320411004", true),
            (&xinbei, "320412", false),
            (&xinbei, "320412100", false),
            (&xinbei, "320410", false),
            (&changzhou, "320411004", true),
            (&changzhou, "320500", false),
            (&jiangsu, "330106", false),
        ] {
            assert_eq!(within(outer, code), inside, "{outer} ∋ {code}");
        }
    }

    #[test]
    fn department_codes_are_the_plans_short_codes() {
        assert_eq!(
            department("d", " agri ").ok().flatten().as_deref(),
            Some("agri")
        );
        assert_eq!(department("d", "").ok().flatten(), None);
        assert!(department("d", "Agri").is_err());
        assert!(department("d", "农业农村局").is_err());
        assert!(department("d", &"a".repeat(33)).is_err());
    }
}
