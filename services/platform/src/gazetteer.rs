//! The gazetteer (行政区划): which jurisdictions exist, their names, and what lies below each —
//! province → city → district → town or sub-district. Reference data every service holds a copy
//! of: `seeds/jurisdictions/*.toml`, compiled in, checked when first used.
//!
//! A place is found by its code (`320411004`) or its Chinese name (`新桥街道`); an unknown one is
//! INVALID_ARGUMENT naming the places that would do.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::Error;
use crate::jurisdiction::{Jurisdiction, Level};

/// The files of `seeds/jurisdictions/`, compiled in.
const SOURCES: &[(&str, &str)] = &[(
    "changzhou.toml",
    include_str!("../../../seeds/jurisdictions/changzhou.toml"),
)];

/// One jurisdiction of the gazetteer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub code: Jurisdiction,
    pub name_zh: String,
    pub name: String,
}

impl Place {
    pub fn level(&self) -> Level {
        self.code.level()
    }
}

/// The checked table of places.
#[derive(Debug)]
pub struct Gazetteer {
    /// Of every file, joined by "+": stored beside what refers to a place, so a later renumbering
    /// can be told apart.
    pub version: String,
    places: BTreeMap<Jurisdiction, Place>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: String,
    #[allow(dead_code)]
    source: String,
    places: Vec<FilePlace>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlace {
    code: String,
    name_zh: String,
    name: String,
}

/// The most places an error message names before "…".
const NAMED_IN_ERRORS: usize = 20;

impl Gazetteer {
    /// The compiled-in gazetteer. The seeds are checked by the tests, so a failure here is a
    /// build that shipped a broken seed: it panics at first use, before any request is served.
    pub fn builtin() -> &'static Gazetteer {
        static BUILTIN: OnceLock<Gazetteer> = OnceLock::new();
        BUILTIN.get_or_init(|| match Gazetteer::from_sources(SOURCES) {
            Ok(g) => g,
            Err(e) => panic!("seeds/jurisdictions is broken: {e}"),
        })
    }

    /// Reads and checks gazetteer files: every code valid and once, every name given and unique
    /// among its siblings, every place's parent present (a province's none).
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<Gazetteer, String> {
        let mut versions = Vec::new();
        let mut places = BTreeMap::new();
        for (name, text) in sources {
            let file: File = toml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
            versions.push(file.version);
            for (i, p) in file.places.into_iter().enumerate() {
                let at = format!("{name}: places[{i}]");
                let code =
                    Jurisdiction::parse("code", &p.code).map_err(|e| format!("{at}: {e}"))?;
                if p.name_zh.trim().is_empty() || p.name.trim().is_empty() {
                    return Err(format!("{at}: {code} needs name_zh and name"));
                }
                let place = Place {
                    code: code.clone(),
                    name_zh: p.name_zh.trim().to_string(),
                    name: p.name.trim().to_string(),
                };
                if places.insert(code.clone(), place).is_some() {
                    return Err(format!("{at}: {code} is listed twice"));
                }
            }
        }
        let gazetteer = Gazetteer {
            version: versions.join("+"),
            places,
        };
        for place in gazetteer.places.values() {
            if let Some(parent) = place.code.parent() {
                if !gazetteer.places.contains_key(&parent) {
                    return Err(format!(
                        "{} {}: its parent {parent} is not in the gazetteer",
                        place.code, place.name_zh
                    ));
                }
                let twins = gazetteer
                    .children(&parent)
                    .filter(|p| p.name_zh == place.name_zh)
                    .count();
                if twins > 1 {
                    return Err(format!(
                        "{}: two places under {parent} are named {}",
                        place.code, place.name_zh
                    ));
                }
            }
        }
        Ok(gazetteer)
    }

    pub fn get(&self, code: &Jurisdiction) -> Option<&Place> {
        self.places.get(code)
    }

    /// The place of a code, checked: INVALID_ARGUMENT on `field` when the code is malformed
    /// or not in the gazetteer.
    pub fn place(&self, field: &str, code: &str) -> Result<&Place, Error> {
        let code = Jurisdiction::parse(field, code)?;
        self.places.get(&code).ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "{code} is not in the gazetteer (seeds/jurisdictions, version {}); known: {}",
                    self.version,
                    self.named(self.places.values().filter(|p| p.level() != Level::Town))
                ),
            )
        })
    }

    /// The places directly below `code`, in code order.
    pub fn children(&self, code: &Jurisdiction) -> impl Iterator<Item = &Place> + '_ {
        let code = code.clone();
        self.places
            .values()
            .filter(move |p| p.code.parent().as_ref() == Some(&code))
    }

    /// `code` and every place above it, nearest first.
    pub fn ancestors(&self, code: &Jurisdiction) -> Vec<&Place> {
        let mut out = Vec::new();
        let mut at = Some(code.clone());
        while let Some(c) = at {
            if let Some(p) = self.places.get(&c) {
                out.push(p);
            }
            at = c.parent();
        }
        out
    }

    /// The districts (and county-level cities) inside `code`, in code order.
    pub fn districts_within(&self, code: &Jurisdiction) -> impl Iterator<Item = &Place> + '_ {
        let code = code.clone();
        self.places
            .values()
            .filter(move |p| p.level() == Level::District && code.contains(&p.code))
    }

    /// Where a water user's site lies, within `district`: a town or sub-district by code or
    /// Chinese name, or — for a district the gazetteer has no towns of — the district itself
    /// (its code, or empty `text`). INVALID_ARGUMENT on `field` naming the valid towns.
    pub fn site(&self, field: &str, district: &Jurisdiction, text: &str) -> Result<&Place, Error> {
        let text = text.trim();
        let district_place = self.place(field, district.as_str())?;
        let towns: Vec<&Place> = self.children(district).collect();
        if towns.is_empty() && (text.is_empty() || text == district.as_str()) {
            return Ok(district_place);
        }
        let found = towns
            .iter()
            .find(|p| p.code.as_str() == text || p.name_zh == text)
            .copied();
        found.ok_or_else(|| {
            let why = if text.is_empty() {
                "a town or sub-district (镇/街道) is needed".to_string()
            } else {
                format!("{text:?} is not a town or sub-district of it")
            };
            Error::invalid(
                field,
                format!(
                    "{}{} ({}): {why}; the valid ones: {}",
                    district_place.name_zh,
                    self.parent_name(district),
                    district,
                    self.named(towns.iter().copied())
                ),
            )
        })
    }

    /// Like [`Gazetteer::site`] with no district given: a town or sub-district named anywhere in
    /// the gazetteer — by code, or by a Chinese name only one place has — or a district the
    /// gazetteer has no towns of yet (天宁区 320402 today), which is then its own site, so that
    /// water users there can still register.
    pub fn town(&self, field: &str, text: &str) -> Result<&Place, Error> {
        let text = text.trim();
        let sites = || self.places.values().filter(|p| self.is_site(p));
        if let Ok(code) = Jurisdiction::parse(field, text)
            && let Some(p) = self.places.get(&code).filter(|p| self.is_site(p))
        {
            return Ok(p);
        }
        let named: Vec<&Place> = sites().filter(|p| p.name_zh == text).collect();
        match named.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::invalid(
                field,
                format!(
                    "{text:?} is not a town or sub-district (镇/街道) of the gazetteer (nor a district it has no towns of yet); the valid ones: {}",
                    self.named(sites())
                ),
            )),
            many => Err(Error::invalid(
                field,
                format!(
                    "{text:?} names more than one place; give the code: {}",
                    self.named(many.iter().copied())
                ),
            )),
        }
    }

    /// The code of a site known only by its name (rows and events written before the
    /// gazetteer): '' when the name is empty or not a site of the gazetteer, whose free text
    /// stays readable as it was.
    pub fn code_of_site(&self, name: &str) -> String {
        if name.trim().is_empty() {
            return String::new();
        }
        self.town("town", name)
            .map(|p| p.code.as_str().to_string())
            .unwrap_or_default()
    }

    /// Whether a site can be at `place`: a town, or a district without towns in the gazetteer.
    fn is_site(&self, place: &Place) -> bool {
        match place.level() {
            Level::Town => true,
            Level::District => self.children(&place.code).next().is_none(),
            Level::Province | Level::City => false,
        }
    }

    /// "（常州市）" style: the name of the place above, for messages.
    fn parent_name(&self, code: &Jurisdiction) -> String {
        code.parent()
            .and_then(|p| self.places.get(&p))
            .map(|p| format!("（{}）", p.name_zh))
            .unwrap_or_default()
    }

    /// "320411004 新桥街道, …" for messages, at most [`NAMED_IN_ERRORS`] places.
    fn named<'a>(&self, places: impl Iterator<Item = &'a Place>) -> String {
        let all: Vec<String> = places
            .map(|p| format!("{} {}", p.code, p.name_zh))
            .collect();
        if all.len() > NAMED_IN_ERRORS {
            format!(
                "{} … ({} in all)",
                all[..NAMED_IN_ERRORS].join(", "),
                all.len()
            )
        } else {
            all.join(", ")
        }
    }

    /// Every place, in code order.
    pub fn places(&self) -> impl Iterator<Item = &Place> {
        self.places.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(code: &str) -> Jurisdiction {
        Jurisdiction::parse("code", code).unwrap_or_else(|e| panic!("{code}: {e}"))
    }

    #[test]
    fn the_seeded_gazetteer_holds_changzhou_and_xinbeis_towns() {
        let g = Gazetteer::builtin();
        let xinbei = j("320411");
        assert_eq!(g.get(&xinbei).map(|p| p.name_zh.as_str()), Some("新北区"));
        let towns: Vec<&str> = g.children(&xinbei).map(|p| p.name_zh.as_str()).collect();
        assert_eq!(towns.len(), 10, "{towns:?}");
        assert!(towns.contains(&"新桥街道") && towns.contains(&"奔牛镇"));
        let changzhou = j("320400");
        assert_eq!(g.districts_within(&changzhou).count(), 6);
        assert_eq!(g.districts_within(&j("320000")).count(), 6);
        let up: Vec<&str> = g
            .ancestors(&j("320411004"))
            .iter()
            .map(|p| p.name_zh.as_str())
            .collect();
        assert_eq!(up, ["新桥街道", "新北区", "常州市", "江苏省"]);
    }

    #[test]
    fn a_site_is_a_town_of_its_district_or_an_error_naming_them() {
        let g = Gazetteer::builtin();
        let xinbei = j("320411");
        assert_eq!(
            g.site("town", &xinbei, "新桥街道")
                .map(|p| p.code.as_str())
                .ok(),
            Some("320411004")
        );
        assert_eq!(
            g.site("town", &xinbei, " 320411100 ")
                .map(|p| p.name_zh.as_str())
                .ok(),
            Some("薛家镇")
        );
        for bad in ["", "新桥", "湖塘镇", "320412100", "320411"] {
            let err = g.site("town", &xinbei, bad).expect_err(bad);
            let text = err.to_string();
            assert!(
                matches!(&err, Error::InvalidArgument { field, .. } if field == "town")
                    && text.contains("320411004 新桥街道")
                    && text.contains("新北区"),
                "{bad}: {text}"
            );
        }
        // Tianning has no towns in the gazetteer yet: the district itself is the site.
        let tianning = j("320402");
        assert_eq!(
            g.site("town", &tianning, "").map(|p| p.code.as_str()).ok(),
            Some("320402")
        );
        assert!(
            g.site("town", &j("320499"), "").is_err(),
            "not in the gazetteer"
        );
    }

    #[test]
    fn a_town_is_found_by_code_or_by_its_one_name() {
        let g = Gazetteer::builtin();
        assert_eq!(
            g.town("t", "湖塘镇").map(|p| p.code.as_str()).ok(),
            Some("320412100")
        );
        assert_eq!(
            g.town("t", "320411004").map(|p| p.name_zh.as_str()).ok(),
            Some("新桥街道")
        );
        assert!(
            g.town("t", "320411").is_err(),
            "a district with towns is not a site"
        );
        assert!(
            g.town("t", "新北区").is_err(),
            "a district with towns is not a site"
        );
        assert!(g.town("t", "320400").is_err(), "a city is not a site");
        assert!(g.town("t", "不存在镇").is_err());
        assert_eq!(g.code_of_site(" 新桥街道 "), "320411004");
        assert_eq!(g.code_of_site("不存在镇"), "");
        assert_eq!(g.code_of_site(""), "");
        // 天宁区 has no towns in the gazetteer yet: a water user there names the district.
        assert_eq!(
            g.town("t", "320402").map(|p| p.name_zh.as_str()).ok(),
            Some("天宁区")
        );
        assert_eq!(
            g.town("t", "天宁区").map(|p| p.code.as_str()).ok(),
            Some("320402")
        );
        let err = g.town("t", "新桥").expect_err("not a town");
        let text = err.to_string();
        assert!(
            text.contains("320411004 新桥街道") && text.contains("320402 天宁区"),
            "{text}"
        );
    }

    #[test]
    fn broken_seeds_are_refused_with_the_place_named() {
        let file = |places: &str| format!("version = \"t\"\nsource = \"s\"\n{places}");
        let place = |code: &str, name: &str| {
            format!("[[places]]\ncode = \"{code}\"\nname_zh = \"{name}\"\nname = \"x\"\n")
        };
        let cases = [
            (
                place("320000", "江苏省") + &place("320000", "江苏省"),
                "listed twice",
            ),
            (place("320411", "新北区"), "parent 320400"),
            (
                place("320000", "江苏省") + &place("3204", "常州市"),
                "six digits",
            ),
            (
                place("320000", "江苏省") + &place("320400", "常州市") + &place("320500", "常州市"),
                "two places",
            ),
        ];
        for (places, expected) in cases {
            let text = file(&places);
            let err = Gazetteer::from_sources(&[("t.toml", &text)]).expect_err(expected);
            assert!(err.contains(expected), "{expected}: {err}");
        }
        assert!(Gazetteer::from_sources(&[("t.toml", "version = 1")]).is_err());
    }
}
