//! Who is asking and for which run: API keys and local session keys ([`auth`]), and the one
//! decision of whether a caller may act for a team, actor, principal, agent and run ([`authz`]).
//!
//! Must never: mint tokens, call STS or read request bodies. Depends on `config`, `principal`,
//! `error` and `secret`.

pub mod auth;
pub mod authz;
