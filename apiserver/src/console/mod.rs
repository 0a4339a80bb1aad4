//! The web console's static assets, served under `/ui/` on the API server's address.
//!
//! The assets (one HTML page, one ES module, one stylesheet, written by hand: no Node toolchain
//! at build time) are built into the binary with `include_str!`. They carry no data, so they
//! are served without authentication; every data call the page makes is a Kubernetes API call
//! with the bearer token the user typed (kept in the browser's `sessionStorage`), through the
//! same authentication, authorization and audit as kubectl's. A strict Content-Security-Policy
//! allows scripts, styles and connections to this origin only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The path the console is served under.
pub const PATH: &str = "/ui/";

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");
const ICON: &str = include_str!("assets/icon.svg");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes: `/ui` (a redirect), `/ui/` and its assets.
pub fn router() -> axum::Router {
    axum::Router::new()
        .route("/ui", get(|| async { Redirect::permanent(PATH) }))
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/ui/icon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_assets_that_are_served() {
        for asset in ["console.js", "console.css", "icon.svg"] {
            assert!(INDEX.contains(&format!("/ui/{asset}")), "{asset}");
        }
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
    }
}
