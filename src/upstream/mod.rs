//! Upstreams: the services byollm sends model requests to, and the egress guard in front of them.

pub mod egress;
