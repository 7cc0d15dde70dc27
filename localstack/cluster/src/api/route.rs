//! Which API path a request addresses: discovery documents, or a resource type with its
//! namespace, name and subresource.

use crate::error::{ApiError, ApiResult};
use crate::resources::{self, ResourceType};

/// The object a request addresses, parsed from the path.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) rt: &'static ResourceType,
    pub(super) namespace: String,
    pub(super) name: Option<String>,
    pub(super) subresource: Option<String>,
}

pub(super) enum Route {
    CoreVersions,
    Groups,
    Group(String),
    ResourceList(String, String),
    Resource(Target),
}

pub(super) fn parse_route(path: &str) -> ApiResult<Route> {
    let not_found = || ApiError::not_found_path(path);
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::Groups),
        ["apis", g] => {
            return if resources::groups().contains(g) {
                Ok(Route::Group((*g).to_string()))
            } else {
                Err(not_found())
            };
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found()),
    };
    if rest.is_empty() {
        return Ok(Route::ResourceList(group.to_string(), version.to_string()));
    }
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !matches!(*plural, "status" | "finalize") || !tail.is_empty() =>
        {
            (ns.to_string(), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (String::new(), other.to_vec()),
    };
    let rt = resources::find(group, version, rest[0]).ok_or_else(not_found)?;
    if !namespace.is_empty() && !rt.namespaced {
        return Err(not_found());
    }
    let name = rest.get(1).map(|s| s.to_string());
    let subresource = rest.get(2).map(|s| s.to_string());
    if rest.len() > 3
        || subresource
            .as_deref()
            .is_some_and(|s| !rt.subresources.contains(&s))
    {
        return Err(not_found());
    }
    Ok(Route::Resource(Target {
        rt,
        namespace,
        name,
        subresource,
    }))
}
