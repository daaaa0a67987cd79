// Only a comment names crate::a::f, and a string "crate::a::f()"; the parent
// using its children and the children using the parent is not a sibling cycle.
pub mod x;
pub mod y;

pub use y::Y;

pub struct Thing;

pub fn doc() -> &'static str {
    "use crate::a::f; crate::a::f()"
}

pub fn uses_child() -> Y {
    x::g()
}

#[cfg(test)]
mod tests {
    use crate::a::f;

    #[test]
    fn t() {
        let _ = f();
        let _ = super::y::h();
    }
}

// A test-only file module: its uses (crate::a, siblings) are not the crate's.
#[cfg(test)]
mod file_tests;
