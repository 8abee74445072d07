//! `/admin/blocked`: blocked senders, from the file and added here.

use super::*;

pub(super) async fn blocked(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<DoneQuery>,
) -> PageResult<Markup> {
    blocked_page(&state, &viewer, q.notice()).await
}

pub(super) async fn blocked_page(
    state: &ApiState,
    viewer: &Viewer,
    n: Notice,
) -> PageResult<Markup> {
    let entries = all_blocked(state).await?;
    let body = html! {
        h1 { "Blocked senders" }
        p.muted { "SMTP refuses these at MAIL FROM; mail from them by other routes is quarantined. A domain blocks its subdomains too." }
        (notice(&n))
        table.list {
            thead { tr { th { "Entry" } th { "From" } th { "Added" } th { "" } } }
            tbody {
                @for b in &entries {
                    tr {
                        td.mono { (b.entry) }
                        td { @if b.source == "config" { "configuration file" } @else { "added here" } }
                        td { @if let Some(at) = b.created_at { (when(at)) } }
                        td {
                            @if b.source != "config" {
                                form method="post" action="/admin/blocked/remove" {
                                    (csrf(viewer))
                                    input type="hidden" name="entry" value=(b.entry);
                                    button type="submit" { "Unblock" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Block a sender" }
        form.inline method="post" action="/admin/blocked" {
            (csrf(viewer))
            label for="block-entry" { "Address or domain" }
            input #block-entry type="text" name="entry" required placeholder="spam@example.com or example.com";
            button.primary type="submit" { "Block" }
        }
    };
    Ok(layout::page(viewer, Nav::Blocked, "Blocked senders", body))
}

#[derive(Debug, Deserialize)]
pub struct EntryForm {
    #[serde(default)]
    entry: String,
}

pub(super) async fn add_blocked(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<EntryForm>,
) -> PageResult {
    let result = block(&state, &form.entry).await.map(|_| ());
    after(result, "/admin/blocked", "saved", |n| {
        blocked_page(&state, &viewer, n)
    })
    .await
}

pub(super) async fn remove_blocked(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<EntryForm>,
) -> PageResult {
    let result = unblock(&state, &form.entry).await;
    after(result, "/admin/blocked", "deleted", |n| {
        blocked_page(&state, &viewer, n)
    })
    .await
}
