//! A plain HTML form's urlencoded body, checked against every shipped form.
#![no_main]

use lead_capture::http_util::BodyFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| voronka_fuzz::form_body(BodyFormat::UrlEncoded, body));
