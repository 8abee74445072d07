//! `/admin/users`: people, their roles and passwords, invitations, sign-out.

use super::*;

pub(super) async fn users(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<DoneQuery>,
) -> PageResult<Markup> {
    users_page(&state, &viewer, q.notice()).await
}

pub(super) fn role_select(id: &str, current: Role) -> Markup {
    html! {
        select id=(id) name="role" {
            option value="member" selected[current == Role::Member] { "member" }
            option value="admin" selected[current == Role::Admin] { "admin" }
        }
    }
}

pub(super) async fn users_page(state: &ApiState, viewer: &Viewer, n: Notice) -> PageResult<Markup> {
    let users = all_users(state).await?;
    let body = html! {
        h1 { "Users" }
        p.muted { "Members work records; admins also manage this service. A user without a password cannot log in." }
        (notice(&n))
        table.list {
            thead { tr { th { "Name" } th { "Address" } th { "Role, name and password" } th { "Access" } th { "Delete" } } }
            tbody {
                @for u in &users {
                    tr {
                        td { (display_name(&u.name, &u.email)) @if !u.can_log_in { " " span.badge { "no password" } } }
                        td.mono { (u.email) }
                        td {
                            form.inline method="post" action=(format!("/admin/users/{}", u.id)) {
                                (csrf(viewer))
                                label.visually-hidden for=(format!("role-{}", u.id)) { "Role" }
                                (role_select(&format!("role-{}", u.id), u.role))
                                label.visually-hidden for=(format!("name-{}", u.id)) { "Name" }
                                input id=(format!("name-{}", u.id)) type="text" name="name" value=(u.name) placeholder="Name" size="14";
                                label.visually-hidden for=(format!("pw-{}", u.id)) { "New password" }
                                input id=(format!("pw-{}", u.id)) type="password" name="password" placeholder="New password" autocomplete="new-password" size="14";
                                button type="submit" { "Save" }
                            }
                        }
                        td {
                            form method="post" action=(format!("/admin/users/{}/invite", u.id)) {
                                (csrf(viewer))
                                button type="submit" {
                                    @if u.can_log_in { "Reset link" } @else { "Invite" }
                                }
                            }
                            form method="post" action=(format!("/admin/users/{}", u.id)) {
                                (csrf(viewer))
                                input type="hidden" name="sign_out" value="1";
                                button type="submit" { "Sign out everywhere" }
                            }
                        }
                        td {
                            form method="post" action=(format!("/admin/users/{}/delete", u.id)) {
                                (csrf(viewer))
                                button.danger type="submit" disabled[u.id == viewer.user.id] { "Delete" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Add a user" }
        form.stacked method="post" action="/admin/users" {
            (csrf(viewer))
            label for="new-email" { "Email" }
            input #new-email type="email" name="email" required;
            label for="new-name" { "Name" }
            input #new-name type="text" name="name";
            label for="new-role" { "Role" }
            (role_select("new-role", Role::Member))
            label for="new-password" { "Password (at least 10 characters; leave empty to set it later)" }
            input #new-password type="password" name="password" autocomplete="new-password";
            button.primary type="submit" { "Add user" }
        }
    };
    Ok(layout::page(viewer, Nav::Users, "Users", body))
}

#[derive(Debug, Deserialize)]
pub struct UserForm {
    email: Option<String>,
    name: Option<String>,
    role: Option<String>,
    password: Option<String>,
    sign_out: Option<String>,
}

pub(super) fn form_role(role: Option<&str>) -> Result<Option<Role>, ApiError> {
    match role {
        None | Some("") => Ok(None),
        Some(r) => Role::parse(r)
            .map(Some)
            .ok_or_else(|| ApiError::Unprocessable("role: must be admin or member".into())),
    }
}

pub(super) fn nonempty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

pub(super) async fn create_user(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<UserForm>,
) -> PageResult {
    let result = async {
        let body = NewUser {
            email: form.email.unwrap_or_default(),
            name: form.name.unwrap_or_default(),
            role: form_role(form.role.as_deref())?,
            password: nonempty(form.password),
        };
        new_user(&state, body).await.map(|_| ())
    }
    .await;
    after(result, "/admin/users", "created", |n| {
        users_page(&state, &viewer, n)
    })
    .await
}

pub(super) async fn update_user(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
    Form(form): Form<UserForm>,
) -> PageResult {
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound("There is no such user."))?;
    let sign_out = form.sign_out.is_some();
    let result = async {
        let role = form_role(form.role.as_deref())?;
        if id == viewer.user.id && role == Some(Role::Member) {
            return Err(ApiError::Unprocessable(
                "role: you cannot remove your own admin role".into(),
            ));
        }
        let body = UserPatch {
            name: form.name,
            role,
            password: nonempty(form.password),
            sign_out,
            notify: None,
        };
        change_user(&state, id, body).await.map(|_| ())
    }
    .await;
    let done = if sign_out { "signed-out" } else { "saved" };
    after(result, "/admin/users", done, |n| {
        users_page(&state, &viewer, n)
    })
    .await
}

pub(super) async fn invite_user(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let missing = || PageError::NotFound("There is no such user.");
    let id = Uuid::parse_str(&id).map_err(|_| missing())?;
    let user = state.store.get_user(id).await?.ok_or_else(missing)?;
    let invite = crate::web::invite::issue(&state, &user).await?;
    let hours = crate::web::invite::LINK_HOURS;
    let n = match invite.mailed {
        Some(Ok(answer)) => Notice {
            done: Some(format!(
                "A set-password link was mailed to {} (the relay answered {answer}).",
                user.email
            )),
            ..Notice::default()
        },
        Some(Err(why)) => Notice {
            error: Some(format!(
                "The link could not be mailed to {} ({why}). Give them this link instead; \
                 it works once, for {hours} hours:",
                user.email
            )),
            link: Some(invite.link),
            ..Notice::default()
        },
        None => Notice {
            done: Some(format!(
                "Give {} this link to set their password; it works once, for {hours} hours. \
                 (It is mailed when [outbound] host and [http] public_url are set.)",
                user.email
            )),
            link: Some(invite.link),
            ..Notice::default()
        },
    };
    Ok(users_page(&state, &viewer, n).await?.into_response())
}

pub(super) async fn delete_user(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound("There is no such user."))?;
    let result = if id == viewer.user.id {
        Err(ApiError::Unprocessable("you cannot delete yourself".into()))
    } else {
        state.store.delete_user(id).await.map_err(|e| match e {
            crate::store::StoreError::Conflict(msg) => ApiError::Conflict(msg),
            other => other.into(),
        })
    };
    after(result, "/admin/users", "deleted", |n| {
        users_page(&state, &viewer, n)
    })
    .await
}
