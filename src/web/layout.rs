//! The page shell (head, navigation, the signed-in user) and the small
//! pieces every page uses.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::session::{CSRF_FIELD, Viewer};

/// Where a page sits in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Board,
    Contacts,
    Inbound,
    Aliases,
    Pipelines,
    Users,
    Tokens,
    Blocked,
    Domains,
    Webhooks,
    Me,
}

const MEMBER_NAV: [(Nav, &str, &str); 2] = [
    (Nav::Board, "/", "Board"),
    (Nav::Contacts, "/contacts", "Contacts"),
];

const ADMIN_NAV: [(Nav, &str, &str); 8] = [
    (Nav::Inbound, "/admin/inbound", "Inbound"),
    (Nav::Aliases, "/admin/aliases", "Aliases"),
    (Nav::Pipelines, "/admin/pipelines", "Pipelines"),
    (Nav::Users, "/admin/users", "Users"),
    (Nav::Tokens, "/admin/tokens", "API tokens"),
    (Nav::Blocked, "/admin/blocked", "Blocked senders"),
    (Nav::Domains, "/admin/domains", "Sending domains"),
    (Nav::Webhooks, "/admin/webhooks", "Webhooks"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · emailin" }
            link rel="stylesheet" href=(assets::url("app.css"));
            script src=(assets::url("htmx.js")) defer {}
            script src=(assets::url("app.js")) defer {}
        }
    }
}

/// A page for a signed-in user.
pub fn page(viewer: &Viewer, nav: Nav, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body hx-headers=(format!(r#"{{"X-CSRF-Token": "{}"}}"#, viewer.csrf)) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "emailin" }
                    nav aria-label="Main" {
                        @for (key, href, label) in MEMBER_NAV {
                            a href=(href) aria-current=[(key == nav).then_some("page")] { (label) }
                        }
                        @if viewer.is_admin() {
                            span.sep aria-hidden="true" {}
                            @for (key, href, label) in ADMIN_NAV {
                                a href=(href) aria-current=[(key == nav).then_some("page")] { (label) }
                            }
                        }
                    }
                    form.search role="search" method="get" action="/search" {
                        label.visually-hidden for="top-search" { "Search records" }
                        input #top-search type="search" name="q" placeholder="Search records…" maxlength="200";
                    }
                    div.me {
                        a href="/me" title=(viewer.user.email) aria-current=[(nav == Nav::Me).then_some("page")] {
                            (display_name(&viewer.user.name, &viewer.user.email))
                        }
                        form method="post" action="/logout" {
                            (csrf(viewer))
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// A page without a user (login, errors).
pub fn bare(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main #main .narrow {
                    h1 { (title) }
                    p { (message) }
                    p { a href="/" { "Back to the board" } }
                }
            }
        }
    }
}

/// A small page in a card, without a user or scripts (login, set-password).
pub fn card(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · emailin" }
                link rel="stylesheet" href=(assets::url("app.css"));
            }
            body.bare {
                main #main .login { (body) }
            }
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(viewer.csrf); }
}

/// A notice above a page's content.
pub fn notice(error: Option<&str>, done: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p.notice.error role="alert" { (error) }
        }
        @if let Some(done) = done {
            p.notice.done role="status" { (done) }
        }
    }
}

/// A person's name, or their address when they have none.
pub fn display_name<'a>(name: &'a str, email: &'a str) -> &'a str {
    if name.trim().is_empty() { email } else { name }
}

/// How long ago, in the largest whole unit: `5m`, `3h`, `2d`, `6w`.
pub fn age(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds().max(0);
    match secs {
        s if s < 60 => "now".to_string(),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 86_400 * 14 => format!("{}d", s / 86_400),
        s => format!("{}w", s / (86_400 * 7)),
    }
}

/// A time for people: `2026-12-07 11:52 UTC`, with the exact time in a
/// `<time>` element.
pub fn when(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M UTC")) }
    }
}

/// Plain text kept as written: escaped, its line breaks kept by the stylesheet.
pub fn text_block(text: &str) -> Markup {
    html! { div.text { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let now = Utc::now();
        assert_eq!(age(now, now), "now");
        assert_eq!(age(now - chrono::Duration::minutes(5), now), "5m");
        assert_eq!(age(now - chrono::Duration::hours(3), now), "3h");
        assert_eq!(age(now - chrono::Duration::days(2), now), "2d");
        assert_eq!(age(now - chrono::Duration::days(43), now), "6w");
    }
}
