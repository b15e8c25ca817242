//! A `POST /v1/events` body: the first byte says whether the batch counts as signed (odd) or not,
//! the rest is the body (so a seed is readable: `0{"events":[...]}`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Some((flag, body)) = input.split_first() {
        voronka_fuzz::event_batch(body, flag & 1 == 1);
    }
});
