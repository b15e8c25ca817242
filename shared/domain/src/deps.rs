//! What the functions share, built once per container on Lambda and once per stack locally. Each
//! function's own deps hold `Deps` plus what only it needs, and dereference to it, so a handler
//! writes `deps.store` whichever function it belongs to.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::campaigns::Campaigns;
use crate::ports::{Clock, Queue, Store};
use crate::signing::Secrets;

/// The ports every function reaches the world through. The scheduler needs nothing more: it
/// reads no campaign file and signs nothing, so it has no access to the secrets.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
}

/// The ports, the campaign files and the secrets: what lead-capture, the evaluator and the sender
/// all need.
#[derive(Clone)]
pub struct Deps {
    pub ports: Ports,
    pub campaigns: Arc<Campaigns>,
    pub secrets: Arc<Secrets>,
}

impl Deref for Deps {
    type Target = Ports;

    fn deref(&self) -> &Ports {
        &self.ports
    }
}

impl DerefMut for Deps {
    fn deref_mut(&mut self) -> &mut Ports {
        &mut self.ports
    }
}
