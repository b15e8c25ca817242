//! Time and identifiers as ports, so the demo and tests can drive a simulated clock and seeded ids.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};
use rand::{Rng, SeedableRng, rngs::StdRng};

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to: the demo's weeks pass in seconds.
#[derive(Debug)]
pub struct SimulatedClock {
    micros: AtomicI64,
}

impl SimulatedClock {
    pub fn starting_at(start: Timestamp) -> Self {
        SimulatedClock { micros: AtomicI64::new(start.as_microsecond()) }
    }

    pub fn advance(&self, by: SignedDuration) {
        let micros = by.as_micros() as i64;
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }

    pub fn set(&self, to: Timestamp) {
        self.micros.store(to.as_microsecond(), Ordering::SeqCst);
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_microsecond(self.micros.load(Ordering::SeqCst)).expect("simulated time in range")
    }
}

/// Makes identifiers: a prefix and a ULID (time-ordered, 26 characters of Crockford base32).
pub trait IdGenerator: Send + Sync {
    fn new_id(&self, prefix: &str, now: Timestamp) -> String;

    /// 32 random bytes, hex-encoded: for secrets generated on first start.
    fn random_hex(&self, bytes: usize) -> String;
}

/// Ids from the operating system's randomness.
#[derive(Debug, Default)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn new_id(&self, prefix: &str, now: Timestamp) -> String {
        let random: u128 = rand::rng().random();
        format_ulid(prefix, now, random)
    }

    fn random_hex(&self, bytes: usize) -> String {
        let mut buf = vec![0u8; bytes];
        rand::rng().fill(&mut buf[..]);
        hex::encode(buf)
    }
}

/// Ids from a seeded generator: the same seed gives the same ids, run after run.
#[derive(Debug)]
pub struct SeededIds {
    rng: Mutex<StdRng>,
}

impl SeededIds {
    pub fn new(seed: u64) -> Self {
        SeededIds { rng: Mutex::new(StdRng::seed_from_u64(seed)) }
    }
}

impl IdGenerator for SeededIds {
    fn new_id(&self, prefix: &str, now: Timestamp) -> String {
        let random: u128 = self.rng.lock().expect("id generator lock").random();
        format_ulid(prefix, now, random)
    }

    fn random_hex(&self, bytes: usize) -> String {
        let mut buf = vec![0u8; bytes];
        self.rng.lock().expect("id generator lock").fill(&mut buf[..]);
        hex::encode(buf)
    }
}

fn format_ulid(prefix: &str, now: Timestamp, random: u128) -> String {
    let millis = now.as_millisecond().max(0) as u64;
    let ulid = ulid::Ulid::from_parts(millis, random);
    format!("{prefix}_{}", ulid.to_string().to_ascii_lowercase())
}
