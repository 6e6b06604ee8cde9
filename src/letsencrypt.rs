//! The Let's Encrypt companion (pure): which domain groups it should serve,
//! which names are refused and why, how its `DOMAIN_*` environment reads and
//! is written, and when a change has settled enough to patch.
//!
//! The companion (hamburml/docker-flow-letsencrypt) evaluates each
//! `DOMAIN_<n>` in bash as an array literal `('apex' 'alt' ...)`: anything
//! but a plain DNS hostname there is an injection, so names are validated
//! strictly and only ever written single-quoted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

/// The label that opts a service of any stack in.
pub const LABEL_OPT_IN: &str = "io.swarmlog.letsencrypt";
/// docker-flow-proxy's domain label.
pub const LABEL_DOMAIN: &str = "com.df.serviceDomain";
/// The label on the companion that remembers the groups swarmlog wrote (its
/// own, as JSON: canonical groups). Every other `DOMAIN_*` group is the user's.
pub const LABEL_OWNED: &str = "io.swarmlog.domains";

/// A source of domain names: the values, or a service label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Source {
    /// `values` or the service's name.
    pub service: String,
    /// The values key or the label.
    pub label: String,
}

/// A name that was refused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Refused {
    /// The text as found (escaped for display).
    pub name: String,
    pub source: Source,
    pub reason: String,
}

/// Checks and lower-cases one DNS hostname.
pub fn check_hostname(raw: &str) -> Result<String, String> {
    let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err("empty name".to_string());
    }
    if name.len() > 253 {
        return Err(format!("{} characters, more than 253", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "character {c:?} is not allowed (letters, digits, '-' and '.' only)"
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err("a certificate name needs at least two labels (name.tld)".to_string());
    }
    for l in &labels {
        if l.is_empty() {
            return Err("empty label (two dots in a row)".to_string());
        }
        if l.len() > 63 {
            return Err(format!("label {l:?} is longer than 63 characters"));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err(format!("label {l:?} starts or ends with '-'"));
        }
    }
    if labels.last().is_some_and(|t| t.chars().all(|c| c.is_ascii_digit())) {
        return Err("a certificate name cannot be an IP address".to_string());
    }
    Ok(name)
}

/// Groups in canonical form: apex first, the other names sorted and unique;
/// groups with the same apex merged; groups sorted by apex.
pub fn canonical(groups: &[Vec<String>]) -> Vec<Vec<String>> {
    let mut by_apex: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in groups {
        let Some(apex) = g.first() else { continue };
        let alts = by_apex.entry(apex.clone()).or_default();
        for n in &g[1..] {
            if n != apex {
                alts.insert(n.clone());
            }
        }
    }
    by_apex
        .into_iter()
        .map(|(apex, alts)| std::iter::once(apex).chain(alts).collect())
        .collect()
}

/// One group from a list of raw names, with refusals.
fn group_from(names: &[String], source: &Source, refused: &mut Vec<Refused>) -> Option<Vec<String>> {
    let mut group = Vec::new();
    for raw in names {
        match check_hostname(raw) {
            Ok(n) => {
                if !group.contains(&n) {
                    group.push(n);
                }
            }
            Err(reason) => refused.push(Refused {
                name: raw.escape_debug().to_string(),
                source: source.clone(),
                reason,
            }),
        }
    }
    (!group.is_empty()).then_some(group)
}

/// A service whose domains the companion should serve.
#[derive(Debug, Clone)]
pub struct DomainSource {
    pub service: String,
    /// The value of `com.df.serviceDomain` (comma separated names).
    pub service_domain: String,
}

/// The desired groups: static groups, then one group per distinct
/// `serviceDomain`. Invalid names are refused one by one; the rest stands.
pub fn desired_groups(statics: &[Vec<String>], services: &[DomainSource]) -> (Vec<Vec<String>>, Vec<Refused>) {
    let mut refused = Vec::new();
    let mut groups = Vec::new();
    for (i, g) in statics.iter().enumerate() {
        let source = Source {
            service: "values".into(),
            label: format!("letsencrypt.domains[{i}]"),
        };
        groups.extend(group_from(g, &source, &mut refused));
    }
    for s in services {
        let source = Source {
            service: s.service.clone(),
            label: LABEL_DOMAIN.into(),
        };
        let names: Vec<String> = s
            .service_domain
            .split(',')
            .map(|n| n.to_string())
            .filter(|n| !n.trim().is_empty())
            .collect();
        groups.extend(group_from(&names, &source, &mut refused));
    }
    refused.sort();
    refused.dedup();
    (canonical(&groups), refused)
}

/// Reads a bash array literal `('a' 'b')`, `("a" "b")` or `(a b)`.
pub fn parse_array(value: &str) -> Vec<String> {
    let inner = value.trim().trim_start_matches('(').trim_end_matches(')');
    crate::render::compose::model::shell_words(inner).unwrap_or_default()
}

/// The groups a companion's environment currently holds (`DOMAIN_<n>`, in order of n).
pub fn current_groups(env: &[String]) -> Vec<Vec<String>> {
    let mut numbered: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for e in env {
        let Some((k, v)) = e.split_once('=') else { continue };
        if let Some(n) = k.strip_prefix("DOMAIN_").and_then(|n| n.parse::<u32>().ok()) {
            let names: Vec<String> = parse_array(v).into_iter().map(|n| n.to_ascii_lowercase()).collect();
            if !names.is_empty() {
                numbered.insert(n, names);
            }
        }
    }
    numbered.into_values().collect()
}

fn is_domain_var(e: &str) -> bool {
    let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
    key == "DOMAIN_COUNT"
        || key
            .strip_prefix("DOMAIN_")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// The groups swarmlog wrote, from the companion's [`LABEL_OWNED`] label.
/// An absent label owns nothing; an unreadable one is an error (the caller
/// then owns nothing either: a user's group is never taken for ours).
pub fn owned_from_label(label: Option<&str>) -> Result<Vec<Vec<String>>, String> {
    match label {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str::<Vec<Vec<String>>>(text)
            .map(|g| canonical(&g))
            .map_err(|e| format!("label {LABEL_OWNED} is not a JSON list of domain groups ({e}): {text:?}")),
    }
}

/// The [`LABEL_OWNED`] value for the groups swarmlog writes (none: no label).
pub fn owned_label(ours: &[Vec<String>]) -> Option<String> {
    (!ours.is_empty()).then(|| serde_json::Value::from(canonical(ours)).to_string())
}

/// One group in canonical form.
fn canonical_group(g: &[String]) -> Vec<String> {
    canonical(&[g.to_vec()]).into_iter().next().unwrap_or_default()
}

/// The companion's domains after a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The environment to write.
    pub env: Vec<String>,
    /// Every group it holds then (the user's and swarmlog's, in `DOMAIN_<n>` order).
    pub groups: Vec<Vec<String>>,
    /// swarmlog's groups (canonical): what [`LABEL_OWNED`] remembers.
    pub ours: Vec<Vec<String>>,
}

/// Merges the wanted groups into a companion's environment without losing
/// the user's: every `DOMAIN_<n>` that is not one swarmlog wrote before
/// (`owned`, from [`LABEL_OWNED`]) stays as it is, byte for byte and in its
/// place; swarmlog's groups are the wanted ones no group of the user already
/// holds every name of, appended under the lowest free numbers (so `1..n` stays contiguous
/// when the user's are), and groups swarmlog wrote that are no longer wanted
/// go. `DOMAIN_COUNT` is the total, last. Names are valid hostnames, so
/// single quotes are safe.
pub fn merge(env: &[String], owned: &[Vec<String>], wanted: &[Vec<String>]) -> Merged {
    let owned: BTreeSet<Vec<String>> = owned.iter().map(|g| canonical_group(g)).collect();
    let mut out = Vec::new();
    let mut used = BTreeSet::new();
    let mut users = BTreeSet::new();
    for e in env {
        if !is_domain_var(e) {
            out.push(e.clone());
            continue;
        }
        let (key, value) = e.split_once('=').unwrap_or((e.as_str(), ""));
        let Some(n) = key.strip_prefix("DOMAIN_").and_then(|n| n.parse::<u32>().ok()) else {
            continue; // DOMAIN_COUNT: written anew below.
        };
        let names: Vec<String> = parse_array(value).into_iter().map(|n| n.to_ascii_lowercase()).collect();
        let group = canonical_group(&names);
        if !group.is_empty() && owned.contains(&group) {
            continue; // Ours from before: written anew below if still wanted.
        }
        used.insert(n);
        users.insert(group);
        out.push(e.clone());
    }
    // A user's group with every name of a wanted one (in any order) covers it:
    // its certificate already holds them all.
    let covered = |g: &Vec<String>| users.iter().any(|u: &Vec<String>| g.iter().all(|n| u.contains(n)));
    let ours: Vec<Vec<String>> = canonical(wanted).into_iter().filter(|g| !covered(g)).collect();
    let mut free = (1u32..).filter(|n| !used.contains(n));
    for g in &ours {
        let quoted: Vec<String> = g.iter().map(|n| format!("'{n}'")).collect();
        let n = free.next().unwrap_or(u32::MAX);
        out.push(format!("DOMAIN_{n}=({})", quoted.join(" ")));
    }
    out.push(format!("DOMAIN_COUNT={}", used.len() + ours.len()));
    let groups = current_groups(&out);
    Merged { env: out, groups, ours }
}

/// Keeps the `DOMAIN_*` variables of `observed` in `desired` (for a companion
/// swarmlog owns: those variables are the patcher's, not the chart's).
pub fn keep_domain_vars(desired: &[String], observed: &[String]) -> Vec<String> {
    let mut out: Vec<String> = desired.iter().filter(|e| !is_domain_var(e)).cloned().collect();
    out.extend(observed.iter().filter(|e| is_domain_var(e)).cloned());
    out
}

/// A change waiting for the settle window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending<T> {
    pub groups: Vec<Vec<String>>,
    pub since: T,
}

/// What to do about the companion now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The companion serves exactly the desired groups.
    InSync,
    /// A change is settling; look again after this long.
    Wait(Duration),
    /// Patch now.
    Patch,
}

/// Decides, with the clock passed in: patch only once the desired groups
/// have stayed the same for `settle`. A new difference (re)starts the window.
pub fn decide<T>(
    desired: &[Vec<String>],
    current: &[Vec<String>],
    pending: &mut Option<Pending<T>>,
    now: T,
    settle: Duration,
    elapsed: impl Fn(&T, &T) -> Duration,
) -> Decision {
    if canonical(desired) == canonical(current) {
        *pending = None;
        return Decision::InSync;
    }
    match pending {
        Some(p) if p.groups == desired => {
            let waited = elapsed(&p.since, &now);
            if waited >= settle {
                *pending = None;
                Decision::Patch
            } else {
                Decision::Wait(settle - waited)
            }
        }
        _ => {
            *pending = Some(Pending {
                groups: desired.to_vec(),
                since: now,
            });
            if settle.is_zero() {
                *pending = None;
                Decision::Patch
            } else {
                Decision::Wait(settle)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn hostnames() {
        assert_eq!(check_hostname("Example.COM.").unwrap(), "example.com");
        assert!(check_hostname("kibana.example.com").is_ok());
        assert!(check_hostname("xn--bcher-kva.example").is_ok());
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        for bad in [
            "",
            "localhost",
            "a..b",
            "-a.com",
            "a-.com",
            "1.2.3.4",
            "*.example.com",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostile_strings_are_refused() {
        let corpus = [
            "a.com'; rm -rf / #",
            "a.com' 'b.com",
            "$(reboot).example.com",
            "`id`.example.com",
            "a.com;id",
            "a.com\nDOMAIN_2=x",
            "a .com",
            "a.com\"",
            "a.com)",
            "${IFS}.com",
            "a.com&&id",
            "a.com|id",
            "a.com>x",
            "\\x41.com",
            "a.com\0",
            "ä.com",
        ];
        for bad in corpus {
            assert!(check_hostname(bad).is_err(), "{bad:?} passed");
        }
        let (groups, refused) = desired_groups(
            &[],
            &corpus
                .iter()
                .map(|c| DomainSource {
                    service: "evil".into(),
                    service_domain: c.to_string(),
                })
                .collect::<Vec<_>>(),
        );
        // Names that survive splitting on ',' and validation are plain hostnames only.
        for g in &groups {
            for n in g {
                assert!(check_hostname(n).is_ok(), "{n:?}");
                assert!(!n.contains('\''));
            }
        }
        // Every entry is refused whole, by name: none is served, none missed.
        assert!(groups.is_empty(), "served: {groups:?}");
        let mut names: Vec<&str> = refused.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        // (A refused name is shown escaped, as `escape_debug` writes it.)
        let escaped: Vec<String> = corpus.iter().map(|c| c.escape_debug().to_string()).collect();
        let mut want: Vec<&str> = escaped.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(names, want, "refused names differ from the corpus");
        assert!(refused
            .iter()
            .all(|r| r.source.service == "evil" && r.source.label == LABEL_DOMAIN));
    }

    #[test]
    fn groups_from_values_and_labels() {
        let statics = vec![s(&["example.com", "www.example.com"])];
        let services = vec![
            DomainSource {
                service: "logging_kibana".into(),
                service_domain: "logs.example.org, kibana.example.org".into(),
            },
            DomainSource {
                service: "app_web".into(),
                service_domain: "app.example.net".into(),
            },
            DomainSource {
                service: "app_web2".into(),
                service_domain: "APP.example.net".into(),
            },
        ];
        let (groups, refused) = desired_groups(&statics, &services);
        assert!(refused.is_empty());
        assert_eq!(
            groups,
            vec![
                s(&["app.example.net"]),
                s(&["example.com", "www.example.com"]),
                s(&["logs.example.org", "kibana.example.org"]),
            ]
        );
    }

    #[test]
    fn one_bad_name_does_not_block_the_rest() {
        let services = vec![DomainSource {
            service: "web".into(),
            service_domain: "good.example.com,bad'name.example.com".into(),
        }];
        let (groups, refused) = desired_groups(&[], &services);
        assert_eq!(groups, vec![s(&["good.example.com"])]);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].source.service, "web");
    }

    #[test]
    fn same_set_in_any_order_is_the_same() {
        let a = canonical(&[s(&["a.com", "y.a.com", "x.a.com"]), s(&["b.com"])]);
        let b = canonical(&[s(&["b.com"]), s(&["a.com", "x.a.com", "y.a.com", "x.a.com"])]);
        assert_eq!(a, b);
        // The apex matters: it names the certificate folder.
        assert_ne!(canonical(&[s(&["x.a.com", "a.com"])]), a[..1].to_vec());
    }

    #[test]
    fn env_round_trip_keeps_everything_else() {
        let env = s(&[
            "CERTBOT_EMAIL=ops@example.com",
            "DOMAIN_1=('example.com' 'www.example.com')",
            "DOMAIN_3=(old.example.com)",
            "DOMAIN_COUNT=2",
            "PROXY_ADDRESS=proxy",
        ]);
        assert_eq!(
            current_groups(&env),
            vec![s(&["example.com", "www.example.com"]), s(&["old.example.com"])]
        );
        // Everything swarmlog owns: rewritten as wanted, the rest in place.
        let owned = current_groups(&env);
        let groups = vec![s(&["example.com", "www.example.com"]), s(&["logs.example.org"])];
        let out = merge(&env, &owned, &groups);
        assert_eq!(
            out.env,
            s(&[
                "CERTBOT_EMAIL=ops@example.com",
                "PROXY_ADDRESS=proxy",
                "DOMAIN_1=('example.com' 'www.example.com')",
                "DOMAIN_2=('logs.example.org')",
                "DOMAIN_COUNT=2",
            ])
        );
        assert_eq!(current_groups(&out.env), groups);
        assert_eq!(out.groups, groups);
        assert_eq!(out.ours, groups);
        assert_eq!(parse_array("(\"a.com\" \"b.com\")"), s(&["a.com", "b.com"]));
    }

    /// The seed's scenario: a companion made by hand for the frontend gets
    /// Kibana's group too, and keeps its own.
    #[test]
    fn merge_keeps_the_users_groups_in_place_and_appends_ours() {
        let env = s(&[
            "CERTBOT_EMAIL=ops@example.com",
            "DOMAIN_1=('customdomain.com' 'www.customdomain.com')",
            "DOMAIN_COUNT=1",
            "PROXY_ADDRESS=proxy",
        ]);
        let kibana = vec![s(&["kibana.example.org"])];
        let m = merge(&env, &[], &kibana);
        assert_eq!(
            m.env,
            s(&[
                "CERTBOT_EMAIL=ops@example.com",
                "DOMAIN_1=('customdomain.com' 'www.customdomain.com')",
                "PROXY_ADDRESS=proxy",
                "DOMAIN_2=('kibana.example.org')",
                "DOMAIN_COUNT=2",
            ])
        );
        assert_eq!(m.ours, kibana);
        assert_eq!(owned_label(&m.ours).as_deref(), Some(r#"[["kibana.example.org"]]"#));
        // Kibana's domain changes: only swarmlog's group is replaced.
        let owned = owned_from_label(owned_label(&m.ours).as_deref()).unwrap();
        let m2 = merge(&m.env, &owned, &[s(&["logs.example.org"])]);
        assert_eq!(
            m2.env,
            s(&[
                "CERTBOT_EMAIL=ops@example.com",
                "DOMAIN_1=('customdomain.com' 'www.customdomain.com')",
                "PROXY_ADDRESS=proxy",
                "DOMAIN_2=('logs.example.org')",
                "DOMAIN_COUNT=2",
            ])
        );
        // A group the user adds by hand later stays; ours keeps its number.
        let mut by_hand = m2.env.clone();
        by_hand.insert(3, "DOMAIN_3=(shop.example.net)".to_string());
        let m3 = merge(&by_hand, &m2.ours, &[s(&["logs.example.org"])]);
        assert_eq!(
            m3.env,
            s(&[
                "CERTBOT_EMAIL=ops@example.com",
                "DOMAIN_1=('customdomain.com' 'www.customdomain.com')",
                "PROXY_ADDRESS=proxy",
                "DOMAIN_3=(shop.example.net)",
                "DOMAIN_2=('logs.example.org')",
                "DOMAIN_COUNT=3",
            ])
        );
        assert_eq!(canonical(&m3.groups), canonical(&current_groups(&by_hand)));
    }

    #[test]
    fn merge_removes_only_ours_when_no_longer_wanted() {
        let env = s(&[
            "DOMAIN_1=('customdomain.com' 'www.customdomain.com')",
            "DOMAIN_2=('kibana.example.org')",
            "DOMAIN_3=('app.example.net')",
            "DOMAIN_COUNT=3",
        ]);
        let owned = vec![s(&["kibana.example.org"]), s(&["app.example.net"])];
        let m = merge(&env, &owned, &[s(&["app.example.net"])]);
        assert_eq!(
            m.env,
            s(&[
                "DOMAIN_1=('customdomain.com' 'www.customdomain.com')",
                "DOMAIN_2=('app.example.net')",
                "DOMAIN_COUNT=2",
            ])
        );
        assert_eq!(m.ours, vec![s(&["app.example.net"])]);
        // Nothing wanted: the user's group alone, and no label.
        let none = merge(&m.env, &m.ours, &[]);
        assert_eq!(
            none.env,
            s(&["DOMAIN_1=('customdomain.com' 'www.customdomain.com')", "DOMAIN_COUNT=1"])
        );
        assert_eq!(owned_label(&none.ours), None);
        // Without the label nothing is ours: every group stays.
        let unlabelled = merge(&env, &[], &[]);
        assert_eq!(unlabelled.groups, current_groups(&env));
    }

    #[test]
    fn a_users_group_equal_to_ours_is_not_duplicated() {
        let env = s(&["DOMAIN_1=(\"www.example.com\" \"example.com\")", "DOMAIN_COUNT=1"]);
        let m = merge(
            &env,
            &[],
            &[s(&["example.com", "www.example.com"]), s(&["b.example.org"])],
        );
        assert_eq!(
            m.env,
            s(&[
                "DOMAIN_1=(\"www.example.com\" \"example.com\")",
                "DOMAIN_2=('b.example.org')",
                "DOMAIN_COUNT=2",
            ])
        );
        // Not ours either: it stays when swarmlog no longer wants it.
        assert_eq!(m.ours, vec![s(&["b.example.org"])]);
        let later = merge(&m.env, &m.ours, &[]);
        assert_eq!(
            later.env,
            s(&["DOMAIN_1=(\"www.example.com\" \"example.com\")", "DOMAIN_COUNT=1"])
        );
        // A user's group with more names covers ours.
        let m = merge(&env, &[], &[s(&["example.com"])]);
        assert!(m.ours.is_empty(), "{m:?}");
    }

    #[test]
    fn owned_label_reads_back_and_refuses_garbage() {
        let g = vec![
            s(&["b.example.org"]),
            s(&["a.example.org", "z.a.example.org", "x.a.example.org"]),
        ];
        let text = owned_label(&g);
        assert_eq!(owned_from_label(text.as_deref()).unwrap(), canonical(&g));
        assert_eq!(owned_from_label(None).unwrap(), Vec::<Vec<String>>::new());
        assert!(owned_from_label(Some("a.example.org")).is_err());
    }

    /// Gaps in the user's numbers are filled first: with older images that
    /// read DOMAIN_1..DOMAIN_COUNT, every group is still read.
    #[test]
    fn ours_take_the_lowest_free_numbers() {
        let env = s(&["DOMAIN_2=(a.example.com)", "DOMAIN_COUNT=1"]);
        let m = merge(&env, &[], &[s(&["b.example.com"]), s(&["c.example.com"])]);
        assert_eq!(
            m.env,
            s(&[
                "DOMAIN_2=(a.example.com)",
                "DOMAIN_1=('b.example.com')",
                "DOMAIN_3=('c.example.com')",
                "DOMAIN_COUNT=3",
            ])
        );
    }

    #[test]
    fn settle_window() {
        let settle = Duration::from_secs(2);
        let el = |a: &u64, b: &u64| Duration::from_millis(b - a);
        let want = vec![s(&["a.com"])];
        let have = vec![s(&["b.com"])];
        let mut p = None;
        assert_eq!(decide(&want, &want, &mut p, 0, settle, el), Decision::InSync);
        assert_eq!(decide(&want, &have, &mut p, 0, settle, el), Decision::Wait(settle));
        assert_eq!(
            decide(&want, &have, &mut p, 1500, settle, el),
            Decision::Wait(Duration::from_millis(500))
        );
        // Another change restarts the window.
        let want2 = vec![s(&["c.com"])];
        assert_eq!(decide(&want2, &have, &mut p, 1800, settle, el), Decision::Wait(settle));
        assert_eq!(decide(&want2, &have, &mut p, 3800, settle, el), Decision::Patch);
        assert_eq!(p, None);
        // A difference that goes away by itself patches nothing.
        assert_eq!(decide(&want, &have, &mut p, 4000, settle, el), Decision::Wait(settle));
        assert_eq!(decide(&have, &have, &mut p, 4500, settle, el), Decision::InSync);
        assert_eq!(p, None);
    }
}
