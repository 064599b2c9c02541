//! The words every service and the action plan share: sectors, contract models, technologies,
//! certification grades, indicator tags, M&V options, milestones.
//!
//! Each word has a stable lower-case `code` (stored in the databases, written in plan files and
//! on the command line) and the `number` of the same value in `proto/cwsm/type/v1/enums.proto`
//! (used by the gRPC adapters; a test in each adapter checks the two agree by name).

use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $number:literal, $code:literal, $zh:literal, $en:literal;)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The stored and written form, e.g. `school`.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),* }
            }

            /// Its name for people in `lang`, e.g. 学校 or "school or university".
            pub fn name(self, lang: crate::lang::Lang) -> &'static str {
                match lang {
                    crate::lang::Lang::Zh => match self { $($name::$variant => $zh),* },
                    crate::lang::Lang::En => match self { $($name::$variant => $en),* },
                }
            }

            /// Both names, English first, for texts in English read by Chinese users too:
            /// "school or university (学校)".
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => concat!($en, " (", $zh, ")")),* }
            }

            pub fn from_code(code: &str) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }

            /// The value's number in the protobuf enum of the same name.
            pub fn number(self) -> i32 {
                match self { $($name::$variant => $number),* }
            }

            /// From the protobuf number; `None` for 0 (unspecified) and unknown numbers.
            pub fn from_number(number: i32) -> Option<$name> {
                match number { $($number => Some($name::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

vocabulary! {
    /// The kind of water user (用水单位).
    Sector {
        PublicInstitution = 1, "public_institution", "公共机构", "public institution";
        GovernmentAgency = 2, "government_agency", "党政机关", "government agency";
        School = 3, "school", "学校", "school or university";
        Hospital = 4, "hospital", "医院", "hospital";
        Community = 5, "community", "社区", "community";
        IndustrialEnterprise = 6, "industrial_enterprise", "工业企业", "industrial enterprise";
        ServiceBusiness = 7, "service_business", "服务业", "service business";
        Irrigation = 8, "irrigation", "灌区", "irrigation district";
        WaterSupply = 9, "water_supply", "供水企业", "water supplier";
    }
}

vocabulary! {
    /// Contract model (GB/T 34149-2017).
    ContractModel {
        SharedSavings = 1, "shared_savings", "节水效益分享型", "shared savings";
        GuaranteedSavings = 2, "guaranteed_savings", "节水效果保证型", "guaranteed savings";
        WaterCostHosting = 3, "water_cost_hosting", "用水费用托管型", "water-cost hosting";
        HostingPlusGuarantee = 4, "hosting_plus_guarantee", "用水费用托管＋节水效果保证型", "hosting + guarantee";
        GuaranteePlusSharing = 5, "guarantee_plus_sharing", "节水效果保证＋效益分享型", "guarantee + sharing";
        SavingsPlusWaterRights = 6, "savings_plus_water_rights", "节水效益分享＋水权交易型", "saving + water-rights trading";
    }
}

vocabulary! {
    /// Water-saving technology.
    Technology {
        LeakDetection = 1, "leak_detection", "管网漏损检测与修复", "leak detection and pipe repair";
        SmartMetering = 2, "smart_metering", "智能计量与分区计量", "smart metering, DMA";
        WaterSavingFixtures = 3, "water_saving_fixtures", "节水器具更换", "water-saving fixtures";
        CoolingWaterReuse = 4, "cooling_water_reuse", "循环冷却水节水", "cooling-water reuse";
        ProcessWaterReuse = 5, "process_water_reuse", "工艺用水回用", "process-water reuse";
        WastewaterReclaim = 6, "wastewater_reclaim", "再生水利用", "wastewater reclaim";
        WaterSavingIrrigation = 7, "water_saving_irrigation", "高效节水灌溉", "water-saving irrigation";
        RainwaterHarvesting = 8, "rainwater_harvesting", "雨水收集利用", "rainwater harvesting";
        Other = 9, "other", "其他", "other";
    }
}

vocabulary! {
    /// Contract water-saving service certification grade (A ≥ 50 points … AAAAA ≥ 90).
    CertificationGrade {
        None = 1, "none", "未认证", "not certified";
        A = 2, "a", "A级", "A";
        Aa = 3, "aa", "AA级", "AA";
        Aaa = 4, "aaa", "AAA级", "AAA";
        Aaaa = 5, "aaaa", "AAAA级", "AAAA";
        Aaaaa = 6, "aaaaa", "AAAAA级", "AAAAA";
    }
}

vocabulary! {
    /// A tag on a project that indicators' counting rules select on.
    IndicatorTag {
        ContractProject = 1, "contract_project", "合同节水管理项目", "contract water-saving project";
        TechnicalRetrofit = 2, "technical_retrofit", "节水技术改造", "technical retrofit";
        WaterAudit = 3, "water_audit", "用水审计", "water-use audit";
        WastewaterReuse = 4, "wastewater_reuse", "污水再生利用", "wastewater reuse";
        WaterSavingCarrier = 5, "water_saving_carrier", "节水载体", "water-saving carrier";
        WaterEfficiencyLeader = 6, "water_efficiency_leader", "水效领跑者", "water-efficiency leader";
        Demonstration = 7, "demonstration", "示范项目", "demonstration project";
        IrrigationDistrict = 8, "irrigation_district", "节水型灌区", "water-saving irrigation district";
        EducationBase = 9, "education_base", "节水教育基地", "water-saving education base";
    }
}

vocabulary! {
    /// IPMVP measurement and verification option.
    MvOption {
        A = 1, "a", "IPMVP 方案A", "IPMVP option A";
        B = 2, "b", "IPMVP 方案B", "IPMVP option B";
        C = 3, "c", "IPMVP 方案C", "IPMVP option C";
        D = 4, "d", "IPMVP 方案D", "IPMVP option D";
    }
}

vocabulary! {
    /// A milestone of a project that other services hear of.
    Milestone {
        Contracted = 1, "contracted", "签约", "contracted";
        Implementing = 2, "implementing", "实施", "implementing";
        Commissioned = 3, "commissioned", "调试完成", "commissioned";
        Accepted = 4, "accepted", "验收", "accepted";
        Operating = 5, "operating", "运营", "operating";
        PeriodVerified = 6, "period_verified", "核查通过", "period verified";
        HandedOver = 7, "handed_over", "移交", "handed over";
        Closed = 8, "closed", "关闭", "closed";
        Suspended = 9, "suspended", "中止", "suspended";
        Terminated = 10, "terminated", "终止", "terminated";
        Resumed = 11, "resumed", "恢复", "resumed";
    }
}

/// Parses a list of codes, naming the first bad one.
pub fn parse_codes<T>(codes: &[String], parse: fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    codes
        .iter()
        .map(|c| parse(c).ok_or_else(|| format!("unknown value {c:?}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_numbers_round_trip() {
        for s in Sector::ALL {
            assert_eq!(Sector::from_code(s.code()), Some(*s));
            assert_eq!(Sector::from_number(s.number()), Some(*s));
        }
        for m in Milestone::ALL {
            assert_eq!(Milestone::from_code(m.code()), Some(*m));
        }
        assert_eq!(Sector::from_number(0), None);
        assert_eq!(
            serde_json::to_string(&ContractModel::SharedSavings).expect("json"),
            "\"shared_savings\""
        );
    }

    /// Every word has a Chinese name (Chinese characters, no English word but the codes of
    /// the standards) and an English one.
    #[test]
    fn every_word_has_both_names() {
        use crate::lang::{Lang, english_words};
        fn check<T: Copy + std::fmt::Debug>(all: &[T], name: fn(T, Lang) -> &'static str) {
            for v in all {
                let zh = name(*v, Lang::Zh);
                let en = name(*v, Lang::En);
                assert!(
                    zh.chars().any(|c| ('\u{4E00}'..='\u{9FFF}').contains(&c)),
                    "{v:?}: {zh}"
                );
                let leaked = english_words(zh, &["IPMVP", "AA", "AAA", "AAAA", "AAAAA"]);
                assert!(leaked.is_empty(), "{v:?}: {zh} has {leaked:?}");
                assert!(!en.is_empty() && en.is_ascii(), "{v:?}: {en}");
            }
        }
        check(Sector::ALL, Sector::name);
        check(ContractModel::ALL, ContractModel::name);
        check(Technology::ALL, Technology::name);
        check(CertificationGrade::ALL, CertificationGrade::name);
        check(IndicatorTag::ALL, IndicatorTag::name);
        check(MvOption::ALL, MvOption::name);
        check(Milestone::ALL, Milestone::name);
        assert_eq!(Sector::School.label(), "school or university (学校)");
    }
}
