//! The wall clock, for the edges only (status timestamps): pure logic takes
//! times as arguments.

/// Current wall-clock time, RFC 3339 to the second.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
