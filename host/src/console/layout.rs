//! The page shell and the small pieces every page uses. maud escapes every interpolated
//! string, so user-supplied text (aliases, descriptions, tags, secret names and values) is
//! rendered as text; nothing here uses `PreEscaped` on such text.

use super::session::{Current, Flash};
use maud::{html, Markup, DOCTYPE};

const NAV: [(&str, &str); 5] = [
    ("Keys", "/console/keys"),
    ("Data keys", "/console/datakeys"),
    ("Secrets", "/console/secrets"),
    ("Access", "/console/access"),
    ("Audit", "/console/audit"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Keyward console" }
            link rel="stylesheet" href="/console/assets/console.css";
            script src="/console/assets/console.js" defer {}
        }
    }
}

/// A page for a signed-in session: navigation, who is signed in, the flash, the body.
pub fn page(title: &str, cur: &Current, regions: &[&str], body: Markup) -> Markup {
    let region = match cur.region.as_str() {
        "" => regions.first().copied().unwrap_or(""),
        r => r,
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/console/keys" { "Keyward" }
                    nav aria-label="Main" {
                        @for (name, href) in NAV {
                            a href=(href) { (name) }
                        }
                    }
                    @if regions.len() > 1 {
                        form.inline #region-form method="post" action="/console/region" {
                            (csrf(&cur.csrf))
                            label.inline for="region" { "Region " }
                            select #region name="region" {
                                @for r in regions { option value=(r) selected[*r == region] { (r) } }
                            }
                            " " button.secondary type="submit" { "Switch" }
                        }
                    } @else {
                        span.muted { (region) }
                    }
                    span.who {
                        (cur.who.username)
                        @if cur.who.root { " (root)" }
                        " · " code { (cur.who.secret_id) }
                    }
                    form.inline #signout method="post" action="/console/signout" {
                        (csrf(&cur.csrf))
                        button.link type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    @match &cur.flash {
                        Some(Flash::Done(m)) => p.flash.ok role="status" { (m) },
                        Some(Flash::Refused(m)) => p.flash.err role="alert" { (m) },
                        None => {},
                    }
                    (body)
                }
            }
        }
    }
}

/// A page without a session (sign-in, refusals before one is known).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href="/console/keys" { "Keyward" } }
                main.narrow { h1 { (title) } (body) }
            }
        }
    }
}

/// The hidden field every state-changing form carries.
pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// An action's refusal: the API's error code and message.
pub fn refusal(code: &str, message: &str) -> Markup {
    html! {
        div.error role="alert" {
            strong.code { (code) } ": " span.message { (message) }
        }
        p { a href="/console/keys" { "Back to the console" } }
    }
}

/// A `<select>` with `current` selected.
pub fn select(name: &str, id: &str, options: &[(&str, &str)], current: &str) -> Markup {
    html! {
        select name=(name) id=(id) {
            @for (value, label) in options {
                option value=(value) selected[*value == current] { (label) }
            }
        }
    }
}

/// Previous/next links for a list of `total` rows shown `per_page` at a time.
pub fn pager(base: &str, query: &str, page: u64, per_page: u64, total: u64) -> Markup {
    let pages = total.div_ceil(per_page).max(1);
    let link = |p: u64| {
        format!(
            "{base}?{query}{}page={p}",
            if query.is_empty() { "" } else { "&" }
        )
    };
    html! {
        nav.pager aria-label="Pages" {
            @if page > 1 { a rel="prev" href=(link(page - 1)) { "‹ Previous" } }
            span { "Page " (page) " of " (pages) " · " (total) " in all" }
            @if page < pages { a rel="next" href=(link(page + 1)) { "Next ›" } }
        }
    }
}

/// Query-string encoding of filter values for pager links.
pub fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(_, v)| !v.is_empty()))
        .finish()
}
