//! The CIRO worker: the GPU owner's agent ([`agent`]: `ciro-worker run`), its crash-safe
//! [`journal`], and the way from a hardware report to an eligible worker on chain
//! ([`onboard`]). Inference is `ciro-engine`'s.

pub mod agent;
pub mod journal;
pub mod onboard;
