//! The EKS Kubernetes versions the stack can run, with their support windows: the one table of
//! them in the code base.
//!
//! Source: AWS, "Amazon EKS Kubernetes release calendar" in "Understand the Kubernetes version
//! lifecycle on EKS", <https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html>.
//! There: a minor version is in standard support for 14 months after its EKS release, then in
//! extended support (billed per cluster-hour) for 12 more; at the end of extended support EKS
//! upgrades the cluster itself. AL2023 node AMIs exist from 1.30 on (AL2 AMIs ended with 1.32),
//! so every row here has the AMI the nodes step boots.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A calendar day (UTC), enough to compare against the release calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u32,
    day: u32,
}

impl Date {
    pub const fn new(year: i32, month: u32, day: u32) -> Self {
        Self { year, month, day }
    }

    /// Today in UTC, from the system clock.
    pub fn today() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self::from_days((secs / 86_400) as i64)
    }

    /// Days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Date) -> i64 {
        later.days() - self.days()
    }

    /// Days since 1970-01-01 (H. Hinnant's `days_from_civil`).
    fn days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The inverse of [`Date::days`] (`civil_from_days`).
    fn from_days(z: i64) -> Self {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Self { year, month, day }
    }

    /// `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().splitn(3, '-');
        let year = parts.next()?.parse().ok()?;
        let month = parts.next()?.parse().ok()?;
        let day = parts.next()?.parse().ok()?;
        let date = Self::new(year, month, day);
        (Self::from_days(date.days()) == date).then_some(date)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Which support the operator pays for: `upgradePolicy.supportType` of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Support {
    /// No extended-support charges; EKS upgrades the cluster at the end of standard support.
    #[default]
    Standard,
    /// The cluster may stay on a version in extended support, billed per cluster-hour.
    Extended,
}

impl Support {
    /// The API's `supportType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "STANDARD",
            Self::Extended => "EXTENDED",
        }
    }
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a row's dates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from the release calendar.
    Calendar,
    /// Not yet on the calendar when written: EKS release estimated, the ends derived from it by
    /// the 14 + 12 month rule. Check the calendar and replace.
    Estimated,
}

/// One Kubernetes minor version on EKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub version: &'static str,
    pub eks_release: Date,
    /// The last day of standard support.
    pub end_of_standard: Date,
    /// The last day of extended support.
    pub end_of_extended: Date,
    pub source: Source,
}

/// Where a version is in its life on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    NotYetReleased,
    Standard,
    Extended,
    Ended,
}

impl Release {
    pub fn phase(&self, today: Date) -> Phase {
        if today < self.eks_release {
            Phase::NotYetReleased
        } else if today <= self.end_of_standard {
            Phase::Standard
        } else if today <= self.end_of_extended {
            Phase::Extended
        } else {
            Phase::Ended
        }
    }

    /// Whether a new cluster may be made with this version under that support.
    pub fn accepted(&self, today: Date, support: Support) -> bool {
        match self.phase(today) {
            Phase::Standard => true,
            Phase::Extended => support == Support::Extended,
            Phase::NotYetReleased | Phase::Ended => false,
        }
    }

    /// Days of standard support left after `today` (0 on its last day, negative after it).
    pub fn standard_days_left(&self, today: Date) -> i64 {
        today.days_until(self.end_of_standard)
    }

    /// Whether standard support ends soon enough that the operator should hear of it.
    pub fn leaves_standard_soon(&self, today: Date) -> bool {
        (0..=WARN_WITHIN_DAYS).contains(&self.standard_days_left(today))
    }
}

/// `plan` and `up` warn when the chosen version leaves standard support within this many days.
pub const WARN_WITHIN_DAYS: i64 = 60;

/// Oldest first. 1.32-1.35: dates from the release calendar (the 1.35 row as the calendar had it
/// in early 2026). 1.36: estimated (EKS released it after upstream's April 2026 release; the
/// date below assumes late May, like 1.33 in 2025) — replace with the calendar's dates.
pub const RELEASES: &[Release] = &[
    Release {
        version: "1.32",
        eks_release: Date::new(2025, 1, 23),
        end_of_standard: Date::new(2026, 3, 23),
        end_of_extended: Date::new(2027, 3, 23),
        source: Source::Calendar,
    },
    Release {
        version: "1.33",
        eks_release: Date::new(2025, 5, 29),
        end_of_standard: Date::new(2026, 7, 29),
        end_of_extended: Date::new(2027, 7, 29),
        source: Source::Calendar,
    },
    Release {
        version: "1.34",
        eks_release: Date::new(2025, 10, 2),
        end_of_standard: Date::new(2026, 12, 2),
        end_of_extended: Date::new(2027, 12, 2),
        source: Source::Calendar,
    },
    Release {
        version: "1.35",
        eks_release: Date::new(2026, 1, 27),
        end_of_standard: Date::new(2027, 3, 27),
        end_of_extended: Date::new(2028, 3, 27),
        source: Source::Calendar,
    },
    Release {
        version: "1.36",
        eks_release: Date::new(2026, 5, 28),
        end_of_standard: Date::new(2027, 7, 28),
        end_of_extended: Date::new(2028, 7, 28),
        source: Source::Estimated,
    },
];

/// The table's row for a version.
pub fn release(version: &str) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.version == version)
}

/// The versions a new cluster may use on `today` under `support`, newest first.
pub fn accepted(today: Date, support: Support) -> impl Iterator<Item = &'static Release> {
    RELEASES
        .iter()
        .rev()
        .filter(move |r| r.accepted(today, support))
}

/// The accepted versions with their end of standard (and extended) support, for error messages.
pub fn describe_accepted(today: Date, support: Support) -> String {
    let list: Vec<String> = accepted(today, support)
        .map(|r| match (support, r.phase(today)) {
            (Support::Extended, Phase::Extended) => format!(
                "{} (extended support until {})",
                r.version, r.end_of_extended
            ),
            _ => format!(
                "{} (standard support until {})",
                r.version, r.end_of_standard
            ),
        })
        .collect();
    if list.is_empty() {
        "none: the release table in provisioner/src/config/versions.rs is out of date".to_owned()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Date = Date::new(2026, 12, 2);

    fn versions(today: Date, support: Support) -> Vec<&'static str> {
        accepted(today, support).map(|r| r.version).collect()
    }

    #[test]
    fn dates_count_days_across_months_and_leap_years() {
        assert_eq!(Date::new(1970, 1, 1).days(), 0);
        assert_eq!(
            Date::new(2026, 12, 2).days_until(Date::new(2027, 1, 31)),
            60
        );
        assert_eq!(Date::new(2028, 2, 28).days_until(Date::new(2028, 3, 1)), 2);
        assert_eq!(Date::from_days(Date::new(2026, 12, 2).days()), TODAY);
        assert_eq!(Date::parse("2026-12-02"), Some(TODAY));
        assert_eq!(Date::parse("2026-02-30"), None);
        assert_eq!(TODAY.to_string(), "2026-12-02");
        assert!(Date::today() >= Date::new(2025, 1, 1));
    }

    /// Release calendar: 1.33 left standard support on 2026-07-29, 1.34 leaves it on 2026-12-02.
    #[test]
    fn on_2026_12_02_standard_support_means_1_34_to_1_36() {
        assert_eq!(versions(TODAY, Support::Standard), ["1.36", "1.35", "1.34"]);
        let next_day = Date::new(2026, 12, 3);
        assert_eq!(versions(next_day, Support::Standard), ["1.36", "1.35"]);
        assert_eq!(
            release("1.33").map(|r| r.phase(TODAY)),
            Some(Phase::Extended)
        );
    }

    #[test]
    fn extended_support_also_accepts_versions_in_their_extended_year() {
        assert_eq!(
            versions(TODAY, Support::Extended),
            ["1.36", "1.35", "1.34", "1.33", "1.32"]
        );
        assert_eq!(
            versions(Date::new(2027, 3, 24), Support::Extended),
            ["1.36", "1.35", "1.34", "1.33"]
        );
    }

    #[test]
    fn the_warning_window_is_sixty_days_before_the_end_of_standard_support() {
        let v134 = release("1.34").unwrap();
        assert!(v134.leaves_standard_soon(TODAY));
        assert!(v134.leaves_standard_soon(Date::new(2026, 10, 3)));
        assert!(!v134.leaves_standard_soon(Date::new(2026, 10, 2)));
        assert!(!release("1.36").unwrap().leaves_standard_soon(TODAY));
    }

    /// Kubernetes-versions page: 14 months of standard, then 12 of extended support.
    #[test]
    fn every_row_follows_the_14_plus_12_month_rule_and_is_ordered() {
        for r in RELEASES {
            let standard = r.eks_release.days_until(r.end_of_standard);
            let extended = r.end_of_standard.days_until(r.end_of_extended);
            assert!((395..=440).contains(&standard), "{}: {standard}", r.version);
            assert!((365..=366).contains(&extended), "{}: {extended}", r.version);
        }
        assert!(
            RELEASES
                .windows(2)
                .all(|w| w[0].eks_release < w[1].eks_release)
        );
    }

    #[test]
    fn the_error_text_lists_versions_with_their_dates() {
        let text = describe_accepted(TODAY, Support::Standard);
        assert!(
            text.contains("1.34 (standard support until 2026-12-02)"),
            "{text}"
        );
        let text = describe_accepted(TODAY, Support::Extended);
        assert!(
            text.contains("1.33 (extended support until 2027-07-29)"),
            "{text}"
        );
    }
}
