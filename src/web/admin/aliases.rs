//! `/admin/aliases`: the addresses that feed pipelines, with their reopen rules.

use super::*;

#[derive(Debug, Deserialize)]
pub struct AliasQuery {
    edit: Option<String>,
    done: Option<String>,
}

pub(super) async fn aliases(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<AliasQuery>,
) -> PageResult<Markup> {
    let notice = DoneQuery { done: q.done }.notice();
    aliases_page(&state, &viewer, notice, q.edit.as_deref(), None).await
}

pub(super) async fn aliases_page(
    state: &ApiState,
    viewer: &Viewer,
    n: Notice,
    edit: Option<&str>,
    typed: Option<&AliasForm>,
) -> PageResult<Markup> {
    let list = state.store.list_aliases(None, None, 500).await?.items;
    let pipelines = all_pipelines(state).await?;
    let users = all_users(state).await?;
    let editing = edit.and_then(|a| list.iter().find(|x| x.address.eq_ignore_ascii_case(a)));
    let form = match (typed, editing) {
        (Some(t), _) => t.clone(),
        (None, Some(a)) => AliasForm::from_alias(a),
        (None, None) => AliasForm {
            enabled: Some("1".into()),
            auth: "monitor".into(),
            ..AliasForm::default()
        },
    };
    let body = html! {
        h1 { "Aliases" }
        p.muted { "Mail to an alias becomes a record in its pipeline, owned by its owner, with its tags." }
        (notice(&n))
        table.list {
            thead { tr { th { "Address" } th { "Pipeline" } th { "Owner" } th { "Tags" } th { "Reopen" } th { "Sender checks" } th { "" } } }
            tbody {
                @for a in &list {
                    tr.disabled[!a.enabled] {
                        td.mono { (a.address) @if !a.enabled { " " span.badge { "disabled" } } }
                        td { (a.pipeline) }
                        td { (a.owner.as_deref().unwrap_or("unassigned")) }
                        td { (a.tags.join(", ")) }
                        td { @for r in &a.reopen { (r.from) " → " (r.to) br; } }
                        td { (a.auth.as_str()) }
                        td { a href=(format!("/admin/aliases?edit={}", escape_query(&a.address))) { "Edit" } }
                    }
                }
            }
        }
        h2 { @if editing.is_some() { "Edit " (form.address) } @else { "Add or change an alias" } }
        form.stacked method="post" action="/admin/aliases" {
            (csrf(viewer))
            label for="alias-address" { "Address" }
            input #alias-address type="email" name="address" value=(form.address) required;
            label for="alias-name" { "Name" }
            input #alias-name type="text" name="name" value=(form.name);
            label for="alias-pipeline" { "Pipeline" }
            select #alias-pipeline name="pipeline" {
                @for p in &pipelines {
                    option value=(p.name) selected[p.name == form.pipeline] { (p.name) }
                }
            }
            label for="alias-owner" { "Owner" }
            select #alias-owner name="owner" {
                option value="" { "Unassigned" }
                @for u in &users {
                    option value=(u.email) selected[u.email == form.owner] { (display_name(&u.name, &u.email)) }
                }
            }
            label for="alias-tags" { "Tags (comma-separated)" }
            input #alias-tags type="text" name="tags" value=(form.tags);
            label for="alias-also" { "Also answers for (comma-separated addresses)" }
            input #alias-also type="text" name="also" value=(form.also);
            label for="alias-reopen" { "Reopen rules, one a line: closed stage -> open stage" }
            textarea #alias-reopen name="reopen" rows="3" placeholder="Won -> New" { (form.reopen) }
            label for="alias-follow-up" { "Follow-up window in days: a reply to a record closed longer than this starts a new record (empty: no window)" }
            input #alias-follow-up type="number" min="1" max="36500" name="follow_up_days" value=(form.follow_up_days);
            label for="alias-auth" { "Sender checks (SPF, DKIM, DMARC)" }
            select #alias-auth name="auth" {
                @for (v, label) in [("off", "off"), ("monitor", "monitor: record the result"), ("enforce", "enforce: quarantine DMARC failures")] {
                    option value=(v) selected[form.auth == v] { (label) }
                }
            }
            label.check { input type="checkbox" name="enabled" value="1" checked[form.enabled.is_some()]; " Enabled (a disabled alias refuses mail at RCPT)" }
            label.check { input type="checkbox" name="reopen_on_reply" value="1" checked[form.reopen_on_reply.is_some()]; " Reopen on any reply (to the pipeline's first open stage)" }
            button.primary type="submit" { "Save alias" }
        }
    };
    Ok(layout::page(viewer, Nav::Aliases, "Aliases", body))
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AliasForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    pipeline: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    also: String,
    #[serde(default)]
    reopen: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    follow_up_days: String,
    enabled: Option<String>,
    reopen_on_reply: Option<String>,
}

pub(super) fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

impl AliasForm {
    fn from_alias(a: &AliasConfig) -> Self {
        AliasForm {
            address: a.address.clone(),
            name: a.name.clone(),
            pipeline: a.pipeline.clone(),
            owner: a.owner.clone().unwrap_or_default(),
            tags: a.tags.join(", "),
            also: a.also.join(", "),
            reopen: a
                .reopen
                .iter()
                .map(|r| format!("{} -> {}", r.from, r.to))
                .collect::<Vec<_>>()
                .join("\n"),
            auth: a.auth.as_str().to_string(),
            follow_up_days: a.follow_up_days.map(|d| d.to_string()).unwrap_or_default(),
            enabled: a.enabled.then(|| "1".to_string()),
            reopen_on_reply: a.reopen_on_reply.then(|| "1".to_string()),
        }
    }

    fn to_alias(&self) -> Result<AliasConfig, ApiError> {
        let mut reopen = Vec::new();
        for line in self.reopen.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (from, to) = line
                .split_once("->")
                .or_else(|| line.split_once('→'))
                .ok_or_else(|| {
                    ApiError::Unprocessable(format!(
                        "reopen: {line:?} is not \"closed stage -> open stage\""
                    ))
                })?;
            reopen.push(ReopenRuleConfig {
                from: from.trim().to_string(),
                to: to.trim().to_string(),
            });
        }
        let follow_up_days = match self.follow_up_days.trim() {
            "" => None,
            days => Some(days.parse::<u32>().ok().filter(|d| *d > 0).ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "follow-up window: {days:?} is not a whole number of days above 0"
                ))
            })?),
        };
        let address = crate::domain::EmailAddress::parse(self.address.trim())
            .map_err(|e| ApiError::Unprocessable(format!("address: {e}")))?;
        Ok(AliasConfig {
            address: address.as_str().to_string(),
            name: self.name.trim().to_string(),
            pipeline: self.pipeline.clone(),
            owner: nonempty(Some(self.owner.trim().to_string())),
            tags: comma_list(&self.tags),
            enabled: self.enabled.is_some(),
            reopen_on_reply: self.reopen_on_reply.is_some(),
            reopen,
            also: comma_list(&self.also),
            auth: AuthPolicy::parse(&self.auth).unwrap_or_default(),
            follow_up_days,
        })
    }
}

pub(super) async fn save_alias(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<AliasForm>,
) -> PageResult {
    let result = match form.to_alias() {
        Ok(alias) => store_alias(&state, &alias).await,
        Err(e) => Err(e),
    };
    after(result, "/admin/aliases", "saved", |n| {
        aliases_page(&state, &viewer, n, None, Some(&form))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_rules_are_read_one_a_line() {
        let form = AliasForm {
            address: "sales@example.com".into(),
            pipeline: "Sales".into(),
            reopen: "Won -> New\nLost → Working\n".into(),
            ..AliasForm::default()
        };
        let alias = form.to_alias().expect("valid");
        assert_eq!(alias.reopen.len(), 2);
        assert_eq!(alias.reopen[1].from, "Lost");
        assert_eq!(alias.reopen[1].to, "Working");
        let bad = AliasForm {
            reopen: "Won to New".into(),
            ..form
        };
        assert!(bad.to_alias().is_err());
    }
}
