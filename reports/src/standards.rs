//! The standards a report can be for, and for each of its controls what dsops measures.
//!
//! The requirement texts are short paraphrases for a reader who knows the standard; the report
//! is evidence for the control, not a restatement of it.

/// A standard a compliance report can be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standard {
    /// PCI DSS 4.0.1.
    PciDss,
    /// SOC 2 (AICPA Trust Services Criteria 2017, revised points of focus 2022).
    Soc2,
    /// HIPAA Security Rule.
    Hipaa,
    /// ISO/IEC 27001:2022 Annex A.
    Iso27001,
    /// NIST SP 800-53 Rev. 5.
    Nist80053,
}

/// What dsops measures for a control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Secrets of a class (all when `None`) rotated within their required interval, capped at
    /// `cap_days` when the control states one.
    WithinInterval { class: Option<&'static str>, cap_days: Option<u32> },
    /// Generated values of a class at least `min_length` long, letters and digits.
    Complexity { class: Option<&'static str>, min_length: u64 },
    /// Values come from secret stores by reference, never from the configuration.
    ByReference,
    /// Every rotation of the period that needed approval had it, signed.
    Approved,
    /// Every break-glass rotation of the period has a closed review.
    BreakGlassReviewed,
    /// Every completed rotation of the period passed its verify step, with signed receipts.
    Verified,
}

/// One control of a standard.
#[derive(Debug, Clone, Copy)]
pub struct Control {
    /// Its id in the standard.
    pub id: &'static str,
    /// What it asks, in brief.
    pub requirement: &'static str,
    /// What dsops measures for it.
    pub measures: &'static [Measure],
}

const USER: Option<&str> = Some("user");
const SYSTEM: Option<&str> = Some("system");

const PCI: &[Control] = &[
    Control {
        id: "8.3.6",
        requirement: "Passwords used as an authentication factor for user accounts are at least 12 characters and contain both numeric and alphabetic characters.",
        measures: &[Measure::Complexity { class: USER, min_length: 12 }],
    },
    Control {
        id: "8.3.9",
        requirement: "Where passwords are the only authentication factor for user access, they are changed at least once every 90 days (single-factor user credentials only).",
        measures: &[Measure::WithinInterval { class: USER, cap_days: Some(90) }],
    },
    Control {
        id: "8.6.2",
        requirement: "Passwords for application and system accounts that can be used for interactive login are not hard coded in scripts, configuration or source code.",
        measures: &[Measure::ByReference],
    },
    Control {
        id: "8.6.3",
        requirement: "Passwords for application and system accounts are protected against misuse: changed periodically at the frequency the entity's risk analysis sets, and on suspicion of compromise, with sufficient complexity.",
        measures: &[
            Measure::WithinInterval { class: SYSTEM, cap_days: None },
            Measure::Complexity { class: SYSTEM, min_length: 12 },
            Measure::Verified,
        ],
    },
];

const SOC2: &[Control] = &[
    Control {
        id: "CC6.1",
        requirement: "The entity implements logical access security over protected information assets, including the management of credentials.",
        measures: &[
            Measure::ByReference,
            Measure::WithinInterval { class: None, cap_days: None },
            Measure::Verified,
        ],
    },
    Control {
        id: "CC6.2",
        requirement: "Credentials are issued, changed and removed only after authorization by the owners of the access.",
        measures: &[Measure::Approved],
    },
    Control {
        id: "CC6.3",
        requirement: "Access is authorized, modified or removed on the basis of roles and least privilege, with exceptions reviewed.",
        measures: &[Measure::Approved, Measure::BreakGlassReviewed],
    },
];

const HIPAA: &[Control] = &[Control {
    id: "164.308(a)(5)(ii)(D)",
    requirement: "Password management: procedures for creating, changing and safeguarding passwords.",
    measures: &[
        Measure::ByReference,
        Measure::WithinInterval { class: None, cap_days: None },
        Measure::Verified,
    ],
}];

const ISO: &[Control] = &[
    Control {
        id: "A.5.17",
        requirement: "Authentication information: its allocation and management is controlled, including changing it periodically and after compromise.",
        measures: &[
            Measure::WithinInterval { class: None, cap_days: None },
            Measure::Approved,
            Measure::BreakGlassReviewed,
        ],
    },
    Control {
        id: "A.8.5",
        requirement: "Secure authentication: authentication technologies and procedures are implemented according to access restrictions.",
        measures: &[Measure::ByReference, Measure::Verified],
    },
];

const NIST: &[Control] = &[
    Control {
        id: "IA-5",
        requirement: "Authenticator management: change or refresh authenticators at a defined frequency, protect them from unauthorized disclosure, and change them on compromise.",
        measures: &[
            Measure::ByReference,
            Measure::WithinInterval { class: None, cap_days: None },
            Measure::Verified,
        ],
    },
    Control {
        id: "IA-5(1)",
        requirement: "Password-based authentication: enforce composition and complexity rules, and store and transmit passwords only protected.",
        measures: &[Measure::Complexity { class: None, min_length: 12 }, Measure::ByReference],
    },
];

impl Standard {
    /// Every standard, in the order the docs list them.
    pub const ALL: [Standard; 5] = [
        Standard::PciDss,
        Standard::Soc2,
        Standard::Hipaa,
        Standard::Iso27001,
        Standard::Nist80053,
    ];

    /// Its name on the command line and in the API.
    pub fn id(self) -> &'static str {
        match self {
            Standard::PciDss => "pci-dss",
            Standard::Soc2 => "soc2",
            Standard::Hipaa => "hipaa",
            Standard::Iso27001 => "iso27001",
            Standard::Nist80053 => "nist-800-53",
        }
    }

    /// Its title, with the edition.
    pub fn title(self) -> &'static str {
        match self {
            Standard::PciDss => "PCI DSS 4.0.1",
            Standard::Soc2 => "SOC 2 (Trust Services Criteria)",
            Standard::Hipaa => "HIPAA Security Rule",
            Standard::Iso27001 => "ISO/IEC 27001:2022",
            Standard::Nist80053 => "NIST SP 800-53 Rev. 5",
        }
    }

    /// Its controls.
    pub fn controls(self) -> &'static [Control] {
        match self {
            Standard::PciDss => PCI,
            Standard::Soc2 => SOC2,
            Standard::Hipaa => HIPAA,
            Standard::Iso27001 => ISO,
            Standard::Nist80053 => NIST,
        }
    }

    /// The standard named `name`; the error lists the names.
    pub fn parse(name: &str) -> Result<Standard, String> {
        Standard::ALL.into_iter().find(|s| s.id() == name).ok_or_else(|| {
            let names: Vec<&str> = Standard::ALL.iter().map(|s| s.id()).collect();
            format!("unknown standard {name:?}; one of: {}", names.join(", "))
        })
    }
}
