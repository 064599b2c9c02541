//! The words every service and the action plan share: sectors, contract models, technologies,
//! certification grades, indicator tags, M&V options, milestones.
//!
//! Each word has a stable lower-case `code` (stored in the databases, written in plan files and
//! on the command line) and the `number` of the same value in `proto/cwsm/type/v1/enums.proto`
//! (used by the gRPC adapters; a test in each adapter checks the two agree by name).

use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $number:literal, $code:literal, $label:literal;)* }) => {
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

            /// A label for people.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),* }
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
        PublicInstitution = 1, "public_institution", "public institution (公共机构)";
        GovernmentAgency = 2, "government_agency", "government agency (党政机关)";
        School = 3, "school", "school or university (学校)";
        Hospital = 4, "hospital", "hospital (医院)";
        Community = 5, "community", "community (社区)";
        IndustrialEnterprise = 6, "industrial_enterprise", "industrial enterprise (工业企业)";
        ServiceBusiness = 7, "service_business", "service business (服务业)";
        Irrigation = 8, "irrigation", "irrigation district (灌区)";
        WaterSupply = 9, "water_supply", "water supplier (供水企业)";
    }
}

vocabulary! {
    /// Contract model (GB/T 34149-2017).
    ContractModel {
        SharedSavings = 1, "shared_savings", "shared savings (节水效益分享型)";
        GuaranteedSavings = 2, "guaranteed_savings", "guaranteed savings (节水效果保证型)";
        WaterCostHosting = 3, "water_cost_hosting", "water-cost hosting (用水费用托管型)";
        HostingPlusGuarantee = 4, "hosting_plus_guarantee", "hosting + guarantee";
        GuaranteePlusSharing = 5, "guarantee_plus_sharing", "guarantee + sharing";
        SavingsPlusWaterRights = 6, "savings_plus_water_rights", "saving + water-rights trading";
    }
}

vocabulary! {
    /// Water-saving technology.
    Technology {
        LeakDetection = 1, "leak_detection", "leak detection and pipe repair";
        SmartMetering = 2, "smart_metering", "smart metering, DMA";
        WaterSavingFixtures = 3, "water_saving_fixtures", "water-saving fixtures";
        CoolingWaterReuse = 4, "cooling_water_reuse", "cooling-water reuse";
        ProcessWaterReuse = 5, "process_water_reuse", "process-water reuse";
        WastewaterReclaim = 6, "wastewater_reclaim", "wastewater reclaim";
        WaterSavingIrrigation = 7, "water_saving_irrigation", "water-saving irrigation";
        RainwaterHarvesting = 8, "rainwater_harvesting", "rainwater harvesting";
        Other = 9, "other", "other";
    }
}

vocabulary! {
    /// Contract water-saving service certification grade (A ≥ 50 points … AAAAA ≥ 90).
    CertificationGrade {
        None = 1, "none", "not certified";
        A = 2, "a", "A";
        Aa = 3, "aa", "AA";
        Aaa = 4, "aaa", "AAA";
        Aaaa = 5, "aaaa", "AAAA";
        Aaaaa = 6, "aaaaa", "AAAAA";
    }
}

vocabulary! {
    /// A tag on a project that indicators' counting rules select on.
    IndicatorTag {
        ContractProject = 1, "contract_project", "contract water-saving project";
        TechnicalRetrofit = 2, "technical_retrofit", "technical retrofit";
        WaterAudit = 3, "water_audit", "water-use audit";
        WastewaterReuse = 4, "wastewater_reuse", "wastewater reuse";
        WaterSavingCarrier = 5, "water_saving_carrier", "water-saving carrier";
        WaterEfficiencyLeader = 6, "water_efficiency_leader", "water-efficiency leader";
        Demonstration = 7, "demonstration", "demonstration project";
        IrrigationDistrict = 8, "irrigation_district", "water-saving irrigation district";
        EducationBase = 9, "education_base", "water-saving education base";
    }
}

vocabulary! {
    /// IPMVP measurement and verification option.
    MvOption {
        A = 1, "a", "IPMVP option A";
        B = 2, "b", "IPMVP option B";
        C = 3, "c", "IPMVP option C";
        D = 4, "d", "IPMVP option D";
    }
}

vocabulary! {
    /// A milestone of a project that other services hear of.
    Milestone {
        Contracted = 1, "contracted", "contracted (签约)";
        Implementing = 2, "implementing", "implementing (实施)";
        Commissioned = 3, "commissioned", "commissioned (调试完成)";
        Accepted = 4, "accepted", "accepted (验收)";
        Operating = 5, "operating", "operating (运营)";
        PeriodVerified = 6, "period_verified", "period verified (核查)";
        HandedOver = 7, "handed_over", "handed over (移交)";
        Closed = 8, "closed", "closed";
        Suspended = 9, "suspended", "suspended (中止)";
        Terminated = 10, "terminated", "terminated (终止)";
        Resumed = 11, "resumed", "resumed";
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
}
