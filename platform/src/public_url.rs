//! The site's public base URL (`scheme://host[:port]`): where developers open the site and every
//! endpoint it shows. The Ingresses for the public host take the host part; the site gets the
//! whole URL. Only a URL that passed [`PublicUrl::parse`] exists, so nothing rendered into a
//! manifest comes from unchecked text.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The field the errors name; the provisioner's flag is `--public-url`.
const FIELD: &str = "public_url";

const SCHEME_RULE: &str = "must start with http:// or https://";
const USERINFO_RULE: &str = "must not contain a user name or password (user@host)";
const PATH_RULE: &str = "must be only scheme://host[:port], with no path (a single trailing '/' is accepted), query or fragment";
const HOST_RULE: &str = "the host must be a DNS name (RFC 1123: labels of lowercase letters, digits and '-', \
     each 1 to 63 characters, starting and ending with a letter or digit, at most 253 characters in all)";
const IP_RULE: &str = "the host must be a DNS name, not an IP address: Kubernetes refuses an IP as an Ingress \
     host (use a name that resolves to it)";
const PORT_RULE: &str = "the port must be a number from 1 to 65535";

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// A checked public base URL, kept in canonical form: lowercase scheme and host, the port only
/// when given, no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    scheme: Scheme,
    host: String,
    port: Option<u16>,
}

impl PublicUrl {
    /// Checks `text` against the rules above; the error names the field and the rule broken.
    pub fn parse(text: &str) -> Result<Self> {
        let refuse = |rule: &'static str| Error::Value {
            field: FIELD,
            value: text.to_owned(),
            rule,
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| refuse(SCHEME_RULE))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(refuse(SCHEME_RULE)),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('@') {
            return Err(refuse(USERINFO_RULE));
        }
        if authority.starts_with('[') {
            return Err(refuse(IP_RULE));
        }
        if authority.contains(['/', '?', '#']) {
            return Err(refuse(PATH_RULE));
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => {
                let valid = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| valid && *p > 0)
                    .ok_or_else(|| refuse(PORT_RULE))?;
                (host, Some(port))
            }
            None => (authority, None),
        };
        let host = host.to_ascii_lowercase();
        if host.parse::<Ipv4Addr>().is_ok() {
            return Err(refuse(IP_RULE));
        }
        if !is_dns_name(&host) {
            return Err(refuse(HOST_RULE));
        }
        Ok(Self { scheme, host, port })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host alone: the Ingresses' `host`.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host[:port]`: the Host header a browser sends for this URL.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())
    }
}

impl FromStr for PublicUrl {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

/// An RFC 1123 subdomain, as Kubernetes checks an Ingress host (lowercase already).
fn is_dns_name(host: &str) -> bool {
    let label = |l: &str| {
        let bytes = l.as_bytes();
        (1..=63).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-')
    };
    (1..=253).contains(&host.len()) && host.split('.').all(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> &'static str {
        match PublicUrl::parse(text) {
            Err(Error::Value { field, rule, .. }) => {
                assert_eq!(field, "public_url");
                rule
            }
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn urls_parse_into_canonical_form() {
        for (text, canonical, host, authority) in [
            (
                "http://kdeploy.localhost:8080",
                "http://kdeploy.localhost:8080",
                "kdeploy.localhost",
                "kdeploy.localhost:8080",
            ),
            (
                "http://kdeploy.localhost:8080/",
                "http://kdeploy.localhost:8080",
                "kdeploy.localhost",
                "kdeploy.localhost:8080",
            ),
            (
                "HTTPS://KDeploy-NLB-1.elb.amazonaws.com",
                "https://kdeploy-nlb-1.elb.amazonaws.com",
                "kdeploy-nlb-1.elb.amazonaws.com",
                "kdeploy-nlb-1.elb.amazonaws.com",
            ),
            (
                "http://localhost/",
                "http://localhost",
                "localhost",
                "localhost",
            ),
        ] {
            let url = PublicUrl::parse(text).unwrap();
            assert_eq!(url.to_string(), canonical);
            assert_eq!(url.host(), host);
            assert_eq!(url.authority(), authority);
            assert_eq!(text.parse::<PublicUrl>().unwrap(), url);
        }
        assert_eq!(
            PublicUrl::parse("https://a.b:443").unwrap().scheme(),
            Scheme::Https
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_rule_it_breaks() {
        assert_eq!(rule("kdeploy.localhost:8080"), SCHEME_RULE);
        assert_eq!(rule("ftp://kdeploy.localhost"), SCHEME_RULE);
        assert_eq!(rule("http://admin:pw@kdeploy.localhost"), USERINFO_RULE);
        assert_eq!(rule("http://kdeploy.localhost/site"), PATH_RULE);
        assert_eq!(rule("http://kdeploy.localhost//"), PATH_RULE);
        assert_eq!(rule("http://kdeploy.localhost/?a=1"), PATH_RULE);
        assert_eq!(rule("http://kdeploy.localhost#top"), PATH_RULE);
        assert_eq!(rule("http://kdeploy.localhost:0"), PORT_RULE);
        assert_eq!(rule("http://kdeploy.localhost:65536"), PORT_RULE);
        assert_eq!(rule("http://kdeploy.localhost:+80"), PORT_RULE);
        assert_eq!(rule("http://kdeploy.localhost:"), PORT_RULE);
        assert_eq!(rule("http://10.0.0.1:8080"), IP_RULE);
        assert_eq!(rule("http://[::1]:8080"), IP_RULE);
        assert_eq!(rule("http://"), HOST_RULE);
        assert_eq!(rule("http://-kdeploy.localhost"), HOST_RULE);
        assert_eq!(rule("http://kdeploy..localhost"), HOST_RULE);
        assert_eq!(rule("http://kdeploy_site.localhost"), HOST_RULE);
        assert_eq!(rule("http://x\"\n  evil: true"), PORT_RULE);
        assert_eq!(rule("http://x\"\n  evil"), HOST_RULE);
        assert_eq!(rule(&format!("http://{}.com", "a".repeat(64))), HOST_RULE);
        let err = PublicUrl::parse("http://a b").unwrap_err().to_string();
        assert!(
            err.starts_with("public_url = \"http://a b\": the host must be a DNS name"),
            "{err}"
        );
    }
}
