//! The one dispatch path every model surface calls (being gathered here): the call context, one
//! attempt per route kind, the failover loop, the request wrapper and the relays.

pub mod attempt;
pub mod routed;
pub mod target;
