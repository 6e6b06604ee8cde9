//! The few fields of an X.509 certificate the stand-in shows, read from its
//! DER by hand (pure, no I/O): the subject and issuer as Java's
//! `X500Principal#toString` writes them (what Elasticsearch's
//! `GET /_ssl/certificates` shows: the last RDN first, `, ` between them),
//! the serial number in hex as `BigInteger#toString(16)` writes it, and
//! `notAfter`. Nothing here checks a certificate: rustls does that.

/// What `GET /_ssl/certificates` and the transport's peer list show of a
/// certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub subject_dn: String,
    pub issuer_dn: String,
    /// Lower-case hex, no leading zeros (`1a2b`).
    pub serial_number: String,
    /// `notAfter` as `2125-01-31T10:00:00.000Z`.
    pub expiry: String,
    /// The subject's (last) common name, if it has one.
    pub common_name: Option<String>,
}

impl Summary {
    /// `CN=name serial 1a2b` (or the DN without a CN), for logs.
    pub fn identity(&self) -> String {
        let who = match &self.common_name {
            Some(cn) => format!("CN={cn}"),
            None => format!("[{}]", self.subject_dn),
        };
        format!("{who} serial {}", self.serial_number)
    }
}

/// One DER element: its tag and contents; `rest` follows it.
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
}

fn tlv(data: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = data.split_first().ok_or("truncated DER: no tag")?;
    let (&first, rest) = rest.split_first().ok_or("truncated DER: no length")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(format!("bad DER length (0x{first:02x})"));
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(format!("truncated DER: {len} bytes announced, {} there", rest.len()));
    }
    Ok((
        Tlv {
            tag,
            value: &rest[..len],
        },
        &rest[len..],
    ))
}

/// The element at the start of `data`, which must have `tag`.
fn expect<'a>(data: &'a [u8], tag: u8, what: &str) -> Result<(Tlv<'a>, &'a [u8]), String> {
    let (t, rest) = tlv(data)?;
    if t.tag != tag {
        return Err(format!("{what}: expected tag 0x{tag:02x}, found 0x{:02x}", t.tag));
    }
    Ok((t, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;

/// Dotted form of an OID's contents (`2.5.4.3`).
fn oid_text(v: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc = 0u64;
    for (i, b) in v.iter().enumerate() {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() && i < v.len() {
                let (a, b) = if acc < 80 { (acc / 40, acc % 40) } else { (2, acc - 80) };
                parts.push(a);
                parts.push(b);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// The keyword Java's `X500Principal#toString` uses for an attribute.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "SERIALNUMBER",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        _ => return None,
    })
}

/// A directory string's text (UTF8, Printable, IA5, T61, BMP, Universal).
fn string_value(tag: u8, v: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 | 0x14 | 0x12 | 0x1a => Some(String::from_utf8_lossy(v).into_owned()),
        0x1e => {
            let units: Vec<u16> = v
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        0x1c => Some(
            v.chunks_exact(4)
                .filter_map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        _ => None,
    }
}

/// A value as Java's RFC 1779 writer quotes it: in double quotes when it
/// holds a character that would split the DN (`"` and `\\` escaped inside).
fn escape(v: &str) -> String {
    let special = |c: char| matches!(c, ',' | '+' | '=' | '"' | '\\' | '<' | '>' | '#' | ';' | '\n');
    if !v.chars().any(special) && !v.starts_with(' ') && !v.ends_with(' ') {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A Name: (its DN as Java writes it, the last CN).
fn name(v: &[u8]) -> Result<(String, Option<String>), String> {
    let mut rdns = Vec::new();
    let mut cn = None;
    let mut rest = v;
    while !rest.is_empty() {
        let (set, after) = expect(rest, SET, "name: relative distinguished name")?;
        rest = after;
        let mut attrs = Vec::new();
        let mut inner = set.value;
        while !inner.is_empty() {
            let (pair, after) = expect(inner, SEQUENCE, "name: attribute")?;
            inner = after;
            let (oid, value) = expect(pair.value, OID, "name: attribute type")?;
            let (value, _) = tlv(value)?;
            let oid = oid_text(oid.value);
            let text = match string_value(value.tag, value.value) {
                Some(s) => {
                    if oid == "2.5.4.3" {
                        cn = Some(s.clone());
                    }
                    escape(&s)
                }
                None => {
                    let hex: String = value.value.iter().map(|b| format!("{b:02X}")).collect();
                    format!("#{:02X}{:02X}{hex}", value.tag, value.value.len())
                }
            };
            match keyword(&oid) {
                Some(k) => attrs.push(format!("{k}={text}")),
                None => attrs.push(format!("OID.{oid}={text}")),
            }
        }
        rdns.push(attrs.join(" + "));
    }
    rdns.reverse();
    Ok((rdns.join(", "), cn))
}

/// UTCTime (`YYMMDDHHMMSSZ`, 50..99 meaning 19xx) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`) as `YYYY-MM-DDTHH:MM:SS.000Z`.
fn time(t: &Tlv) -> Result<String, String> {
    let s = std::str::from_utf8(t.value).map_err(|_| "notAfter: not text".to_string())?;
    let digits = s.trim_end_matches('Z');
    let full = match (t.tag, digits.len()) {
        (0x17, 12) => {
            let yy: u32 = digits[..2]
                .parse()
                .map_err(|_| format!("notAfter: bad UTCTime {s:?}"))?;
            format!("{}{digits}", if yy >= 50 { "19" } else { "20" })
        }
        (0x18, 14) => digits.to_string(),
        _ => return Err(format!("notAfter: unsupported time {s:?} (tag 0x{:02x})", t.tag)),
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("notAfter: bad time {s:?}"));
    }
    Ok(format!(
        "{}-{}-{}T{}:{}:{}.000Z",
        &full[..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    ))
}

/// Reads the summary of one DER certificate.
pub fn summary(der: &[u8]) -> Result<Summary, String> {
    let (cert, _) = expect(der, SEQUENCE, "certificate")?;
    let (tbs, _) = expect(cert.value, SEQUENCE, "tbsCertificate")?;
    let mut rest = tbs.value;
    // version [0] EXPLICIT, absent for v1.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.1;
    }
    let (serial, rest) = expect(rest, INTEGER, "serialNumber")?;
    let (_, rest) = expect(rest, SEQUENCE, "signature algorithm")?;
    let (issuer, rest) = expect(rest, SEQUENCE, "issuer")?;
    let (validity, rest) = expect(rest, SEQUENCE, "validity")?;
    let (subject, _) = expect(rest, SEQUENCE, "subject")?;
    let (_, after_not_before) = tlv(validity.value)?;
    let (not_after, _) = tlv(after_not_before)?;
    let hex: String = serial.value.iter().map(|b| format!("{b:02x}")).collect();
    let serial_number = match hex.trim_start_matches('0') {
        "" => "0".to_string(),
        s => s.to_string(),
    };
    let (subject_dn, common_name) = name(subject.value)?;
    let (issuer_dn, _) = name(issuer.value)?;
    Ok(Summary {
        subject_dn,
        issuer_dn,
        serial_number,
        expiry: time(&not_after)?,
        common_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element from its tag and contents.
    fn el(tag: u8, v: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if v.len() < 0x80 {
            out.push(v.len() as u8);
        } else {
            out.extend([0x82, (v.len() >> 8) as u8, v.len() as u8]);
        }
        out.extend_from_slice(v);
        out
    }

    fn attr(oid: &[u8], tag: u8, text: &str) -> Vec<u8> {
        el(SET, &el(SEQUENCE, &[el(OID, oid), el(tag, text.as_bytes())].concat()))
    }

    #[test]
    fn subject_serial_and_expiry_read_as_java_writes_them() {
        let subject = el(
            SEQUENCE,
            &[
                attr(&[0x55, 0x04, 0x06], 0x13, "US"),
                attr(&[0x55, 0x04, 0x0a], 0x0c, "swarmlog, inc"),
                attr(&[0x55, 0x04, 0x03], 0x0c, "es-a"),
            ]
            .concat(),
        );
        let issuer = el(SEQUENCE, &attr(&[0x55, 0x04, 0x03], 0x0c, "swarmlog CA"));
        let validity = el(
            SEQUENCE,
            &[el(0x17, b"250101000000Z"), el(0x18, b"21250131102030Z")].concat(),
        );
        let tbs = el(
            SEQUENCE,
            &[
                el(0xa0, &el(INTEGER, &[2])),
                el(INTEGER, &[0x00, 0x8f, 0x01]),
                el(SEQUENCE, &el(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])),
                issuer,
                validity,
                subject,
            ]
            .concat(),
        );
        let cert = el(SEQUENCE, &[tbs, el(SEQUENCE, &[]), el(0x03, &[0])].concat());
        let s = summary(&cert).expect("a summary");
        assert_eq!(s.subject_dn, "CN=es-a, O=\"swarmlog, inc\", C=US");
        assert_eq!(s.issuer_dn, "CN=swarmlog CA");
        assert_eq!(s.serial_number, "8f01");
        assert_eq!(s.expiry, "2125-01-31T10:20:30.000Z");
        assert_eq!(s.common_name.as_deref(), Some("es-a"));
        assert_eq!(s.identity(), "CN=es-a serial 8f01");
        assert_eq!(
            oid_text(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
            "1.2.840.10045.4.3.2"
        );
        assert!(summary(&cert[..cert.len() - 3]).is_err(), "truncated DER is refused");
    }
}
