//! Render step, stack files: the value syntaxes of compose (Go durations,
//! byte sizes, CPU counts, placement constraints), parsed as Docker parses them.

/// Parses a Go duration (`10s`, `1m30s`, `1.5h`, `250ms`) into nanoseconds.
pub fn go_duration(s: &str) -> Result<i64, String> {
    let err = || {
        format!("invalid duration {s:?} (expected a number with a unit: ns, us, ms, s, m or h, such as 10s or 1m30s)")
    };
    let text = s.trim();
    if text == "0" {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(err)?;
        if num_end == 0 {
            return Err(err());
        }
        let number: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    if total > i64::MAX as f64 {
        return Err(err());
    }
    Ok(total.round() as i64)
}

/// Parses a memory size as Docker does (`512m`, `2G`, `1gb`, `1024`): binary multiples.
pub fn ram_bytes(s: &str) -> Result<i64, String> {
    let err =
        || format!("invalid size {s:?} (expected a number with an optional unit b, k, m, g, t or p, such as 512M)");
    let t = s.trim().to_ascii_lowercase();
    let num_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let number: f64 = t[..num_end].parse().map_err(|_| err())?;
    let unit = t[num_end..].trim();
    let unit = unit.strip_suffix('b').filter(|u| !u.is_empty()).unwrap_or(unit);
    let scale: f64 = match unit {
        "" | "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(err()),
    };
    let bytes = number * scale;
    if bytes > i64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as i64)
}

/// Parses a CPU count (`0.5`, `2`) into nano CPUs, exactly (no float rounding).
pub fn nano_cpus(s: &str) -> Result<i64, String> {
    let err = || format!("invalid CPU count {s:?} (expected a decimal number such as 0.5)");
    let t = s.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 9
    {
        return Err(err());
    }
    let int: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| err())?
    };
    let frac_nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| err())?
    };
    int.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(err)
}

/// Checks a placement constraint (`node.labels.logger == true`).
pub fn constraint(s: &str) -> Result<(), String> {
    let (key, value) = if let Some((k, v)) = s.split_once("==") {
        (k, v)
    } else if let Some((k, v)) = s.split_once("!=") {
        (k, v)
    } else {
        return Err(format!(
            "invalid constraint {s:?}: expected `key == value` or `key != value` (two characters: == or !=)"
        ));
    };
    let key = key.trim();
    let value = value.trim();
    let key_ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !key_ok {
        return Err(format!("invalid constraint {s:?}: the key {key:?} is not a valid name"));
    }
    let known = [
        "node.id",
        "node.hostname",
        "node.role",
        "node.platform.os",
        "node.platform.arch",
    ];
    if !(known.contains(&key) || key.starts_with("node.labels.") || key.starts_with("engine.labels.")) {
        return Err(format!(
            "invalid constraint {s:?}: unknown key {key:?} (expected node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<label> or engine.labels.<label>)"
        ));
    }
    if value.is_empty() || value.contains(char::is_whitespace) || value.contains('=') {
        return Err(format!("invalid constraint {s:?}: the value {value:?} is not valid"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(go_duration("10s").unwrap(), 10_000_000_000);
        assert_eq!(go_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(go_duration("250ms").unwrap(), 250_000_000);
        assert_eq!(go_duration("0").unwrap(), 0);
        for bad in ["", "10", "ten seconds", "5x", "s", "1m30"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(ram_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(ram_bytes("2g").unwrap(), 2 << 30);
        assert_eq!(ram_bytes("1gb").unwrap(), 1 << 30);
        assert_eq!(ram_bytes("1024").unwrap(), 1024);
        assert!(ram_bytes("lots").is_err());
        assert!(ram_bytes("5x").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(nano_cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(nano_cpus("2").unwrap(), 2_000_000_000);
        assert_eq!(nano_cpus("0.001").unwrap(), 1_000_000);
        assert!(nano_cpus("a").is_err());
        assert!(nano_cpus("-1").is_err());
    }

    #[test]
    fn constraints() {
        assert!(constraint("node.labels.logger == true").is_ok());
        assert!(constraint("node.role!=manager").is_ok());
        assert!(constraint("node.labels.logger = true").is_err());
        assert!(constraint("nodes.labels.x == y").is_err());
        assert!(constraint("node.labels.logger == ").is_err());
    }
}
