//! Disk watermarks (pure): where Elasticsearch's disk-based allocation
//! draws its lines, and which line a node's disk use has crossed.
//!
//! Elasticsearch 8: above `low` (85%) no new shard goes to the node; above
//! `high` (90%) shards are moved away from it; at `flood_stage` (95%) every
//! index with a shard on it becomes read-only
//! (`index.blocks.read_only_allow_delete`), released once the node is below
//! `high` again. A watermark is a percentage or ratio of the disk used, or
//! an amount of free space (`50gb`); for a percentage, `max_headroom` caps
//! the free space it asks for on a large disk (`200gb`, `150gb`, `100gb`
//! by default when the watermark itself is not set; `-1`: no cap).

use serde::Serialize;
use serde_json::Value as Json;

use super::flat_setting;

pub const PREFIX: &str = "cluster.routing.allocation.disk";

/// One watermark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Watermark {
    /// As set (`85%`, `0.85`, `50gb`).
    pub value: String,
    /// Its cap on the free space asked for, as set (`200gb`, `-1`).
    pub max_headroom: Option<String>,
}

/// The three watermarks in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Watermarks {
    /// `cluster.routing.allocation.disk.threshold_enabled`.
    pub enabled: bool,
    pub low: Watermark,
    pub high: Watermark,
    pub flood_stage: Watermark,
}

impl Default for Watermarks {
    /// Elasticsearch 8's defaults.
    fn default() -> Self {
        let w = |v: &str, h: &str| Watermark {
            value: v.into(),
            max_headroom: Some(h.into()),
        };
        Watermarks {
            enabled: true,
            low: w("85%", "200gb"),
            high: w("90%", "150gb"),
            flood_stage: w("95%", "100gb"),
        }
    }
}

/// Which watermark a node's disk use has reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    #[default]
    Ok,
    Low,
    High,
    FloodStage,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Low => "low",
            Level::High => "high",
            Level::FloodStage => "flood-stage",
        }
    }

    /// As a metric: 0 ok, 1 low, 2 high, 3 flood stage.
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// The watermarks from `GET /_cluster/settings?include_defaults=true&flat_settings=true`:
/// transient, else persistent, else the defaults section, else
/// Elasticsearch 8's own defaults.
pub fn watermarks(settings: &Json) -> Watermarks {
    let get = |key: &str| {
        let full = format!("{PREFIX}.{key}");
        flat_setting(settings, &full).or_else(|| {
            settings
                .get("defaults")?
                .get(&full)
                .and_then(|v| v.as_str().map(str::to_string))
        })
    };
    let d = Watermarks::default();
    let one = |name: &str, default: &Watermark| {
        let value = get(&format!("watermark.{name}"));
        let headroom = get(&format!("watermark.{name}.max_headroom"));
        Watermark {
            // Set by the user without a headroom: Elasticsearch caps nothing.
            max_headroom: match (&value, headroom) {
                (_, Some(h)) => Some(h),
                (Some(_), None) => None,
                (None, None) => default.max_headroom.clone(),
            },
            value: value.unwrap_or_else(|| default.value.clone()),
        }
    };
    Watermarks {
        enabled: get("threshold_enabled").is_none_or(|v| v != "false"),
        low: one("low", &d.low),
        high: one("high", &d.high),
        flood_stage: one("flood_stage", &d.flood_stage),
    }
}

/// Bytes of an Elasticsearch byte size (`50gb`, `512mb`, `100b`; binary units).
pub fn bytes(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let mul: u64 = match unit {
        "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        "tb" | "t" => 1 << 40,
        "pb" | "p" => 1 << 50,
        _ => return None,
    };
    Some((n * mul as f64) as u64)
}

/// A watermark's ratio of the disk used (`85%`, `0.85`), if it is one.
fn ratio(v: &str) -> Option<f64> {
    let v = v.trim();
    match v.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok().map(|p| p / 100.0),
        None => v.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)),
    }
}

impl Watermark {
    /// The disk use (a fraction of `total`) at which it is reached.
    pub fn used_fraction_at(&self, total: Option<u64>) -> Option<f64> {
        if let Some(r) = ratio(&self.value) {
            let headroom = self.max_headroom.as_deref().and_then(bytes);
            return Some(match (total, headroom) {
                // The free space asked for is capped at the headroom.
                (Some(t), Some(h)) if t > 0 => {
                    let free = ((1.0 - r) * t as f64).min(h as f64);
                    1.0 - free / t as f64
                }
                _ => r,
            });
        }
        let free = bytes(&self.value)?;
        let t = total.filter(|t| *t > 0)?;
        Some((1.0 - free as f64 / t as f64).max(0.0))
    }
}

/// Which watermark a disk `percent` used (of `total` bytes) has reached.
pub fn level(w: &Watermarks, percent: f64, total: Option<u64>) -> Level {
    if !w.enabled {
        return Level::Ok;
    }
    let used = percent / 100.0;
    let reached = |m: &Watermark| m.used_fraction_at(total).is_some_and(|at| used >= at);
    if reached(&w.flood_stage) {
        Level::FloodStage
    } else if reached(&w.high) {
        Level::High
    } else if reached(&w.low) {
        Level::Low
    } else {
        Level::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GB: u64 = 1 << 30;

    #[test]
    fn defaults_draw_the_lines_at_85_90_95_on_small_disks() {
        let w = watermarks(&json!({"persistent": {}, "transient": {}}));
        assert_eq!(w, Watermarks::default());
        let total = Some(100 * GB);
        assert_eq!(level(&w, 50.0, total), Level::Ok);
        assert_eq!(level(&w, 85.0, total), Level::Low);
        assert_eq!(level(&w, 91.0, total), Level::High);
        assert_eq!(level(&w, 95.0, total), Level::FloodStage);
        // Without the size, the percentages alone.
        assert_eq!(level(&w, 91.0, None), Level::High);
    }

    #[test]
    fn headroom_caps_the_free_space_on_large_disks() {
        let w = Watermarks::default();
        // 10 TB: low asks for min(15 %, 200 GB) free = 200 GB (98.05 %
        // used), high 150 GB (98.5 %), flood stage 100 GB (99.0 %).
        let total = Some(10 * 1024 * GB);
        assert_eq!(level(&w, 91.0, total), Level::Ok);
        assert_eq!(level(&w, 98.1, total), Level::Low);
        assert_eq!(level(&w, 98.6, total), Level::High);
        assert_eq!(level(&w, 99.1, total), Level::FloodStage);
    }

    #[test]
    fn settings_in_force_come_from_transient_persistent_then_defaults() {
        let s = json!({
            "persistent": {"cluster.routing.allocation.disk.watermark.high": "80%"},
            "transient": {"cluster.routing.allocation.disk.watermark.flood_stage": "5gb"},
            "defaults": {
                "cluster.routing.allocation.disk.watermark.low": "70%",
                "cluster.routing.allocation.disk.watermark.low.max_headroom": "-1",
                "cluster.routing.allocation.disk.watermark.high.max_headroom": "-1",
                "cluster.routing.allocation.disk.threshold_enabled": "true"
            }
        });
        let w = watermarks(&s);
        assert_eq!(w.low.value, "70%");
        assert_eq!(w.high.value, "80%");
        assert_eq!(w.flood_stage.value, "5gb");
        // flood_stage set without a headroom: none applies.
        assert_eq!(w.flood_stage.max_headroom, None);
        let total = Some(100 * GB);
        assert_eq!(level(&w, 79.0, total), Level::Low);
        assert_eq!(level(&w, 81.0, total), Level::High);
        // 5 GB free asked for: 95 % used of 100 GB, 76.2 % of 21 GB.
        assert_eq!(level(&w, 94.0, total), Level::High);
        assert_eq!(level(&w, 95.0, total), Level::FloodStage);
        assert_eq!(level(&w, 80.5, Some(21 * GB)), Level::FloodStage);
        let off = json!({"persistent": {"cluster.routing.allocation.disk.threshold_enabled": "false"}});
        assert_eq!(level(&watermarks(&off), 99.0, total), Level::Ok);
    }

    #[test]
    fn byte_sizes_in_elasticsearch_units() {
        assert_eq!(bytes("50gb"), Some(50 * GB));
        assert_eq!(bytes("512mb"), Some(512 << 20));
        assert_eq!(bytes("100b"), Some(100));
        assert_eq!(bytes("-1"), None);
        assert_eq!(bytes("85%"), None);
    }
}
