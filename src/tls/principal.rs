//! mTLS principal extraction, compatible with Kafka's `ssl.principal.mapping.rules`.
//!
//! Kafka builds the principal from `X500Principal.getName()` (RFC 2253 form,
//! most-specific RDN first, no spaces) and runs it through an ordered list of
//! rules: `RULE:pattern/replacement/[LU]` or `DEFAULT`. The first rule whose
//! regex matches the *whole* name wins; its output is
//! `name.replaceAll(pattern, replacement)` (Java semantics) with optional case
//! folding. No match is an error (the connection must be refused).
//!
//! Differences from Kafka, all deliberate:
//! * patterns use the Rust `regex` dialect (no look-around/back-references);
//!   such rules are rejected at config time instead of at connection time.
//! * replacement references to non-existent groups are rejected at config time.
//! * an empty rule list means `DEFAULT` (Kafka would reject every client).
//! * a rule that maps a name to the empty string is an error, since `User:`
//!   with no name can never be what the operator meant.

use std::fmt;
use std::sync::OnceLock;

use regex::{Captures, Regex};
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use x509_parser::der_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

use super::TlsError;

/// Which part of the client certificate the mapping rules are applied to.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalSource {
    /// The subject distinguished name, formatted like Java's `X500Principal.getName()`.
    #[default]
    Subject,
    /// The first URI subjectAltName, e.g. `spiffe://portcullis/user/alice`.
    SanUri,
}

/// Kafka's grammar for a single rule (`SslPrincipalMapper.RULE_PATTERN`).
/// Groups: 1 = DEFAULT, 2 = pattern, 4 = replacement, 6 = case flag.
const RULE_PATTERN: &str = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)";

/// Anchored-at-start version of [`RULE_PATTERN`] (Java's `lookingAt`).
fn rule_parser() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(&format!(r"\A(?:{RULE_PATTERN})")).expect("static rule grammar compiles")
    })
}

/// Kafka's `RULE_SPLITTER`: rules contain commas, so a Kafka-style single
/// string cannot be split on `,`; instead each rule is matched by the grammar
/// and must be followed by a comma or the end.
fn rule_splitter() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(&format!(r"\s*({RULE_PATTERN})\s*(,\s*|$)"))
            .expect("static rule splitter compiles")
    })
}

/// Iterates matches the way `java.util.regex.Matcher.find()` does: after a
/// non-empty match an empty match may follow at the same position (Rust's
/// `find_iter` skips it), after an empty match the search moves one char on.
/// Needed so `replaceAll` output is identical to Kafka's.
fn java_find_all<'h>(re: &Regex, hay: &'h str) -> Vec<Captures<'h>> {
    let mut found = Vec::new();
    let mut pos = 0;
    while pos <= hay.len() {
        let Some(caps) = re.captures_at(hay, pos) else {
            break;
        };
        let Some(m) = caps.get(0) else { break };
        let next = if m.is_empty() {
            match hay[m.end()..].chars().next() {
                Some(c) => m.end() + c.len_utf8(),
                None => hay.len() + 1,
            }
        } else {
            m.end()
        };
        found.push(caps);
        pos = next;
    }
    found
}

/// Splits a Kafka-style `ssl.principal.mapping.rules` string into its rules
/// and validates each one. Blank entries are dropped, as Kafka does.
pub fn parse_rules_string(s: &str) -> Result<Vec<String>, TlsError> {
    let rules = split_rules(s);
    for rule in &rules {
        Rule::parse(rule)?;
    }
    Ok(rules)
}

fn split_rules(s: &str) -> Vec<String> {
    java_find_all(rule_splitter(), s.trim())
        .iter()
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str().to_string())
        .filter(|r| !r.is_empty())
        .collect()
}

/// One piece of a parsed Java replacement string.
#[derive(Debug, Clone, PartialEq)]
enum ReplToken {
    Literal(String),
    Group(usize),
    Named(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CaseFold {
    None,
    Lower,
    Upper,
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        /// Original rule text, for error messages.
        text: String,
        /// The pattern as written; used for `replaceAll`.
        pattern: Regex,
        /// `\A(?:pattern)\z`, i.e. Java's `Matcher.matches()`.
        whole: Regex,
        replacement: Vec<ReplToken>,
        case: CaseFold,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Default => f.write_str("DEFAULT"),
            Rule::Replace { text, .. } => f.write_str(text),
        }
    }
}

impl Rule {
    fn parse(text: &str) -> Result<Rule, TlsError> {
        let bad = |reason: String| TlsError::BadMappingRule {
            rule: text.to_string(),
            reason,
        };
        let caps = rule_parser()
            .captures(text)
            .ok_or_else(|| bad("does not match the rule grammar".into()))?;
        let end = caps.get(0).map_or(0, |m| m.end());
        if end != text.len() {
            return Err(bad(format!(
                "expected `DEFAULT` or `RULE:pattern/replacement/[LU]`; unexpected text `{}`",
                &text[end..]
            )));
        }
        if caps.get(1).is_some() {
            return Ok(Rule::Default);
        }
        let (Some(pattern), Some(replacement)) = (caps.get(2), caps.get(4)) else {
            return Err(bad("empty rule".into()));
        };
        let case = match caps.get(6).map(|m| m.as_str()) {
            Some("L") => CaseFold::Lower,
            Some("U") => CaseFold::Upper,
            _ => CaseFold::None,
        };
        Self::build(text, pattern.as_str(), replacement.as_str(), case).map_err(bad)
    }

    fn build(text: &str, pattern: &str, repl: &str, case: CaseFold) -> Result<Rule, String> {
        let compiled = Regex::new(pattern).map_err(regex_error)?;
        let whole = Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(regex_error)?;
        let replacement = parse_replacement(repl, &compiled)?;
        Ok(Rule::Replace {
            text: text.to_string(),
            pattern: compiled,
            whole,
            replacement,
            case,
        })
    }

    /// Returns `Some(principal)` if this rule applies to `name`.
    fn apply(&self, name: &str) -> Option<String> {
        let Rule::Replace {
            pattern,
            whole,
            replacement,
            case,
            ..
        } = self
        else {
            return Some(name.to_string());
        };
        if !whole.is_match(name) {
            return None;
        }
        let out = java_replace_all(pattern, name, replacement);
        Some(match case {
            CaseFold::None => out,
            CaseFold::Lower => out.to_lowercase(),
            CaseFold::Upper => out.to_uppercase(),
        })
    }
}

/// regex errors are multi-line diagrams; config errors should fit one log line.
fn regex_error(e: regex::Error) -> String {
    let text = e.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("bad regex: {}", parts.join(" "))
}

/// Parses a Java `Matcher.appendReplacement` string, after Kafka's
/// `escapeLiteralBackReferences` (a `$n` naming a group that does not exist is
/// kept literally, trying shorter prefixes of `n` first).
fn parse_replacement(repl: &str, re: &Regex) -> Result<Vec<ReplToken>, String> {
    let groups = re.captures_len() - 1;
    let chars: Vec<char> = repl.chars().collect();
    let mut tokens = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let c = chars
                    .get(i + 1)
                    .ok_or("replacement ends with a lone backslash")?;
                lit.push(*c);
                i += 2;
            }
            '$' => {
                let (token, used) = parse_group_ref(&chars[i + 1..], groups, re)?;
                match token {
                    Some(t) => {
                        flush_literal(&mut lit, &mut tokens);
                        tokens.push(t);
                    }
                    None => lit.push('$'),
                }
                i += 1 + used;
            }
            c => {
                lit.push(c);
                i += 1;
            }
        }
    }
    flush_literal(&mut lit, &mut tokens);
    Ok(tokens)
}

fn flush_literal(lit: &mut String, tokens: &mut Vec<ReplToken>) {
    if !lit.is_empty() {
        tokens.push(ReplToken::Literal(std::mem::take(lit)));
    }
}

/// Parses what follows a `$`. Returns the token (None = literal `$`, per
/// Kafka's escaping) and how many chars after the `$` were consumed.
fn parse_group_ref(
    rest: &[char],
    groups: usize,
    re: &Regex,
) -> Result<(Option<ReplToken>, usize), String> {
    if rest.first() == Some(&'{') {
        let close = rest
            .iter()
            .position(|c| *c == '}')
            .ok_or("unterminated `${name}` group reference")?;
        let name: String = rest[1..close].iter().collect();
        if !re.capture_names().flatten().any(|n| n == name) {
            return Err(format!("replacement references unknown group `{name}`"));
        }
        return Ok((Some(ReplToken::Named(name)), close + 1));
    }
    let digits: Vec<u32> = rest.iter().map_while(|c| c.to_digit(10)).collect();
    let Some(&first) = digits.first() else {
        return Err("`$` in replacement must be followed by a group number or {name}".into());
    };
    if kafka_escapes_literally(&digits, groups) {
        return Ok((None, 0));
    }
    // Java: take the first digit, then more digits while the group exists.
    let mut group = first as usize;
    let mut used = 1;
    for &d in &digits[1..] {
        let next = group.saturating_mul(10).saturating_add(d as usize);
        if next > groups {
            break;
        }
        group = next;
        used += 1;
    }
    if group > groups {
        return Err(format!(
            "replacement references group {group} but the pattern has {groups} group(s)"
        ));
    }
    Ok((Some(ReplToken::Group(group)), used))
}

/// Kafka's `escapeLiteralBackReferences`: with at least one group, `$n` whose
/// number (truncated digit by digit while >= 10) still exceeds the group
/// count is treated as literal text.
fn kafka_escapes_literally(digits: &[u32], groups: usize) -> bool {
    if groups == 0 || digits.first() == Some(&0) {
        return false;
    }
    let mut n = digits.iter().fold(0usize, |acc, d| {
        acc.saturating_mul(10).saturating_add(*d as usize)
    });
    while n > groups && n >= 10 {
        n /= 10;
    }
    n > groups
}

/// `String.replaceAll(pattern, replacement)` with Java's match iteration.
fn java_replace_all(re: &Regex, hay: &str, repl: &[ReplToken]) -> String {
    let mut out = String::with_capacity(hay.len());
    let mut last = 0;
    for caps in java_find_all(re, hay) {
        let Some(m) = caps.get(0) else { continue };
        out.push_str(&hay[last..m.start()]);
        expand(&caps, repl, &mut out);
        last = m.end();
    }
    out.push_str(&hay[last..]);
    out
}

fn expand(caps: &Captures<'_>, repl: &[ReplToken], out: &mut String) {
    for token in repl {
        // A group that did not participate appends nothing, as in Java.
        match token {
            ReplToken::Literal(s) => out.push_str(s),
            ReplToken::Group(n) => out.push_str(caps.get(*n).map_or("", |m| m.as_str())),
            ReplToken::Named(n) => out.push_str(caps.name(n).map_or("", |m| m.as_str())),
        }
    }
}

/// Maps client certificates to Kafka principal names (without `User:`).
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
    source: PrincipalSource,
}

impl PrincipalMapper {
    /// Builds a mapper. Each entry may be a single rule or a Kafka-style
    /// comma-separated list of rules; both are split with Kafka's grammar.
    pub fn new(rules: &[String], source: PrincipalSource) -> Result<Self, TlsError> {
        let mut parsed = Vec::new();
        for entry in rules {
            for rule in split_rules(entry) {
                parsed.push(Rule::parse(&rule)?);
            }
        }
        if parsed.is_empty() {
            parsed.push(Rule::Default);
        }
        Ok(Self {
            rules: parsed,
            source,
        })
    }

    pub fn source(&self) -> PrincipalSource {
        self.source
    }

    /// Applies the rules to an already-extracted name (DN or URI).
    pub fn map_name(&self, name: &str) -> Result<String, TlsError> {
        let mapped = self
            .rules
            .iter()
            .find_map(|r| r.apply(name))
            .ok_or_else(|| TlsError::NoMatchingRule {
                name: name.to_string(),
                rules: self.rules_display(),
            })?;
        if mapped.is_empty() {
            return Err(TlsError::NoMatchingRule {
                name: format!("{name} (mapped to an empty name)"),
                rules: self.rules_display(),
            });
        }
        Ok(mapped)
    }

    /// Extracts the configured name from a DER end-entity certificate and maps it.
    pub fn map_certificate(&self, end_entity_der: &[u8]) -> Result<String, TlsError> {
        let name = match self.source {
            PrincipalSource::Subject => subject_distinguished_name(end_entity_der)?,
            PrincipalSource::SanUri => first_uri_san(end_entity_der)?.ok_or(TlsError::NoSanUri)?,
        };
        self.map_name(&name)
    }

    /// Convenience for a finished handshake
    /// (`ServerConnection::peer_certificates()`): `Ok(None)` when the client
    /// presented no certificate (possible with `client_auth: requested`).
    pub fn map_peer(
        &self,
        peer_certs: Option<&[CertificateDer<'_>]>,
    ) -> Result<Option<String>, TlsError> {
        match peer_certs.and_then(|c| c.first()) {
            Some(cert) => self.map_certificate(cert).map(Some),
            None => Ok(None),
        }
    }

    fn rules_display(&self) -> String {
        let parts: Vec<String> = self.rules.iter().map(|r| r.to_string()).collect();
        parts.join(", ")
    }
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, TlsError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| TlsError::BadPeerCertificate(e.to_string()))
}

/// The subject DN exactly as Java's `X500Principal.getName()` prints it.
pub fn subject_distinguished_name(cert_der: &[u8]) -> Result<String, TlsError> {
    let cert = parse_cert(cert_der)?;
    rfc2253_name(cert.subject())
}

/// The first URI subjectAltName of the certificate, if any.
pub fn first_uri_san(cert_der: &[u8]) -> Result<Option<String>, TlsError> {
    let cert = parse_cert(cert_der)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::BadPeerCertificate(e.to_string()))?;
    Ok(san.and_then(|ext| {
        ext.value.general_names.iter().find_map(|n| match n {
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
    }))
}

/// RFC 2253 rendering with Java's choices: reverse ASN.1 order, `,` between
/// RDNs, `+` inside multi-valued RDNs, only the RFC 2253 keywords.
fn rfc2253_name(name: &X509Name<'_>) -> Result<String, TlsError> {
    let mut rdns = Vec::new();
    for rdn in name.iter_rdn() {
        let mut avas = Vec::new();
        for ava in rdn.iter() {
            avas.push(format_ava(
                &ava.attr_type().to_id_string(),
                ava.attr_value(),
            )?);
        }
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

/// Keywords Java emits in RFC 2253 mode; anything else is printed as an OID.
fn rfc2253_keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn format_ava(oid: &str, value: &Any<'_>) -> Result<String, TlsError> {
    let text = match rfc2253_keyword(oid) {
        Some(kw) => decode_directory_string(value).map(|s| (kw, s)),
        None => None,
    };
    match text {
        Some((kw, s)) => Ok(format!("{kw}={}", escape_rfc2253(&s))),
        // Java prints non-keyword attributes and non-string values as `#` + hex DER.
        None => {
            let der = value
                .to_der_vec()
                .map_err(|e| TlsError::BadPeerCertificate(e.to_string()))?;
            let keyword = rfc2253_keyword(oid).unwrap_or(oid);
            Ok(format!("{keyword}=#{}", hex(&der)))
        }
    }
}

/// Decodes the string types Java treats as strings in RFC 2253 output.
fn decode_directory_string(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::GeneralString => {
            std::str::from_utf8(data).ok().map(str::to_string)
        }
        // T61/Teletex: Java decodes it as ISO-8859-1.
        Tag::T61String => Some(data.iter().map(|b| char::from(*b)).collect()),
        Tag::BmpString => decode_bmp(data),
        _ => None,
    }
}

fn decode_bmp(data: &[u8]) -> Option<String> {
    let chunks = data.chunks_exact(2);
    if !chunks.remainder().is_empty() {
        return None;
    }
    let units: Vec<u16> = chunks.map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    String::from_utf16(&units).ok()
}

/// Java's `AVA.toRFC2253String` escaping: special chars get a backslash,
/// NUL becomes `\00`, leading/trailing spaces (and CR) are escaped.
fn escape_rfc2253(value: &str) -> String {
    const ESCAPEES: &str = ",=+<>#;\"\\";
    let mut chars: Vec<String> = Vec::with_capacity(value.len());
    for c in value.chars() {
        chars.push(match c {
            '\0' => "\\00".to_string(),
            c if ESCAPEES.contains(c) => format!("\\{c}"),
            c => c.to_string(),
        });
    }
    let is_ws = |s: &String| s == " " || s == "\r";
    let lead = chars.iter().take_while(|s| is_ws(s)).count();
    let trail = chars.iter().rev().take_while(|s| is_ws(s)).count();
    let n = chars.len();
    chars
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i < lead || i >= n - trail {
                format!("\\{s}")
            } else {
                s.clone()
            }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapper(rules: &[&str]) -> PrincipalMapper {
        let rules: Vec<String> = rules.iter().map(|s| s.to_string()).collect();
        PrincipalMapper::new(&rules, PrincipalSource::Subject).expect("valid rules")
    }

    const KAFKA_DOC_RULES: &str = "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\
        RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\
        RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT";

    #[test]
    fn kafka_docs_examples() {
        let rules = parse_rules_string(KAFKA_DOC_RULES).unwrap();
        assert_eq!(rules.len(), 4);
        let m = PrincipalMapper::new(&rules, PrincipalSource::Subject).unwrap();
        let name = "CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown";
        assert_eq!(m.map_name(name).unwrap(), "serviceuser");
        let name = "CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown";
        assert_eq!(m.map_name(name).unwrap(), "adminuser@admin");
        // Third rule: a CN anywhere in the string, lower-cased.
        assert_eq!(m.map_name("CN=kafka-server1, OU=KAFKA").unwrap(), "kafka");
        assert_eq!(
            m.map_name("OU=x, cn=Kafka.Server1").unwrap(),
            "kafka.server1"
        );
        // Nothing matches the RULEs: DEFAULT passes the DN through.
        assert_eq!(m.map_name("OU=KAFKA,O=Acme").unwrap(), "OU=KAFKA,O=Acme");
    }

    #[test]
    fn upper_case_flag() {
        let m = mapper(&["RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/U"]);
        let name = "CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown";
        assert_eq!(m.map_name(name).unwrap(), "ADMINUSER@ADMIN");
    }

    /// Kafka's `SslPrincipalMapperTest.testSslPrincipalMapper`.
    #[test]
    fn kafka_unit_test_vectors() {
        let rules = [
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L",
            "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U",
            "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U",
            "DEFAULT",
        ];
        let m = mapper(&[&rules.join(", ")]);
        assert_eq!(
            m.map_name("CN=Duke,OU=ServiceUsers,O=Org,C=US").unwrap(),
            "duke"
        );
        assert_eq!(
            m.map_name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US")
                .unwrap(),
            "duke@sme"
        );
        assert_eq!(
            m.map_name("cn=duke,ou=sme,dc=mycp,dc=com").unwrap(),
            "DUKE@SME"
        );
        assert_eq!(
            m.map_name("cN=duke,OU=JavaSoft,O=Sun Microsystems")
                .unwrap(),
            "DUKE"
        );
        assert_eq!(
            m.map_name("OU=JavaSoft,O=Sun Microsystems,C=US").unwrap(),
            "OU=JavaSoft,O=Sun Microsystems,C=US"
        );
    }

    /// Kafka's `testCommaWithWhitespace`: escaped commas inside the CN.
    #[test]
    fn escaped_comma_in_cn() {
        let m = mapper(&[r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT"]);
        assert_eq!(
            m.map_name(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz")
                .unwrap(),
            r"Tkac\, Adam"
        );
        let m = mapper(&[r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/L,DEFAULT"]);
        assert_eq!(
            m.map_name(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz")
                .unwrap(),
            r"tkac\, adam"
        );
    }

    #[test]
    fn no_rule_matches_is_an_error() {
        let m = mapper(&["RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/"]);
        let err = m.map_name("CN=bob,OU=Other").unwrap_err();
        assert!(matches!(err, TlsError::NoMatchingRule { .. }), "{err}");
        assert!(err.to_string().contains("CN=bob,OU=Other"), "{err}");
    }

    #[test]
    fn default_passthrough_and_empty_list() {
        assert_eq!(
            mapper(&["DEFAULT"]).map_name("CN=a,O=b").unwrap(),
            "CN=a,O=b"
        );
        assert_eq!(mapper(&[]).map_name("CN=a").unwrap(), "CN=a");
    }

    #[test]
    fn rule_must_match_whole_name() {
        // `alice` matches a substring only; Kafka uses Matcher.matches().
        let m = mapper(&["RULE:alice/x/", "DEFAULT"]);
        assert_eq!(m.map_name("CN=alice").unwrap(), "CN=alice");
        assert_eq!(m.map_name("alice").unwrap(), "x");
    }

    #[test]
    fn java_replace_all_semantics() {
        // Java: "abc".replaceAll(".*", "X") == "XX" (empty match at the end).
        let m = mapper(&["RULE:.*/X/"]);
        assert_eq!(m.map_name("abc").unwrap(), "XX");
        // $n beyond the group count is literal (Kafka escapes it).
        let m = mapper(&["RULE:^CN=(.*)$/$1-$2/"]);
        assert_eq!(m.map_name("CN=bob").unwrap(), "bob-$2");
        // $12 with one group is $1 followed by a literal 2.
        let m = mapper(&["RULE:^CN=(.*)$/$12/"]);
        assert_eq!(m.map_name("CN=bob").unwrap(), "bob2");
        // Named groups and escaped `/` in pattern and replacement.
        let m = mapper(&[r"RULE:^spiffe:\/\/portcullis\/user\/(?P<u>.*)$/${u}\/x/"]);
        assert_eq!(m.map_name("spiffe://portcullis/user/al").unwrap(), "al/x");
    }

    #[test]
    fn valid_rules_from_kafka_tests() {
        for rule in [
            "DEFAULT",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
            "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
            "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
            "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
            "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
        ] {
            parse_rules_string(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
        }
    }

    #[test]
    fn invalid_rules_from_kafka_tests() {
        for rule in [
            "default",
            "DEFAUL",
            "DEFAULT/L",
            "DEFAULT/U",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
            "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
            // Not Kafka's, but must be clear config errors too:
            "RULE:^CN=(.*$/$1/",
            "RULE:^CN=(.*)$/$/",
            "RULE:^CN=.*$/$1/",
            "RULE:^CN=(.*)$/${nope}/",
        ] {
            let err = parse_rules_string(rule).expect_err(rule);
            assert!(
                matches!(err, TlsError::BadMappingRule { .. }),
                "{rule}: {err}"
            );
            let list = vec![rule.to_string()];
            assert!(PrincipalMapper::new(&list, PrincipalSource::Subject).is_err());
        }
    }

    #[test]
    fn rules_splitting_like_kafka() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("DEFAULT", &["DEFAULT"]),
            ("RULE://", &["RULE://"]),
            ("RULE:/.*/", &["RULE:/.*/"]),
            ("RULE:/.*/L", &["RULE:/.*/L"]),
            ("RULE://,DEFAULT", &["RULE://", "DEFAULT"]),
            ("  RULE:// ,  DEFAULT  ", &["RULE://", "DEFAULT"]),
            ("  RULE:// ,  RULE:/.*/  ", &["RULE://", "RULE:/.*/"]),
            (
                "  RULE:// ,  RULE:/.*/L , RULE:/.*/U ",
                &["RULE://", "RULE:/.*/L", "RULE:/.*/U"],
            ),
            (
                "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
                &["RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L", "DEFAULT"],
            ),
        ];
        for (input, want) in cases {
            let got = parse_rules_string(input).unwrap();
            assert_eq!(&got, want, "input {input:?}");
        }
    }

    #[test]
    fn yaml_list_of_rules() {
        let yaml = r#"
- 'RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/'
- 'RULE:^CN=([^,]+).*$/$1/L'
- DEFAULT
"#;
        let rules: Vec<String> = serde_yaml_ng::from_str(yaml).unwrap();
        let m = PrincipalMapper::new(&rules, PrincipalSource::Subject).unwrap();
        assert_eq!(m.map_name("CN=svc,OU=ServiceUsers").unwrap(), "svc");
        assert_eq!(m.map_name("CN=Bob,OU=x").unwrap(), "bob");
    }

    #[test]
    fn rfc2253_escaping() {
        assert_eq!(escape_rfc2253("Tkac, Adam"), r"Tkac\, Adam");
        assert_eq!(escape_rfc2253(" a=b+c "), r"\ a\=b\+c\ ");
        assert_eq!(escape_rfc2253("#x;<>\"\\"), r##"\#x\;\<\>\"\\"##);
        assert_eq!(escape_rfc2253("a\0b"), r"a\00b");
        assert_eq!(escape_rfc2253("José_x@y"), "José_x@y");
        assert_eq!(escape_rfc2253(""), "");
    }

    fn cert_with_dn(dn: rcgen::DistinguishedName, sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn dn_is_formatted_like_java() {
        use rcgen::{DistinguishedName, DnType};
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::OrganizationName, "Acme, Inc.");
        dn.push(DnType::OrganizationalUnitName, "eng");
        dn.push(DnType::CommonName, "alice");
        // emailAddress is not an RFC 2253 keyword: Java prints OID=#hex(DER).
        dn.push(
            DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            rcgen::DnValue::Ia5String("a@b".try_into().unwrap()),
        );
        let der = cert_with_dn(dn, vec![]);
        assert_eq!(
            subject_distinguished_name(&der).unwrap(),
            r"1.2.840.113549.1.9.1=#1603614062,CN=alice,OU=eng,O=Acme\, Inc.,C=US"
        );
        assert_eq!(first_uri_san(&der).unwrap(), None);
    }

    #[test]
    fn map_certificate_subject_and_san_uri() {
        use rcgen::{DistinguishedName, DnType, SanType};
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Acme");
        dn.push(DnType::CommonName, "alice");
        let uri = "spiffe://portcullis/user/alice";
        let sans = vec![
            SanType::DnsName("alice.example".try_into().unwrap()),
            SanType::URI(uri.try_into().unwrap()),
        ];
        let der = cert_with_dn(dn, sans);

        let by_cn = mapper(&["RULE:^CN=([^,]*)(,.*)?$/$1/"]);
        assert_eq!(by_cn.map_certificate(&der).unwrap(), "alice");

        let rules = vec![r"RULE:^spiffe:\/\/portcullis\/user\/(.*)$/$1/".to_string()];
        let by_uri = PrincipalMapper::new(&rules, PrincipalSource::SanUri).unwrap();
        assert_eq!(by_uri.map_certificate(&der).unwrap(), "alice");

        let default_uri = PrincipalMapper::new(&[], PrincipalSource::SanUri).unwrap();
        assert_eq!(default_uri.map_certificate(&der).unwrap(), uri);
    }

    #[test]
    fn san_uri_missing_and_garbage_input() {
        let der = cert_with_dn(rcgen::DistinguishedName::new(), vec![]);
        let m = PrincipalMapper::new(&[], PrincipalSource::SanUri).unwrap();
        assert!(matches!(m.map_certificate(&der), Err(TlsError::NoSanUri)));
        assert!(matches!(
            m.map_certificate(b"not a certificate"),
            Err(TlsError::BadPeerCertificate(_))
        ));
        assert_eq!(m.map_peer(None).unwrap(), None);
    }

    #[test]
    fn source_deserializes_lowercase() {
        let s: PrincipalSource = serde_yaml_ng::from_str("san_uri").unwrap();
        assert_eq!(s, PrincipalSource::SanUri);
        let s: PrincipalSource = serde_yaml_ng::from_str("subject").unwrap();
        assert_eq!(s, PrincipalSource::Subject);
        assert!(serde_yaml_ng::from_str::<PrincipalSource>("dn").is_err());
    }
}
