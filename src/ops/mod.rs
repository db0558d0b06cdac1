//! Operator tools behind CLI commands: the customer's IAM set-up ([`aws_setup`]), credential and
//! first-call checks ([`doctor`]) and the model catalog report ([`models_report`]).
//!
//! Must never: be imported by the request path (only the CLI uses these).

pub mod aws_setup;
pub mod doctor;
pub mod models_report;
