//! `/admin/tokens`: API tokens (shown once when made), revocation.

use super::*;

pub(super) async fn tokens(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<DoneQuery>,
) -> PageResult<Markup> {
    tokens_page(&state, &viewer, q.notice(), None).await
}

pub(super) async fn tokens_page(
    state: &ApiState,
    viewer: &Viewer,
    n: Notice,
    shown: Option<&str>,
) -> PageResult<Markup> {
    let tokens = state.store.list_tokens().await?;
    let body = html! {
        h1 { "API tokens" }
        p.muted { "Programs use these with the HTTP API (Authorization: Bearer …). People log in instead." }
        (notice(&n))
        @if let Some(token) = shown {
            div.notice.done role="status" {
                p { "Copy the token now; it is not shown again:" }
                p { code #new-token { (token) } }
            }
        }
        table.list {
            thead { tr { th { "Name" } th { "Role" } th { "Created" } th { "State" } } }
            tbody {
                @for t in &tokens {
                    tr {
                        td { (t.name) }
                        td { (t.role.as_str()) }
                        td { (when(t.created_at)) }
                        td {
                            @if let Some(at) = t.revoked_at {
                                "revoked " (when(at))
                            } @else {
                                form method="post" action=(format!("/admin/tokens/{}/revoke", t.id)) {
                                    (csrf(viewer))
                                    button.danger type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Create a token" }
        form.stacked method="post" action="/admin/tokens" {
            (csrf(viewer))
            label for="token-name" { "Name (what uses it)" }
            input #token-name type="text" name="name" required;
            label for="token-role" { "Role" }
            (role_select("token-role", Role::Member))
            button.primary type="submit" { "Create token" }
        }
    };
    Ok(layout::page(viewer, Nav::Tokens, "API tokens", body))
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

pub(super) async fn create_token(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<TokenForm>,
) -> PageResult {
    match new_token(&state, &form.name, &form.role).await {
        Ok((token, _)) => {
            let page = tokens_page(&state, &viewer, Notice::default(), Some(&token)).await?;
            Ok((StatusCode::CREATED, page).into_response())
        }
        Err(err) => {
            let (status, _, message) = err.parts();
            let n = Notice {
                error: Some(message),
                ..Notice::default()
            };
            Ok((status, tokens_page(&state, &viewer, n, None).await?).into_response())
        }
    }
}

pub(super) async fn revoke_token(
    State(state): State<ApiState>,
    _: AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    if !state.store.revoke_token(&id).await? {
        return Err(PageError::NotFound("There is no such active token."));
    }
    Ok(see_other("/admin/tokens?done=revoked"))
}
