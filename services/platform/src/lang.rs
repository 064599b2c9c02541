//! The two languages people read cwsm in: Chinese first, English beside it.
//!
//! A client says which it wants: the CLI with `--lang` (default from the locale), the
//! dashboard with `?lang=`, any gRPC caller in the `accept-language` metadata (its first tag;
//! none or another language: English, the API's documented default). What a service writes for
//! people (ranking explanations, settlement statements) is kept in both ([`Text`]) and answered
//! in the one asked.

use serde::{Deserialize, Serialize};

/// A language of the platform's texts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lang {
    /// 简体中文.
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Zh, Lang::En];

    /// `zh` or `en`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// A language tag or locale (`zh`, `zh-CN`, `zh_CN.UTF-8`, `en-GB`, `EN`) as one of ours;
    /// `None` for any other language.
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag
            .trim()
            .split(['-', '_', '.', ';', ','])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match primary.as_str() {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language of a locale as `LC_ALL`, `LC_MESSAGES` or `LANG` give it: Chinese for
    /// `zh_*`, English for anything else (`C`, `POSIX`, unset: a terminal without a Chinese
    /// locale may not show Chinese).
    pub fn from_locale(locale: Option<&str>) -> Lang {
        locale.and_then(Lang::parse).unwrap_or(Lang::En)
    }

    /// The language a gRPC caller asked for in `accept-language` (the first tag); English
    /// when it asked for none of ours.
    pub fn of_metadata(metadata: &tonic::metadata::MetadataMap) -> Lang {
        metadata
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(Lang::parse)
            .unwrap_or(Lang::En)
    }

    /// `zh` in Chinese, `en` in English.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// A text for people in both languages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    pub zh: String,
    pub en: String,
}

impl Text {
    pub fn new(zh: impl Into<String>, en: impl Into<String>) -> Text {
        Text {
            zh: zh.into(),
            en: en.into(),
        }
    }

    /// The same words in both (a number, a name that has no translation).
    pub fn same(text: impl Into<String>) -> Text {
        let text = text.into();
        Text {
            zh: text.clone(),
            en: text,
        }
    }

    pub fn get(&self, lang: Lang) -> &str {
        lang.pick(&self.zh, &self.en)
    }
}

/// Whether `text` holds a word of English (two or more Latin letters in a row), other than the
/// words `allowed` (codes, units, names such as `IPMVP`): what a Chinese text must not leak.
pub fn english_words<'a>(text: &'a str, allowed: &[&str]) -> Vec<&'a str> {
    text.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() >= 2 && !allowed.iter().any(|a| a.eq_ignore_ascii_case(w)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_locales() {
        assert_eq!(Lang::parse("zh_CN.UTF-8"), Some(Lang::Zh));
        assert_eq!(Lang::parse("zh-Hans-CN"), Some(Lang::Zh));
        assert_eq!(Lang::parse("EN-gb"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
        assert_eq!(Lang::from_locale(Some("zh_TW.UTF-8")), Lang::Zh);
        assert_eq!(Lang::from_locale(Some("C.UTF-8")), Lang::En);
        assert_eq!(Lang::from_locale(None), Lang::En);
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(Lang::of_metadata(&metadata), Lang::En);
        metadata.insert(
            "accept-language",
            "zh-CN,zh;q=0.9,en;q=0.8".parse().expect("ascii"),
        );
        assert_eq!(Lang::of_metadata(&metadata), Lang::Zh);
    }

    #[test]
    fn english_words_are_found_but_allowed_ones_pass() {
        assert_eq!(
            english_words("节水量 623.649 m³，按 IPMVP 方案C 计", &["IPMVP", "m"]),
            Vec::<&str>::new()
        );
        assert_eq!(
            english_words("公司分成 Company share", &[]),
            vec!["Company", "share"]
        );
    }
}
