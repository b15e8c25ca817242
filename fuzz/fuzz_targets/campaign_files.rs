//! The shipped campaign files with one replaced or added from fuzzed text: its path on the first
//! line, its content after (a seed is a real file with its path on top).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| voronka_fuzz::campaign_files(input));
