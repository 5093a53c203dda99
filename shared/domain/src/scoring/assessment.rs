//! What the scorer is given and what it answers: the input, the assessment and its named values.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::scan::{ScanState, Signals};

/// What [`assess`](super::assess) looks at for one lead.
#[derive(Debug, Clone, Copy)]
pub struct ScoreInput<'a> {
    /// Where the lead's domain scan stands.
    pub state: ScanState,
    /// What the scan found.
    pub signals: &'a Signals,
    /// Whether one of the lead's referrals is a co-sell referral.
    pub co_sell: bool,
    /// Whether a referral names the customer's Azure tenant id.
    pub azure_tenant: bool,
}

/// Hunter's verdict on one lead: its mail provider, score and where a seller should put it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assessment {
    /// The provider's name from the rules file (`"M365"`, `"Google"`, ..., `"Local"`, `"Unknown"`).
    pub provider: String,
    /// The size of the Microsoft 365 or Google tenant; `None` for other providers.
    pub tenant_size: Option<TenantSize>,
    /// 0..=100.
    pub score: u8,
    /// One line per rule that applied, in rule order; the points add up to `score`.
    pub breakdown: Vec<ScoreLine>,
    pub segment: Segment,
    /// 1 (work first) ..= 7.
    pub priority: u8,
    pub commercial_segment: CommercialSegment,
    pub commercial_heat: Heat,
    pub priority_category: PriorityCategory,
    /// The category's name, e.g. "High Potential Greenfield".
    pub priority_category_label: String,
    /// What the category asks of a seller, e.g. "act within 48 h".
    pub seller_action: String,
}

impl Assessment {
    /// The category in one line for a seller: "P1 High Potential Greenfield — act within 48 h".
    pub fn priority_summary(&self) -> String {
        format!(
            "{} {} — {}",
            self.priority_category, self.priority_category_label, self.seller_action
        )
    }
}

/// One line of a score's breakdown.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreLine {
    /// What the line is for, in words a seller understands ("SPF record", "No DKIM").
    pub label: String,
    /// Points added (negative: taken away).
    pub points: i32,
}

/// Declares a closed set of names with their serialized form, `as_str`, `Display` and `ALL`.
macro_rules! named_values {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name as written in the rules and serialized.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        // By hand: the derive does not see the serde names through macro_rules' literals.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;

            /// The value written `text` (case-insensitive).
            fn from_str(text: &str) -> Result<Self, UnknownName> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(text.trim()))
                    .ok_or_else(|| UnknownName {
                        kind: stringify!($name),
                        text: text.to_owned(),
                    })
            }
        }
    };
}

/// A name that is none of a set's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {kind}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub text: String,
}

named_values! {
    /// The size of a Microsoft 365 or Google tenant, read from its MX host.
    TenantSize {
        Small = "small",
        Medium = "medium",
        Large = "large",
    }
}

named_values! {
    /// Where a lead stands for Hunter's migration business.
    Segment {
        /// Already on Microsoft 365.
        Existing = "Existing",
        /// On another provider, with a mail setup worth migrating.
        Migration = "Migration",
        /// Not ready yet: nurture.
        Cold = "Cold",
        /// Not worth working.
        Skip = "Skip",
    }
}

named_values! {
    /// The CSP P-model segment a seller works a lead in.
    CommercialSegment {
        /// No Microsoft mail, own or hosted server: a new customer to win.
        Greenfield = "GREENFIELD",
        /// On Google, Zoho or Yandex: a takeover.
        Competitive = "COMPETITIVE",
        /// On Microsoft 365 with a weak setup: a partner to replace.
        WeakPartner = "WEAK_PARTNER",
        /// On Microsoft 365 with a strong setup: renewal pressure.
        Renewal = "RENEWAL",
        /// Little to gain now.
        LowIntent = "LOW_INTENT",
        /// Do not work.
        NoGo = "NO_GO",
    }
}

named_values! {
    /// How hot a commercial segment is.
    Heat {
        High = "HIGH",
        Medium = "MEDIUM",
        Low = "LOW",
    }
}

named_values! {
    /// The priority category of a commercial segment, P1 (act now) .. P6 (archive).
    PriorityCategory {
        P1 = "P1",
        P2 = "P2",
        P3 = "P3",
        P4 = "P4",
        P5 = "P5",
        P6 = "P6",
    }
}
