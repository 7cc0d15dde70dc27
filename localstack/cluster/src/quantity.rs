//! Kubernetes resource quantities (`100m`, `128Mi`, `1e3`) as integers in thousandths of their unit,
//! for quota accounting, LimitRange bounds and the validation of both.

use serde_json::Value;

/// A quantity in thousandths of its unit (`100m` → 100, `1Ki` → 1_024_000), rounded up.
pub fn parse_quantity(s: &str) -> Option<i128> {
    let s = s.trim();
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // Value as mantissa × 10^exp10 × 2^exp2, in thousandths.
    let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    let mut exp10: i32 = 3 - fraction.len() as i32;
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        other => {
            let exp = other.strip_prefix(['e', 'E'])?;
            exp10 += exp.parse::<i32>().ok()?;
        }
    }
    let mut value = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
    if exp10 >= 0 {
        value = value.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
    } else {
        let div = 10i128.checked_pow(exp10.unsigned_abs())?;
        value = (value + div - 1) / div;
    }
    Some(if negative { -value } else { value })
}

/// The canonical text of a quantity for messages and status: `500m`, `2`, `128Mi`, `1500k`.
pub fn format_quantity(resource: &str, milli: i128) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let units = milli / 1000;
    if resource.ends_with("memory") && units != 0 {
        for (suffix, shift) in [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ] {
            if units % (1i128 << shift) == 0 {
                return format!("{}{suffix}", units >> shift);
            }
        }
    }
    units.to_string()
}

/// The quantity a JSON value holds: a string like `500m`, or a plain number.
pub fn parse_value(v: &Value) -> Option<i128> {
    match v {
        Value::String(s) => parse_quantity(s),
        Value::Number(n) => parse_quantity(&n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(100));
        assert_eq!(parse_quantity("2"), Some(2000));
        assert_eq!(parse_quantity("0.5"), Some(500));
        assert_eq!(parse_quantity("1Ki"), Some(1_024_000));
        assert_eq!(parse_quantity("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(parse_quantity("1e3"), Some(1_000_000));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000_000));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1Qi"), None);
        assert_eq!(format_quantity("requests.cpu", 500), "500m");
        assert_eq!(format_quantity("cpu", 2000), "2");
        assert_eq!(
            format_quantity("limits.memory", 64 * 1024 * 1024 * 1000),
            "64Mi"
        );
        assert_eq!(format_quantity("pods", 3000), "3");
    }
}
