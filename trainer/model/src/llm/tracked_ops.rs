//! Ops the training crate replaces with tracked versions of its own. This crate
//! builds without burn's autodiff, so an op whose backward should differ from the one
//! burn would derive (to keep less for the backward pass) is registered here at run
//! time by the training crate, keyed by its function type, which names the backend;
//! every backend without a registration, and inference, takes this crate's version.

use std::any::{Any, TypeId};
use std::sync::RwLock;

/// The registered ops: the function type, and the function boxed.
type Registry = Vec<(TypeId, Box<dyn Any + Send + Sync>)>;

static REGISTERED: RwLock<Registry> = RwLock::new(Vec::new());

/// Makes [`registered::<F>`](registered) return `op` (the last registration wins).
pub fn register<F: Copy + Send + Sync + 'static>(op: F) {
    let mut registered = REGISTERED.write().unwrap_or_else(|p| p.into_inner());
    registered.retain(|(kind, _)| *kind != TypeId::of::<F>());
    registered.push((TypeId::of::<F>(), Box::new(op)));
}

/// The op registered for function type `F`, if any.
pub fn registered<F: Copy + 'static>() -> Option<F> {
    let registered = REGISTERED.read().unwrap_or_else(|p| p.into_inner());
    registered
        .iter()
        .find(|(kind, _)| *kind == TypeId::of::<F>())
        .and_then(|(_, op)| op.downcast_ref::<F>().copied())
}
