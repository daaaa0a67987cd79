// b -> a through an inline path only; b/x -> b/y through this re-export.
pub mod x;
pub mod y;

pub use y::Y;

pub struct Thing;

pub fn back() {
    let _ = crate::a::f();
}
