//! The UTC calendar windows of budgets: a day runs from 00:00 UTC, a month from the 1st at 00:00
//! UTC (not rolling). Named `2026-12-07` and `2026-12`, with the seconds left in each.

/// A budget's window: one UTC day or month, shown as `2026-12-07` or `2026-12` (in store keys
/// too). Plain numbers, so naming a counter takes no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// Days since 1970-01-01.
    Day(u32),
    Month {
        year: i32,
        month: u8,
    },
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Window::Day(days) => {
                let (year, month, day) = civil_from_days(i64::from(days));
                write!(f, "{year:04}-{month:02}-{day:02}")
            }
            Window::Month { year, month } => write!(f, "{year:04}-{month:02}"),
        }
    }
}

/// The day and month containing one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    day: Window,
    day_left: u64,
    month: Window,
    month_left: u64,
}

impl Windows {
    /// The windows at `unix_secs`.
    pub fn at(unix_secs: u64) -> Windows {
        let days = unix_secs / 86_400;
        let (year, month, _) = civil_from_days(days as i64);
        let day_left = 86_400 - unix_secs % 86_400;
        let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
        let next_month_start = days_from_civil(next_year, next_month, 1) as u64 * 86_400;
        Windows {
            day: Window::Day(days as u32),
            day_left,
            month: Window::Month { year: year as i32, month: month as u8 },
            month_left: next_month_start - unix_secs,
        }
    }

    /// The day and the seconds until it ends.
    pub fn day(&self) -> (Window, u64) {
        (self.day, self.day_left)
    }

    /// The month and the seconds until it ends.
    pub fn month(&self) -> (Window, u64) {
        (self.month, self.month_left)
    }
}

/// (year, month 1-12, day 1-31) of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_months_are_utc_calendar_windows() {
        // 2026-12-07T17:00:00Z
        let shown = |(window, left): (Window, u64)| (window.to_string(), left);
        let windows = Windows::at(1_796_662_800);
        assert_eq!(shown(windows.day()), ("2026-12-07".into(), 7 * 3600));
        assert_eq!(shown(windows.month()), ("2026-12".into(), 24 * 86_400 + 7 * 3600));
        // The last second of a leap February, and the first of March.
        let feb = Windows::at(1_709_251_199);
        assert_eq!((shown(feb.day()), shown(feb.month())), (("2024-02-29".into(), 1), ("2024-02".into(), 1)));
        assert_eq!(shown(Windows::at(1_709_251_200).month()), ("2024-03".into(), 31 * 86_400));
        assert_eq!(shown(Windows::at(0).day()), ("1970-01-01".into(), 86_400));
    }
}
