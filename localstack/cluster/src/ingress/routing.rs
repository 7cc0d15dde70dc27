//! How NGINX picks a `location` for a request and what URI it passes upstream, per the nginx
//! documentation (https://nginx.org/en/docs/http/ngx_http_core_module.html#location) and source
//! (`src/http/ngx_http_core_module.c` ngx_http_core_find_static_location / find_location,
//! `ngx_http_parse.c` ngx_http_parse_complex_uri, `ngx_http_proxy_module.c`
//! ngx_http_proxy_create_request, `ngx_http_rewrite_module.c`):
//! - the URI is matched after decoding `%XX`, resolving `.`/`..` and merging slashes;
//! - an exact location wins at once; a request equal to a proxied prefix location's name minus
//!   its trailing `/` is redirected (301) to the name with the slash (`auto_redirect`), before
//!   regex locations are tried; otherwise regex locations in order, first match wins, else the
//!   longest matching prefix.

use super::servers::{Location, Matcher, Server};

/// The outcome of location selection.
#[derive(Debug)]
pub enum Selected<'a> {
    Location(&'a Location),
    /// 301 to this path (the location's name, escaped).
    Redirect(String),
    NotFound,
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// ngx_http_parse_complex_uri with `merge_slashes on`: None where nginx answers 400.
pub fn normalize(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let value = hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?;
            decoded.push(value);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8_lossy(&decoded).into_owned();
    let mut segments: Vec<&str> = Vec::new();
    for segment in text.split('/').skip(1) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            s => segments.push(s),
        }
    }
    let trailing = text.ends_with('/') || text.ends_with("/.") || text.ends_with("/..");
    let mut out = format!("/{}", segments.join("/"));
    if trailing && out != "/" {
        out.push('/');
    }
    Some(out)
}

/// ngx_escape_uri(NGX_ESCAPE_URI): controls, space, `#`, `%`, `?` and bytes >= 0x7f.
pub fn escape(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    for b in uri.bytes() {
        if !(0x20..0x7f).contains(&b) || matches!(b, b' ' | b'#' | b'%' | b'?') {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Location selection for a normalized URI.
pub fn select<'a>(server: &'a Server, uri: &str) -> Selected<'a> {
    let locations = &server.locations;
    if let Some(exact) = locations
        .iter()
        .find(|l| matches!(&l.matcher, Matcher::Exact(n) if n == uri))
    {
        return Selected::Location(exact);
    }
    let names_uri = locations
        .iter()
        .any(|l| matches!(&l.matcher, Matcher::Prefix(n) if n == uri));
    if !names_uri {
        let with_slash = format!("{uri}/");
        // Every NIC location proxies, so every static one ending in `/` auto-redirects.
        if locations
            .iter()
            .any(|l| l.name() == Some(with_slash.as_str()))
        {
            return Selected::Redirect(escape(&with_slash));
        }
    }
    let prefix = locations
        .iter()
        .filter(|l| matches!(&l.matcher, Matcher::Prefix(n) if uri.starts_with(n.as_str())))
        .max_by_key(|l| l.name().map_or(0, str::len));
    if let Some(regex) = locations
        .iter()
        .find(|l| matches!(&l.matcher, Matcher::Regex(re) if re.is_match(uri)))
    {
        return Selected::Location(regex);
    }
    prefix.map_or(Selected::NotFound, Selected::Location)
}

/// `$1`..`$9` of a rewrite replacement (other variables are not modelled and stay literal).
fn expand(target: &str, caps: &regex_lite::Captures) -> String {
    let mut out = String::new();
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        let digit = chars.peek().and_then(|d| d.to_digit(10)).filter(|d| *d > 0);
        match (c, digit) {
            ('$', Some(n)) => {
                chars.next();
                if let Some(m) = caps.get(n as usize) {
                    out.push_str(m.as_str());
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The request line URI NGINX sends upstream for this location.
/// `uri` is the normalized path, `raw_path` and `query` the request's own.
pub fn upstream_uri(loc: &Location, uri: &str, raw_path: &str, query: Option<&str>) -> String {
    let with_args = |path: String, args: Option<&str>| match args {
        Some(a) if !a.is_empty() => format!("{path}?{a}"),
        _ => path,
    };
    if let Some((re, target)) = &loc.rewrite
        && let Some(caps) = re.captures(uri)
    {
        // `rewrite ... break`: the changed URI is passed; new arguments come before the old.
        let replaced = expand(target, &caps);
        return match replaced.split_once('?') {
            Some((path, new_args)) => {
                let args = match query {
                    Some(q) if !q.is_empty() => format!("{new_args}&{q}"),
                    _ => new_args.to_string(),
                };
                with_args(escape(path), Some(&args))
            }
            None => with_args(escape(&replaced), query),
        };
    }
    if let (Some(replacement), Some(name)) = (&loc.proxy_uri, loc.name()) {
        // proxy_pass with a URI: the part matching the location name is replaced.
        let rest = uri.get(name.len()..).unwrap_or("");
        return with_args(format!("{replacement}{}", escape(rest)), query);
    }
    with_args(raw_path.to_string(), query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::servers::Backend;
    use serde_json::Value;

    fn loc(matcher: Matcher, proxy_uri: Option<&str>) -> Location {
        Location {
            matcher,
            proxy_uri: proxy_uri.map(str::to_string),
            rewrite: None,
            backend: Backend {
                namespace: "ns".into(),
                service: "s".into(),
                port: Value::Null,
                upstream: "u".into(),
            },
        }
    }

    fn chosen(server: &Server, uri: &str) -> String {
        match select(server, uri) {
            Selected::Location(l) => match &l.matcher {
                Matcher::Prefix(n) => format!("prefix {n}"),
                Matcher::Exact(n) => format!("exact {n}"),
                Matcher::Regex(re) => format!("regex {}", re.as_str()),
            },
            Selected::Redirect(to) => format!("301 {to}"),
            Selected::NotFound => "404".into(),
        }
    }

    /// ngx_http_core_module.c: exact first; auto_redirect before regexes; regex in order before
    /// the longest prefix; nginx prefixes are plain string prefixes (`/api` matches `/apix`).
    #[test]
    fn location_selection_follows_ngx_http_core_find_location() {
        let server = Server {
            locations: vec![
                loc(Matcher::Prefix("/".into()), None),
                loc(Matcher::Prefix("/api".into()), None),
                loc(Matcher::Prefix("/alice/web/".into()), Some("/")),
                loc(Matcher::Exact("/api/exact".into()), None),
                loc(
                    Matcher::Regex(regex_lite::Regex::new("^/alice/w").unwrap()),
                    None,
                ),
            ],
        };
        assert_eq!(chosen(&server, "/api/exact"), "exact /api/exact");
        assert_eq!(chosen(&server, "/apix"), "prefix /api");
        assert_eq!(chosen(&server, "/alice/web"), "301 /alice/web/");
        assert_eq!(chosen(&server, "/alice/web/x"), "regex ^/alice/w");
        assert_eq!(chosen(&server, "/other"), "prefix /");
        let empty = Server::default();
        assert_eq!(chosen(&empty, "/"), "404");
    }

    /// ngx_http_parse_complex_uri: decoding, dot segments, merged slashes, 400 above the root.
    #[test]
    fn uris_are_normalized_like_ngx_http_parse_complex_uri() {
        assert_eq!(normalize("/a//b/./c/../d").as_deref(), Some("/a/b/d"));
        assert_eq!(normalize("/alice/web%2Fx").as_deref(), Some("/alice/web/x"));
        assert_eq!(normalize("/a/").as_deref(), Some("/a/"));
        assert_eq!(normalize("/../etc"), None);
        assert_eq!(normalize("/%zz"), None);
    }

    /// ngx_http_proxy_module.c: proxy_pass with a URI replaces the location's name.
    #[test]
    fn proxy_pass_with_a_uri_replaces_the_location_name() {
        let l = loc(Matcher::Prefix("/alice/web/".into()), Some("/"));
        assert_eq!(
            upstream_uri(&l, "/alice/web/a b", "/alice/web/a%20b", Some("q=1")),
            "/a%20b?q=1"
        );
        let plain = loc(Matcher::Prefix("/".into()), None);
        assert_eq!(upstream_uri(&plain, "/x/y", "/x//y", None), "/x//y");
        let mut rw = loc(
            Matcher::Regex(regex_lite::Regex::new("^/team/echo(/|$)(.*)").unwrap()),
            None,
        );
        rw.rewrite = Some((
            regex_lite::Regex::new("^/team/echo(/|$)(.*)").unwrap(),
            "/$2".into(),
        ));
        assert_eq!(
            upstream_uri(&rw, "/team/echo/hello", "/team/echo/hello", Some("a=1")),
            "/hello?a=1"
        );
    }
}
