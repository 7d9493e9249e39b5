//! Placeholder so the workspace loads while the bench is written.
fn main() {}
