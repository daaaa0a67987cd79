// a -> b through a plain `use`.
use crate::b::Thing;

pub fn f() -> Thing {
    Thing
}
