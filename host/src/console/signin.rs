//! Sign-in and sign-out. The SecretKey typed in is compared with the credential store's and
//! forgotten; the session keeps only the SecretId and the account it names.

use super::form::Params;
use super::layout::{self, bare};
use super::session;
use super::{peer, user_agent, Console, ConsoleState, Fail};
use crate::api::run_as::{record_sign_out, sign_in, SignInRefused};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

fn form(note: Option<Markup>, next: &str) -> Markup {
    html! {
        @if let Some(n) = note { (n) }
        form.card method="post" action="/console/signin" autocomplete="off" {
            input type="hidden" name="next" value=(next);
            label for="secret-id" { "SecretId" }
            input #secret-id type="text" name="secret_id" required autofocus spellcheck="false";
            label for="secret-key" { "SecretKey" }
            input #secret-key type="password" name="secret_key" required autocomplete="off";
            p { button type="submit" { "Sign in" } }
        }
        p.muted {
            "Sign in with an API key of the root account or a sub-account. The console then acts as "
            "that account, with its policies; the SecretKey is checked and not kept."
        }
    }
}

pub async fn page(q: Params) -> Response {
    let note = match q.get("expired") {
        "1" => Some(html! { p.flash.err role="alert" { "Your session expired. Sign in again." } }),
        _ => match q.get("out") {
            "1" => Some(html! { p.flash.ok role="status" { "Signed out." } }),
            _ => None,
        },
    };
    bare("Sign in", form(note, q.get("next"))).into_response()
}

pub async fn submit(State(cs): State<Arc<ConsoleState>>, parts: Parts, body: Bytes) -> Response {
    // Login CSRF: a sign-in form posted from another site would sign the victim in as the
    // attacker.
    if !session::same_origin(&parts.headers, session::authority(&parts), cs.scheme) {
        return Fail::Forged("the sign-in form was not sent from this console").into_response();
    }
    let f = super::form::Form::parse(&body);
    let (secret_id, secret_key) = (f.get("secret_id").trim().to_string(), f.get("secret_key"));
    let (ip, ua) = (peer(&parts), user_agent(&parts));
    let refuse = |status, msg: &str| {
        let note = html! { div.error role="alert" { strong.code { "AuthFailure" } ": " (msg) } };
        (status, bare("Sign in", form(Some(note), f.get("next")))).into_response()
    };
    let checked = {
        let (app, id, key) = (
            cs.app.clone(),
            secret_id.clone(),
            Zeroizing::new(secret_key.to_string()),
        );
        tokio::task::spawn_blocking(move || sign_in(&app, &id, &key, ip, &ua)).await
    };
    let who = match checked {
        Ok(Ok(who)) => who,
        Ok(Err(SignInRefused::Throttled(e))) => {
            return refuse(StatusCode::TOO_MANY_REQUESTS, &e.to_string())
        }
        Ok(Err(SignInRefused::Wrong)) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "the SecretId is unknown or disabled, or the SecretKey does not match",
            )
        }
        Ok(Err(SignInRefused::Unavailable(_))) | Err(_) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the credential store did not answer",
            )
        }
    };
    let id = cs.sessions.create(who, Instant::now());
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(&id, cs.scheme == "https"),
        )],
        Redirect::to(session::after_sign_in(f.get("next"))),
    )
        .into_response()
}

/// Sign-out is a POST (a link could be followed by a cross-site page); this page offers it.
pub async fn confirm_out(c: Console) -> Response {
    c.page(
        "Sign out",
        html! {
            form.card method="post" action="/console/signout" {
                (layout::csrf(&c.cur.csrf))
                button type="submit" { "Sign out" }
            }
        },
    )
}

pub async fn sign_out(c: Console, body: Bytes) -> Result<Response, Fail> {
    c.form(&body)?;
    c.cs.sessions.end(&c.sid);
    record_sign_out(&c.cs.app, &c.cur.who, c.peer, &c.user_agent);
    Ok((
        [(
            header::SET_COOKIE,
            session::clear_cookie(c.cs.scheme == "https"),
        )],
        Redirect::to("/console/signin?out=1"),
    )
        .into_response())
}
