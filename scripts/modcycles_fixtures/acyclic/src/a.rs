use crate::b::Thing;

pub fn f() -> Thing {
    Thing
}
