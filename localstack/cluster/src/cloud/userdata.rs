//! What nodeadm reads from an instance's user data: the `NodeConfig` of a MIME multi-part
//! document (or the whole user data when it is not one), decoded as nodeadm decodes it
//! (awslabs/amazon-eks-ami `nodeadm/internal/configprovider/userdata.go`, `mime.go`,
//! `encoding.go`; the type is `nodeadm/api/v1alpha1/nodeconfig_types.go`, the merge
//! `nodeadm/internal/api/merge.go`, the checks `nodeadm/internal/api/validation.go`).
//!
//! Parsed by hand: no maintained MIME crate is in the workspace, and nodeadm needs little of MIME
//! (Go's `net/mail` headers, `mime.ParseMediaType`, `mime/multipart` parts).

use std::io::Read;

use base64::Engine;
use serde_yaml::Value;

/// `nodeadm/api/core.go`: the API group, also the media type's subtype.
const GROUP: &str = "node.eks.aws";
const KIND: &str = "NodeConfig";
const MEDIA_TYPE: &str = "application/node.eks.aws";

/// The fields of a NodeConfig the simulator acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeConfig {
    pub cluster: ClusterDetails,
    /// `spec.kubelet.flags`, appended across parts (merge.go mergeKubeletFlags).
    pub kubelet_flags: Vec<String>,
}

/// `spec.cluster` (ClusterDetails).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterDetails {
    pub name: String,
    pub api_server_endpoint: String,
    /// Decoded: the field is a Go `[]byte`, which YAML/JSON carries base64-encoded.
    pub certificate_authority: Vec<u8>,
    pub cidr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    #[error("the user data is empty")]
    Empty,
    #[error("the user data is gzip that does not decompress: {0}")]
    Gzip(String),
    #[error("could not find NodeConfig within UserData")]
    NoNodeConfig,
    #[error("a MIME part is malformed: {0}")]
    Mime(String),
    #[error("failed to decode node config: {0}")]
    Decode(String),
    /// validation.go ValidateNodeConfig, word for word.
    #[error("{0}")]
    Invalid(&'static str),
}

/// The merged, validated NodeConfig of raw user data (what IMDS serves at `/latest/user-data`).
pub fn node_config(user_data: &[u8]) -> Result<NodeConfig, UserDataError> {
    if user_data.is_empty() {
        return Err(UserDataError::Empty);
    }
    let data = decompress_if_gzip(decode_if_base64(user_data))?;
    // ParseMaybeMultipart: not a multi-part MIME document → the whole user data is the config.
    let config = match multipart_body(&data) {
        Some((boundary, body)) => {
            let mut configs = Vec::new();
            for part in parts(body, &boundary)? {
                let (headers, content) = split_headers(part);
                let Some(content_type) = header(&headers, "content-type") else {
                    continue;
                };
                if media_type(content_type).0 != MEDIA_TYPE {
                    continue;
                }
                let content = decompress_if_gzip(decode_if_base64(content))?;
                configs.push(decode(&content)?);
            }
            merge(configs)?
        }
        None => decode(&data)?,
    };
    validate(&config)?;
    Ok(config)
}

/// encoding.go decodeIfBase64: Go's StdEncoding, which skips `\r` and `\n`; anything else
/// that is not base64 leaves the data as it is.
fn decode_if_base64(data: &[u8]) -> Vec<u8> {
    let compact: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .unwrap_or_else(|_| data.to_vec())
}

/// encoding.go decompressIfGZIP: by the magic number 0x1f8b.
fn decompress_if_gzip(data: Vec<u8>) -> Result<Vec<u8>, UserDataError> {
    if !data.starts_with(&[0x1f, 0x8b]) {
        return Ok(data);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| UserDataError::Gzip(e.to_string()))?;
    Ok(out)
}

/// The header block and the rest (`net/mail` ReadMessage, `textproto` headers; a blank line
/// ends the headers, a line starting with a space or tab continues the previous one).
fn split_headers(data: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut rest = data;
    loop {
        let (line, next) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = next;
        if line.is_empty() {
            return (headers, rest);
        }
        let text = String::from_utf8_lossy(line);
        if text.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(text.trim());
            }
        } else if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        } else {
            // Not a header: not a MIME message at all.
            return (Vec::new(), data);
        }
        if rest.is_empty() {
            return (headers, rest);
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `mime.ParseMediaType`: the lower-cased media type and its parameters (quoted or not).
fn media_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = value.split(';');
    let media = pieces
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let params = pieces
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (k.trim().to_ascii_lowercase(), v.to_string())
        })
        .collect();
    (media, params)
}

/// mime.go getMultipartReader: the boundary and body when the data is a `multipart/*` message.
fn multipart_body(data: &[u8]) -> Option<(String, &[u8])> {
    let (headers, body) = split_headers(data);
    let (media, params) = media_type(header(&headers, "content-type")?);
    if !media.starts_with("multipart/") {
        return None;
    }
    let boundary = params.into_iter().find(|(k, _)| k == "boundary")?.1;
    Some((boundary, body))
}

/// `mime/multipart` Reader: the parts between `--boundary` lines, up to `--boundary--`; the
/// line break before a delimiter belongs to the delimiter.
fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>, UserDataError> {
    let delimiter = format!("--{boundary}");
    let mut lines: Vec<(usize, &[u8])> = Vec::new();
    let mut start = 0;
    for (i, b) in body.iter().enumerate() {
        if *b == b'\n' {
            lines.push((start, &body[start..i]));
            start = i + 1;
        }
    }
    if start < body.len() {
        lines.push((start, &body[start..]));
    }
    let is = |line: &[u8], what: &str| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let trimmed = line
            .iter()
            .rposition(|b| *b != b' ' && *b != b'\t')
            .map_or(&line[..0], |end| &line[..=end]);
        trimmed == what.as_bytes()
    };
    let closing = format!("{delimiter}--");
    let mut parts = Vec::new();
    let mut open: Option<usize> = None;
    for (offset, line) in lines {
        let (next, last) = (is(line, &delimiter), is(line, &closing));
        if !(next || last) {
            continue;
        }
        if let Some(begin) = open {
            // The part ends before the line break that precedes the delimiter.
            let mut end = offset;
            if end > begin && body[end - 1] == b'\n' {
                end -= 1;
                if end > begin && body[end - 1] == b'\r' {
                    end -= 1;
                }
            }
            parts.push(&body[begin..end]);
        }
        if last {
            return Ok(parts);
        }
        open = Some(offset + line.len() + 1);
    }
    if open.is_none() {
        return Err(UserDataError::Mime(format!(
            "no part delimited by {delimiter:?}"
        )));
    }
    // multipart.Reader: EOF before the closing delimiter is an error.
    Err(UserDataError::Mime(format!(
        "the document ends without the closing delimiter {closing:?}"
    )))
}

/// bridge/decode.go DecodeNodeConfig: JSON or YAML of kind NodeConfig in group node.eks.aws.
fn decode(data: &[u8]) -> Result<NodeConfig, UserDataError> {
    let text = String::from_utf8_lossy(data);
    let doc: Value =
        serde_yaml::from_str(&text).map_err(|e| UserDataError::Decode(e.to_string()))?;
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != KIND {
        return Err(UserDataError::Decode(format!(
            "failed to decode {kind:?} (wrong Kind)"
        )));
    }
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    if group != GROUP {
        return Err(UserDataError::Decode(format!(
            "failed to decode {kind:?}, unexpected group: {group}"
        )));
    }
    let spec = doc.get("spec");
    let cluster = spec.and_then(|s| s.get("cluster"));
    let text_of = |field: &str| -> Result<String, UserDataError> {
        match cluster.and_then(|c| c.get(field)) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(UserDataError::Decode(format!(
                "spec.cluster.{field}: expected a string, got {other:?}"
            ))),
        }
    };
    let ca = text_of("certificateAuthority")?;
    let certificate_authority = if ca.is_empty() {
        Vec::new()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(ca.trim())
            .map_err(|e| {
                UserDataError::Decode(format!(
                    "spec.cluster.certificateAuthority is not base64: {e}"
                ))
            })?
    };
    let kubelet_flags = spec
        .and_then(|s| s.get("kubelet"))
        .and_then(|k| k.get("flags"))
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    Ok(NodeConfig {
        cluster: ClusterDetails {
            name: text_of("name")?,
            api_server_endpoint: text_of("apiServerEndpoint")?,
            certificate_authority,
            cidr: text_of("cidr")?,
        },
        kubelet_flags,
    })
}

/// merge.go MergeNodeConfigs: later parts override the fields they set; kubelet flags append.
fn merge(configs: Vec<NodeConfig>) -> Result<NodeConfig, UserDataError> {
    let mut configs = configs.into_iter();
    let mut merged = configs.next().ok_or(UserDataError::NoNodeConfig)?;
    for next in configs {
        let (dst, src) = (&mut merged.cluster, next.cluster);
        if !src.name.is_empty() {
            dst.name = src.name;
        }
        if !src.api_server_endpoint.is_empty() {
            dst.api_server_endpoint = src.api_server_endpoint;
        }
        if !src.certificate_authority.is_empty() {
            dst.certificate_authority = src.certificate_authority;
        }
        if !src.cidr.is_empty() {
            dst.cidr = src.cidr;
        }
        merged.kubelet_flags.extend(next.kubelet_flags);
    }
    Ok(merged)
}

/// validation.go ValidateNodeConfig (nodeadm refuses to configure the node without these).
fn validate(config: &NodeConfig) -> Result<(), UserDataError> {
    let cluster = &config.cluster;
    if cluster.name.is_empty() {
        return Err(UserDataError::Invalid(
            "Name is missing in cluster configuration",
        ));
    }
    if cluster.api_server_endpoint.is_empty() {
        return Err(UserDataError::Invalid(
            "Apiserver endpoint is missing in cluster configuration",
        ));
    }
    if cluster.certificate_authority.is_empty() {
        return Err(UserDataError::Invalid(
            "Certificate authority is missing in cluster configuration",
        ));
    }
    if cluster.cidr.is_empty() {
        return Err(UserDataError::Invalid(
            "CIDR is missing in cluster configuration",
        ));
    }
    Ok(())
}

/// The labels of `--node-labels` flags (`key=value,...`; a later flag adds to earlier ones).
pub fn node_labels(flags: &[String]) -> Vec<(String, String)> {
    flags
        .iter()
        .filter_map(|f| f.strip_prefix("--node-labels="))
        .flat_map(|list| list.split(','))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=";

    fn part(body: &str) -> String {
        format!("Content-Type: application/node.eks.aws\n\n{body}\n")
    }

    fn config(name: &str) -> String {
        format!(
            "---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: {name}\n    apiServerEndpoint: https://example.com\n    certificateAuthority: {CA}\n    cidr: 10.100.0.0/16\n"
        )
    }

    fn document(parts: &[String]) -> String {
        let mut doc = String::from(
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\n\n",
        );
        for p in parts {
            doc.push_str("--BOUNDARY\n");
            doc.push_str(p);
        }
        doc.push_str("--BOUNDARY--\n");
        doc
    }

    #[test]
    fn a_multipart_document_yields_its_node_config_parts_merged_in_order() {
        let flags = "---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: second\n  kubelet:\n    flags:\n      - --node-labels=a=b,c=d\n";
        let doc = document(&[
            "Content-Type: text/x-shellscript; charset=\"us-ascii\"\n\n#!/bin/bash\necho hi\n"
                .to_string(),
            part(&config("first")),
            part(flags),
        ]);
        let parsed = node_config(doc.as_bytes()).unwrap();
        assert_eq!(parsed.cluster.name, "second");
        assert_eq!(parsed.cluster.api_server_endpoint, "https://example.com");
        assert_eq!(parsed.cluster.cidr, "10.100.0.0/16");
        assert_eq!(
            node_labels(&parsed.kubelet_flags),
            [("a".into(), "b".into()), ("c".into(), "d".into())]
        );
    }

    #[test]
    fn crlf_base64_and_gzip_are_decoded_as_nodeadm_does() {
        let doc = document(&[part(&config("crlf"))]).replace('\n', "\r\n");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, doc.as_bytes()).unwrap();
        let zipped = gz.finish().unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(zipped);
        assert_eq!(
            node_config(encoded.as_bytes()).unwrap().cluster.name,
            "crlf"
        );
    }

    #[test]
    fn user_data_that_is_not_multipart_is_one_node_config() {
        assert_eq!(
            node_config(config("plain").as_bytes())
                .unwrap()
                .cluster
                .name,
            "plain"
        );
    }

    #[test]
    fn what_nodeadm_refuses_is_refused_with_its_words() {
        let shell = document(&["Content-Type: text/x-shellscript\n\n#!/bin/bash\n".into()]);
        assert_eq!(
            node_config(shell.as_bytes()),
            Err(UserDataError::NoNodeConfig)
        );
        let no_cidr = config("x").replace("    cidr: 10.100.0.0/16\n", "");
        assert_eq!(
            node_config(document(&[part(&no_cidr)]).as_bytes()),
            Err(UserDataError::Invalid(
                "CIDR is missing in cluster configuration"
            ))
        );
        let wrong_kind = config("x").replace("kind: NodeConfig", "kind: Other");
        assert!(matches!(
            node_config(document(&[part(&wrong_kind)]).as_bytes()),
            Err(UserDataError::Decode(_))
        ));
        let unclosed = document(&[part(&config("x"))]).replace("--BOUNDARY--\n", "");
        assert!(matches!(
            node_config(unclosed.as_bytes()),
            Err(UserDataError::Mime(_))
        ));
    }
}
