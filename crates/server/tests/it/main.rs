//! Balie server integration tests: one binary, each test on its own app and fresh database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod badinput;
mod brands;
mod browser;
mod edge;
mod fuzz;
mod spine;
mod support;
mod trust;
mod webhooks;
