//! The functions' one integration-test binary: their release-shaped binaries as Lambda
//! runs them. `bootstrap` checks what they need from glibc; `containment` runs the real
//! containment bootstrap against a Lambda Runtime API on loopback, with EC2 and SNS served
//! by a real moto server (installed by `.ci/run` into `.venv/ci`).

mod bootstrap;
mod containment;
mod detector;
// Flow-log records as the lab's target writes them, shared with the cis tests.
#[path = "../../../tests/support/flows.rs"]
mod flows;
#[path = "../../../tests/support/moto.rs"]
mod moto;
mod runtime_api;
