//! Route: which aliases, and so which pipelines, a message goes to.

use crate::domain::{AliasEntry, Directory, EmailAddress, PipelineEntry, REPLY_TOKEN_TAG};

/// One pipeline a message goes to, through one of its aliases.
#[derive(Debug, Clone)]
pub struct Route<'a> {
    pub alias: &'a AliasEntry,
    pub pipeline: &'a PipelineEntry,
    /// A reply token found in a `+r-<token>` recipient of this pipeline.
    pub token: Option<String>,
}

/// The pipelines the envelope recipients reach, one route each, in
/// recipient order. The first alias named for a pipeline is the one whose
/// owner, tags and reopen rules apply. Unknown or disabled recipients are
/// skipped (the SMTP listener refuses them before DATA).
pub fn route<'a>(directory: &'a Directory, rcpt_to: &[String]) -> Vec<Route<'a>> {
    let mut routes: Vec<Route<'a>> = Vec::new();
    for rcpt in rcpt_to {
        let Ok(address) = EmailAddress::parse(rcpt) else {
            continue;
        };
        let Some((alias, tag)) = directory.alias_for(&address) else {
            continue;
        };
        let Some(pipeline) = directory.pipeline(alias.pipeline_id) else {
            continue;
        };
        let token = tag
            .and_then(|t| t.strip_prefix(REPLY_TOKEN_TAG))
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        match routes.iter_mut().find(|r| r.pipeline.id == pipeline.id) {
            Some(existing) => {
                if existing.token.is_none() {
                    existing.token = token;
                }
            }
            None => routes.push(Route {
                alias,
                pipeline,
                token,
            }),
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> Directory {
        let settings = crate::config::Settings::defaults().expect("defaults");
        let mut aliases = settings.aliases.clone();
        let mut deals = aliases[0].clone();
        deals.address = "deals@localhost".into();
        aliases.push(deals);
        Directory::from_config(&settings.pipelines, &aliases)
    }

    #[test]
    fn one_route_per_pipeline_first_alias_wins() {
        let d = directory();
        let rcpts = [
            "DEALS@localhost".to_string(),
            "sales@localhost".into(),
            "service@localhost".into(),
            "nobody@localhost".into(),
        ];
        let routes = route(&d, &rcpts);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].alias.address.as_str(), "deals@localhost");
        assert_eq!(routes[1].pipeline.name, "Service");
    }

    #[test]
    fn reply_token_comes_from_the_plus_tag() {
        let d = directory();
        let routes = route(&d, &["sales+r-tok123@localhost".to_string()]);
        assert_eq!(routes[0].token.as_deref(), Some("tok123"));
        let routes = route(&d, &["sales+other@localhost".to_string()]);
        assert_eq!(routes[0].token, None);
    }

    #[test]
    fn disabled_alias_gets_no_route() {
        let mut d = directory();
        for a in d.aliases.values_mut() {
            a.enabled = false;
        }
        assert!(route(&d, &["sales@localhost".to_string()]).is_empty());
    }
}
