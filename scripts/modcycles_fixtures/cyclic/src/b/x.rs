use super::Y;

pub fn g() -> Y {
    Y
}
