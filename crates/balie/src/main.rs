//! The balie command.
fn main() {}
