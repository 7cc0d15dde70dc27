//! Kubernetes' dependent environment variables: `$(NAME)` in a container's env values, command
//! and args, ported from k8s.io/kubernetes `third_party/forked/golang/expansion/expand.go`
//! (https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/).
//!
//! `$(NAME)` becomes the value of a variable defined before it; an undefined reference stays
//! verbatim; `$$` is an escaped `$`; any other `$` is copied as is.

/// expand.go Expand with MappingFuncFor(`lookup`): an unknown name maps to `$(NAME)` itself.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(next) = after.chars().next() else {
            // A trailing `$` is not an operator (`cursor+1 < len(input)`): copied as is.
            out.push('$');
            rest = after;
            break;
        };
        match next {
            // Escaped operator.
            '$' => {
                out.push('$');
                rest = &after[1..];
            }
            '(' => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                // Incomplete reference: `$(` is copied and scanning goes on after it.
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            // Not an expression: the operator and the character after it, unchanged.
            other => {
                out.push('$');
                out.push(other);
                rest = &after[other.len_utf8()..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(name: &str) -> Option<String> {
        match name {
            "VAR_A" => Some("A".into()),
            "VAR_EMPTY" => Some(String::new()),
            "POD_IP" => Some("127.1.0.1".into()),
            _ => None,
        }
    }

    /// Cases from expand_test.go TestMapReference / TestMapping.
    #[test]
    fn expands_like_kubernetes_expand_go() {
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_A)___", "___A___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_EMPTY)", ""),
            ("$(POD_IP):8080", "127.1.0.1:8080"),
            // Undefined references stay verbatim.
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("foo$(VAR_DNE)bar", "foo$(VAR_DNE)bar"),
            // `$$` escapes.
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            // Incomplete and non-expressions.
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A", "$VAR_A"),
            ("${VAR_A}", "${VAR_A}"),
            ("$", "$"),
            ("foo$", "foo$"),
            ("$()", "$()"),
            ("$(VAR_A)$(", "A$("),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, env), want, "expanding {input:?}");
        }
    }
}
