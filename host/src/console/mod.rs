//! The web console at `/console` (docs/console.md): server-rendered pages over the same action
//! handlers, CAM decisions and audit log as the signed API. A browser signs in with an API
//! key; from then on a session cookie names the account, and every page runs its actions
//! through [`crate::api::run_as::run_as`] as that account.
//!
//! Security, in one place: sessions and CSRF in `session`, the response headers (CSP without
//! inline script or style, no framing, no caching) in [`security_headers`], escaping by maud.

mod access;
mod assets;
mod audit;
mod datakeys;
mod form;
mod groups;
mod import;
mod keys;
mod layout;
mod secrets;
pub mod session;
mod signin;
mod tools;

use crate::api::actions::Product;
use crate::api::run_as::{run_as, Requester};
use crate::api::{envelope, AppState, Fields};
use crate::error::Error;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use form::Form;
use maud::Markup;
use serde_json::Value;
use session::{Current, Flash, Missing, Sessions};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

pub struct ConsoleState {
    pub app: Arc<AppState>,
    pub sessions: Sessions,
    /// `https` when the daemon has TLS: the origin forms must come from, and the cookie's
    /// Secure attribute.
    pub scheme: &'static str,
}

/// The console's routes, to be nested at `/console`.
pub fn router(app: Arc<AppState>) -> Router {
    let limit = app.cfg.limits.max_body_bytes;
    let cs = Arc::new(ConsoleState {
        sessions: Sessions::new(&app.cfg.console),
        scheme: if app.cfg.tls.is_some() {
            "https"
        } else {
            "http"
        },
        app,
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/keys") }))
        .route("/assets/{name}", get(assets::serve))
        .route("/signin", get(signin::page).post(signin::submit))
        .route("/signout", get(signin::confirm_out).post(signin::sign_out))
        .route("/download", post(tools::download))
        .route("/region", post(choose_region))
        .merge(keys::routes())
        .merge(tools::routes())
        .merge(datakeys::routes())
        .merge(import::routes())
        .merge(secrets::routes())
        .merge(access::routes())
        .merge(audit::routes())
        .fallback(not_found)
        // Forms are small; the API's body limit bounds them too (files: 32 KiB secrets,
        // wrapped key material).
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(cs)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        layout::bare(
            "Not found",
            layout::refusal("NotFound", "there is no such console page"),
        ),
    )
        .into_response()
}

/// Headers on every console response: scripts and styles only from the console's own embedded
/// files (no inline code, so an injected string cannot run), no framing (clickjacking), no
/// caching (pages may show secret values), no referrer leaving the site.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    // Not `no-referrer`: with it browsers send `Origin: null` on form posts, and the
    // same-origin check needs the real origin. Nothing leaves for other sites either way.
    set(h, "referrer-policy", "same-origin");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    resp
}

/// Why a console request did not get its page. Mapped to a response in one place.
pub enum Fail {
    /// No session (or it timed out): to the sign-in page, and after it back to `next` (the
    /// console page a GET asked for).
    SignIn { expired: bool, next: Option<String> },
    /// A state change that did not come from a console page (CSRF).
    Forged(&'static str),
    /// The action was refused: its API error code and message are shown.
    Api(Error),
    /// A form the console did not make.
    BadForm(String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Api(e)
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        match self {
            Fail::SignIn { expired, next } => {
                let mut q = form_urlencoded::Serializer::new(String::new());
                if expired {
                    q.append_pair("expired", "1");
                }
                if let Some(n) = next {
                    q.append_pair("next", &n);
                }
                let q = q.finish();
                let sep = if q.is_empty() { "" } else { "?" };
                Redirect::to(&format!("/console/signin{sep}{q}")).into_response()
            }
            Fail::Forged(why) => (
                StatusCode::FORBIDDEN,
                layout::bare("Request refused", layout::refusal("CsrfCheckFailed", why)),
            )
                .into_response(),
            Fail::Api(e) => {
                let code = envelope::error_code(&e);
                let status = match code {
                    "AuthFailure.UnauthorizedOperation" => StatusCode::FORBIDDEN,
                    "InternalError" => StatusCode::INTERNAL_SERVER_ERROR,
                    c if c.starts_with("ResourceNotFound") || c.ends_with("NotFound") => {
                        StatusCode::NOT_FOUND
                    }
                    _ => StatusCode::BAD_REQUEST,
                };
                let msg = envelope::error_message(&e);
                (status, layout::bare("Refused", layout::refusal(code, &msg))).into_response()
            }
            Fail::BadForm(why) => (
                StatusCode::BAD_REQUEST,
                layout::bare("Bad request", layout::refusal("InvalidParameter", &why)),
            )
                .into_response(),
        }
    }
}

/// A request from a signed-in browser.
pub struct Console {
    pub cs: Arc<ConsoleState>,
    sid: String,
    pub cur: Current,
    peer: Option<IpAddr>,
    user_agent: String,
    same_origin: bool,
}

impl FromRequestParts<Arc<ConsoleState>> for Console {
    type Rejection = Fail;

    async fn from_request_parts(
        parts: &mut Parts,
        cs: &Arc<ConsoleState>,
    ) -> Result<Self, Self::Rejection> {
        // After signing in, back to the page asked for (GETs only: a form's data is gone).
        let next = (parts.method == axum::http::Method::GET).then(|| {
            let pq = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            format!("/console{pq}")
        });
        let Some(sid) = session::cookie(&parts.headers) else {
            return Err(Fail::SignIn {
                expired: false,
                next,
            });
        };
        let cur = cs
            .sessions
            .get(&sid, Instant::now())
            .map_err(|m| Fail::SignIn {
                expired: m == Missing::Expired,
                next,
            })?;
        Ok(Console {
            cs: cs.clone(),
            sid,
            cur,
            peer: peer(parts),
            user_agent: user_agent(parts),
            same_origin: session::same_origin(&parts.headers, session::authority(parts), cs.scheme),
        })
    }
}

fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

fn user_agent(parts: &Parts) -> String {
    parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

impl Console {
    /// The fields of a state-changing form, once it is shown to come from a console page of
    /// this session: same origin, and the session's CSRF token.
    pub fn form(&self, body: &[u8]) -> Result<Form, Fail> {
        if !self.same_origin {
            return Err(Fail::Forged(
                "the form was not sent from a page of this console",
            ));
        }
        let form = Form::parse(body);
        if !session::csrf_matches(&self.cur.csrf, form.get("csrf")) {
            return Err(Fail::Forged(
                "the form's CSRF token is missing or not this session's; reload the page",
            ));
        }
        Ok(form)
    }

    /// A `multipart/form-data` form (one with a file field), checked like [`Console::form`].
    /// Returns the text fields and the bytes of the file field `file`, if one was chosen.
    pub async fn upload(
        &self,
        mut mp: axum::extract::Multipart,
    ) -> Result<(Form, Option<zeroize::Zeroizing<Vec<u8>>>), Fail> {
        if !self.same_origin {
            return Err(Fail::Forged(
                "the form was not sent from a page of this console",
            ));
        }
        let bad = |e: axum::extract::multipart::MultipartError| Fail::BadForm(e.body_text());
        let (mut fields, mut file) = (Vec::new(), None);
        while let Some(field) = mp.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or("").to_string();
            if field.file_name().is_some() {
                let bytes = zeroize::Zeroizing::new(field.bytes().await.map_err(bad)?.to_vec());
                if name == "file" && !bytes.is_empty() {
                    file = Some(bytes);
                }
            } else {
                fields.push((name, field.text().await.map_err(bad)?));
            }
        }
        let form = Form::from_pairs(fields);
        if !session::csrf_matches(&self.cur.csrf, form.get("csrf")) {
            return Err(Fail::Forged(
                "the form's CSRF token is missing or not this session's; reload the page",
            ));
        }
        Ok((form, file))
    }

    /// Runs an action as the signed-in account.
    pub async fn call(
        &self,
        product: Product,
        action: &str,
        params: Value,
    ) -> Result<Fields, Error> {
        let who = Requester {
            secret_id: &self.cur.who.secret_id,
            region: &self.cur.region,
            peer: self.peer,
            user_agent: &self.user_agent,
        };
        run_as(&self.cs.app, &who, product, action, &params).await
    }

    /// An action of Keyward's extension API (`keyward:*`), its answer as one JSON value.
    pub async fn admin(&self, action: &str, params: Value) -> Result<Value, Error> {
        self.call(Product::Admin, action, params)
            .await
            .map(Value::Object)
    }

    pub async fn kms(&self, action: &str, params: Value) -> Result<Fields, Error> {
        self.call(Product::Kms, action, params).await
    }

    pub async fn ssm(&self, action: &str, params: Value) -> Result<Fields, Error> {
        self.call(Product::Ssm, action, params).await
    }

    /// After a form: back to a page, with the outcome shown there once.
    pub fn redirect(&self, to: &str, result: Result<String, Error>) -> Response {
        let flash = match result {
            Ok(done) => Flash::Done(done),
            Err(e) => Flash::Refused(format!(
                "{}: {}",
                envelope::error_code(&e),
                envelope::error_message(&e)
            )),
        };
        self.cs.sessions.set_flash(&self.sid, flash);
        Redirect::to(to).into_response()
    }

    /// A full page for this session.
    pub fn page(&self, title: &str, body: Markup) -> Response {
        let regions: Vec<&str> = self
            .cs
            .app
            .cfg
            .regions
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        layout::page(title, &self.cur, &regions, body).into_response()
    }

    /// The page a refused action leaves, with the API's code and message.
    pub fn refused(&self, title: &str, e: &Error) -> Response {
        let code = envelope::error_code(e);
        self.page(title, layout::refusal(code, &envelope::error_message(e)))
    }
}

/// Switches the region the console shows (only to a configured one).
async fn choose_region(c: Console, body: axum::body::Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let region = f.get("region");
    if !c.cs.app.cfg.regions.iter().any(|r| r.name == region) {
        return Err(Fail::BadForm(format!(
            "`{region}` is not a region of this deployment"
        )));
    }
    c.cs.sessions.set_region(&c.sid, region);
    Ok(Redirect::to("/console/keys").into_response())
}

/// A string field of an action's answer.
pub fn text<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A numeric field of an action's answer.
pub fn num(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or(0)
}

/// Unix seconds as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn when(secs: i64) -> String {
    if secs <= 0 {
        return String::new();
    }
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .map(|s| s + " UTC")
        .unwrap_or_default()
}
