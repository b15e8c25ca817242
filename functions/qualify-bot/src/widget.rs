//! The chat widget's script and styles, served by the bot's own API so one script tag on any
//! page works wherever Voronka is deployed (`<script src="<api>/v1/bot/widget.js"
//! data-script="b2b_demo" async>`). Plain JavaScript and CSS, no build step.

use axum::http::header;
use axum::response::IntoResponse;

const SCRIPT: &str = include_str!("../assets/widget.js");
const STYLES: &str = include_str!("../assets/widget.css");
/// Short enough that a new release reaches pages within minutes.
const CACHE: &str = "public, max-age=300";

pub async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, CACHE)], SCRIPT)
}

pub async fn styles() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, CACHE)], STYLES)
}
