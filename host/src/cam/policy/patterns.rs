//! Action and resource patterns of policy statements, and the glob they use.

// ---------------------------------------------------------------------------------------------
// Actions

#[derive(Debug, Clone)]
pub(super) enum ActionPattern {
    /// `*`: every action of every service.
    Any,
    /// `service:pattern`, both lowercased; the pattern may hold `*` wildcards.
    Service { service: String, action: String },
}

impl ActionPattern {
    pub(super) fn parse(raw: &str) -> Result<ActionPattern, String> {
        let text = raw.trim();
        if text == "*" {
            return Ok(ActionPattern::Any);
        }
        let (service, action) = split_action(text).ok_or_else(|| {
            format!("action \"{raw}\" must be \"*\" or [name/]service:ActionName")
        })?;
        let service_ok = !service.is_empty()
            && service
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let action_ok = !action.is_empty()
            && action
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'*');
        if !service_ok || !action_ok {
            return Err(format!(
                "action \"{raw}\" must be \"*\" or [name/]service:ActionName"
            ));
        }
        Ok(ActionPattern::Service {
            service: service.to_ascii_lowercase(),
            action: action.to_ascii_lowercase(),
        })
    }

    pub(super) fn matches(&self, requested: &str) -> bool {
        match self {
            ActionPattern::Any => true,
            ActionPattern::Service { service, action } => split_action(requested.trim())
                .is_some_and(|(s, a)| {
                    s.eq_ignore_ascii_case(service) && glob_match(action, a, true)
                }),
        }
    }
}

impl std::fmt::Display for ActionPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActionPattern::Any => f.write_str("*"),
            ActionPattern::Service { service, action } => write!(f, "{service}:{action}"),
        }
    }
}

/// Splits `[name/]service:action`; `None` for any other prefix (e.g. `permid/`, which names a
/// CAM feature set Keyward does not know) or a missing `:`.
pub(super) fn split_action(text: &str) -> Option<(&str, &str)> {
    let text = match text.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("name/") => &text[5..],
        _ => text,
    };
    if text.contains('/') {
        return None;
    }
    text.split_once(':')
}

// ---------------------------------------------------------------------------------------------
// Resources

/// Segment positions in `qcs:project:service:region:account:resource`.
const PROJECT: usize = 1;
const SERVICE: usize = 2;
const REGION: usize = 3;
const ACCOUNT: usize = 4;
const RESOURCE: usize = 5;

#[derive(Debug, Clone)]
pub(super) enum ResourcePattern {
    /// `*`: every resource, including the `*` of actions that touch none.
    Any,
    /// A six-segment pattern; `*` globs within a segment (the last segment may hold `:` and `/`).
    Qcs(Vec<String>),
}

impl ResourcePattern {
    pub(super) fn parse(raw: &str) -> Result<ResourcePattern, String> {
        let text = raw.trim();
        if text == "*" {
            return Ok(ResourcePattern::Any);
        }
        let segments: Vec<&str> = text.splitn(6, ':').collect();
        let well_formed = segments.len() == 6
            && segments[0].eq_ignore_ascii_case("qcs")
            && !segments[SERVICE].is_empty()
            && !segments[RESOURCE].is_empty();
        if !well_formed {
            return Err(format!(
                "resource \"{raw}\" must be \"*\" or qcs:project:service:region:account:resource"
            ));
        }
        Ok(ResourcePattern::Qcs(
            segments.into_iter().map(str::to_owned).collect(),
        ))
    }

    pub(super) fn matches(&self, requested: &str) -> bool {
        let ResourcePattern::Qcs(pattern) = self else {
            return true;
        };
        let requested: Vec<&str> = requested.splitn(6, ':').collect();
        if requested.len() != 6 {
            // Includes the "*" of actions that touch no particular resource.
            return false;
        }
        pattern
            .iter()
            .zip(&requested)
            .enumerate()
            .all(|(i, (p, r))| {
                // CAM: an empty project, region or account means "any" (the account one resolves to
                // the policy owner's root account, which is the only account whose resources a
                // Keyward caller can name).
                (p.is_empty() && matches!(i, PROJECT | REGION | ACCOUNT))
                    || glob_match(p, r, i != RESOURCE)
            })
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (possibly
/// empty) and everything else is literal; ASCII case is folded when `fold_case`.
///
/// Iterative with a single backtrack point, so it runs in O(|pattern| · |text|) at worst, never
/// exponentially (a later `*` makes every earlier backtrack point redundant).
pub(super) fn glob_match(pattern: &str, text: &str, fold_case: bool) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let same = |a: u8, b: u8| a == b || (fold_case && a.eq_ignore_ascii_case(&b));
    let (mut pi, mut ti) = (0, 0);
    // Position after the most recent `*`, and the text position it is currently matched up to.
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            backtrack = Some((pi, ti));
        } else if pi < p.len() && same(p[pi], t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = backtrack {
            // Let the last `*` swallow one more character and retry from there.
            pi = star_pi;
            ti = star_ti + 1;
            backtrack = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}
