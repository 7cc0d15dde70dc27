//! Lists: selectors, paging and continue tokens.

use serde_json::{Value, json};

use super::{ListOptions, Registry};
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::resources::ResourceType;

impl Registry {
    /// A `<Kind>List` page. Continue tokens carry the last key; pages read the current state
    /// rather than a snapshot at the first page's revision (a documented simplification).
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<Value> {
        let ns = if rt.namespaced { ns } else { None };
        let (items, revision) = self.store.list(rt.key(), ns);
        let after = match &opts.continue_token {
            Some(t) => Some(decode_continue(t)?),
            None => None,
        };
        let mut matching = items.into_iter().filter(|o| {
            opts.label_selector
                .as_ref()
                .is_none_or(|s| s.matches_object(o))
                && opts.field_selector.as_ref().is_none_or(|s| s.matches(o))
                && after.as_ref().is_none_or(|(ans, aname)| {
                    (meta::namespace(o), meta::name(o)) > (ans.as_str(), aname.as_str())
                })
        });
        let mut page: Vec<Value> = Vec::new();
        let mut more = false;
        for item in matching.by_ref() {
            if opts.limit.is_some_and(|l| l > 0 && page.len() >= l) {
                more = true;
                break;
            }
            page.push(item);
        }
        let remaining = if more { 1 + matching.count() } else { 0 };
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if more && let Some(last) = page.last() {
            metadata["continue"] = json!(encode_continue(
                revision,
                meta::namespace(last),
                meta::name(last)
            ));
            metadata["remainingItemCount"] = json!(remaining);
        }
        Ok(json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": metadata,
            "items": page,
        }))
    }
}

fn encode_continue(revision: u64, ns: &str, name: &str) -> String {
    use base64::Engine;
    let raw = json!({"rv": revision, "ns": ns, "name": name}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(String, String)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let ns = v.get("ns").and_then(Value::as_str).ok_or_else(bad)?;
    let name = v.get("name").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}
