use super::Y;

pub fn g() -> Y {
    let _ = super::Thing;
    Y
}
