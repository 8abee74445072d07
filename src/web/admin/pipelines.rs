//! `/admin/pipelines`: pipelines and their stages, one a line.

use super::*;

pub(super) async fn pipelines(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<DoneQuery>,
) -> PageResult<Markup> {
    pipelines_page(&state, &viewer, q.notice()).await
}

pub(super) fn stage_lines(stages: &[crate::store::StageView]) -> String {
    stages
        .iter()
        .map(|s| format!("{}: {}", s.name, s.kind))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) async fn pipelines_page(
    state: &ApiState,
    viewer: &Viewer,
    n: Notice,
) -> PageResult<Markup> {
    let list = all_pipelines(state).await?;
    let body = html! {
        h1 { "Pipelines" }
        p.muted { "Stages in order, one a line, as \"name: open\" or \"name: closed\". A stage that records or rules use cannot be removed." }
        (notice(&n))
        div.grid {
            @for p in &list {
                section.panel aria-label=(p.name) {
                    form.stacked method="post" action=(format!("/admin/pipelines/{}", p.id)) {
                        (csrf(viewer))
                        label for=(format!("p-name-{}", p.id)) { "Name" }
                        input id=(format!("p-name-{}", p.id)) type="text" name="name" value=(p.name) required;
                        label for=(format!("p-stages-{}", p.id)) { "Stages" }
                        textarea id=(format!("p-stages-{}", p.id)) name="stages" rows=(p.stages.len().max(3)) { (stage_lines(&p.stages)) }
                        button.primary type="submit" { "Save" }
                    }
                    form method="post" action=(format!("/admin/pipelines/{}/delete", p.id)) {
                        (csrf(viewer))
                        button.danger type="submit" { "Delete pipeline" }
                    }
                }
            }
        }
        h2 { "Add a pipeline" }
        form.stacked method="post" action="/admin/pipelines" {
            (csrf(viewer))
            label for="new-pipeline-name" { "Name" }
            input #new-pipeline-name type="text" name="name" required;
            label for="new-pipeline-stages" { "Stages" }
            textarea #new-pipeline-stages name="stages" rows="4" { "New: open\nWorking: open\nDone: closed" }
            button.primary type="submit" { "Add pipeline" }
        }
    };
    Ok(layout::page(viewer, Nav::Pipelines, "Pipelines", body))
}

#[derive(Debug, Deserialize)]
pub struct PipelineForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    stages: String,
}

/// `name: kind` lines (a line without a kind is an open stage).
pub(super) fn parse_stages(text: &str, existing: &[crate::store::StageView]) -> Vec<StageInput> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (name, kind) = match line.rsplit_once(':') {
                Some((name, kind)) => (name.trim(), kind.trim().to_lowercase()),
                None => (line, "open".to_string()),
            };
            StageInput {
                id: existing.iter().find(|s| s.name == name).map(|s| s.id),
                name: name.to_string(),
                kind,
            }
        })
        .collect()
}

pub(super) async fn create_pipeline(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<PipelineForm>,
) -> PageResult {
    let body = NewPipeline {
        name: form.name,
        stages: parse_stages(&form.stages, &[]),
    };
    let result = new_pipeline(&state, body).await.map(|_| ());
    after(result, "/admin/pipelines", "created", |n| {
        pipelines_page(&state, &viewer, n)
    })
    .await
}

pub(super) async fn update_pipeline(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
    Form(form): Form<PipelineForm>,
) -> PageResult {
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound("There is no such pipeline."))?;
    let existing = state
        .store
        .get_pipeline(id)
        .await?
        .ok_or(PageError::NotFound("There is no such pipeline."))?;
    let body = PipelinePatch {
        name: Some(form.name),
        stages: Some(parse_stages(&form.stages, &existing.stages)),
    };
    let result = change_pipeline(&state, id, body).await.map(|_| ());
    after(result, "/admin/pipelines", "saved", |n| {
        pipelines_page(&state, &viewer, n)
    })
    .await
}

pub(super) async fn delete_pipeline(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound("There is no such pipeline."))?;
    let result = remove_pipeline(&state, id).await;
    after(result, "/admin/pipelines", "deleted", |n| {
        pipelines_page(&state, &viewer, n)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_lines_read_name_and_kind() {
        let stages = parse_stages("New: open\n\n Won : closed\nLater", &[]);
        let got: Vec<(&str, &str)> = stages
            .iter()
            .map(|s| (s.name.as_str(), s.kind.as_str()))
            .collect();
        assert_eq!(got, [("New", "open"), ("Won", "closed"), ("Later", "open")]);
    }
}
