//! The record page's conversation tools: merge the record into another,
//! split a thread off to a new record, forward a message to someone
//! outside the conversation. The forms render here; the work is the API's
//! (`api::conversation`).

use axum::Form;
use axum::extract::{Path, State};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::csrf;
use super::record::{Draft, after, record_id};
use super::session::Viewer;
use super::{PageResult, see_other};
use crate::api::ApiState;
use crate::api::conversation::{NewForward, forward, merge, split};
use crate::store::{MessageView, RecordView};

#[derive(Debug, Deserialize)]
pub struct MergeForm {
    #[serde(default)]
    into: String,
}

/// `POST /records/{number}/merge`: to the record merged into.
pub async fn merge_into(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(number): Path<String>,
    Form(form): Form<MergeForm>,
) -> PageResult {
    let id = record_id(&state, &number).await?;
    let result = async {
        let into = state
            .store
            .record_id(parse_number(&form.into)?)
            .await?
            .ok_or_else(|| {
                crate::api::ApiError::Unprocessable(format!(
                    "There is no record {}.",
                    form.into.trim()
                ))
            })?;
        merge(&state, id, into, &viewer.actor()).await
    }
    .await;
    match result {
        Ok(moved) => Ok(see_other(&format!("/records/{}", moved.into.number))),
        Err(err) => after(&state, &viewer, id, &number, Err(err), Draft::default()).await,
    }
}

fn parse_number(raw: &str) -> Result<i64, crate::api::ApiError> {
    raw.trim()
        .trim_start_matches("[#")
        .trim_start_matches('#')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| {
            crate::api::ApiError::Unprocessable(
                "Type the number of the record to merge into, like 42.".into(),
            )
        })
}

#[derive(Debug, Deserialize)]
pub struct SplitForm {
    message: Uuid,
}

/// `POST /records/{number}/split`: to the new record.
pub async fn split_off(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(number): Path<String>,
    Form(form): Form<SplitForm>,
) -> PageResult {
    let id = record_id(&state, &number).await?;
    match split(&state, id, form.message, &viewer.actor()).await {
        Ok(moved) => Ok(see_other(&format!("/records/{}", moved.into.number))),
        Err(err) => after(&state, &viewer, id, &number, Err(err), Draft::default()).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct ForwardForm {
    message: Uuid,
    #[serde(default)]
    to: String,
    #[serde(default)]
    text: String,
}

/// `POST /records/{number}/forward`: back to the record.
pub async fn forward_message(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(number): Path<String>,
    Form(form): Form<ForwardForm>,
) -> PageResult {
    let id = record_id(&state, &number).await?;
    let body = NewForward {
        message: form.message,
        to: form
            .to
            .split([',', ' ', ';'])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        cc: Vec::new(),
        text: form.text.clone(),
    };
    let result = forward(&state, id, body, &viewer.actor()).await.map(|_| ());
    let draft = Draft {
        forward: Some((form.message, form.to, form.text)),
        ..Draft::default()
    };
    after(&state, &viewer, id, &number, result, draft).await
}

/// The side panel's merge form, or where a merged record went.
pub fn merge_panel(viewer: &Viewer, r: &RecordView) -> Markup {
    html! {
        @if r.merged_into.is_none() {
            form.merge method="post" action=(format!("/records/{}/merge", r.number)) {
                (csrf(viewer))
                label for="merge-into" { "Merge into record" }
                input #merge-into type="text" name="into" inputmode="numeric" placeholder="#" required
                    aria-describedby="merge-help";
                p #merge-help .muted.small {
                    "Its messages and comments move there, and later replies to either land there. This record is then closed."
                }
                button type="submit" { "Merge" }
            }
        }
    }
}

/// The banner of a merged record.
pub fn merged_banner(r: &RecordView) -> Markup {
    html! {
        @if let Some(into) = &r.merged_into {
            p.notice.done role="status" {
                "This record was merged into "
                a href=(format!("/records/{}", into.number)) { (into.reference) }
                ". Its conversation is there, and new mail for it goes there."
            }
        }
    }
}

/// Under a message: forward it (with a note) or split its thread off.
pub fn message_tools(
    viewer: &Viewer,
    number: i64,
    m: &MessageView,
    can_send: bool,
    draft: &Draft,
) -> Markup {
    let base = format!("/records/{number}");
    let typed = draft.forward.as_ref().filter(|(id, _, _)| *id == m.id);
    html! {
        div.message-tools {
            details.forward open[typed.is_some()] {
                summary { "Forward…" }
                @if !can_send {
                    p.muted { "Forwarding needs an outbound relay: an admin sets [outbound] host." }
                }
                form method="post" action=(format!("{base}/forward")) {
                    (csrf(viewer))
                    input type="hidden" name="message" value=(m.id);
                    label for=(format!("fwd-to-{}", m.id)) { "To (comma-separated)" }
                    input id=(format!("fwd-to-{}", m.id)) type="text" name="to" required
                        value=(typed.map_or("", |t| t.1.as_str())) disabled[!can_send];
                    label for=(format!("fwd-note-{}", m.id)) { "Note above the forwarded message" }
                    textarea id=(format!("fwd-note-{}", m.id)) name="text" rows="3" disabled[!can_send] {
                        (typed.map_or("", |t| t.2.as_str()))
                    }
                    p.muted.small { "Attachments go with it. An answer comes back to this record." }
                    button type="submit" disabled[!can_send] { "Forward" }
                }
            }
            form.split method="post" action=(format!("{base}/split")) {
                (csrf(viewer))
                input type="hidden" name="message" value=(m.id);
                button.quiet type="submit" title="This message and the replies to it move to a new record" {
                    "Split into a new record"
                }
            }
        }
    }
}
