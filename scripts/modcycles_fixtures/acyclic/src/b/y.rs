/* A block comment: use super::x::g; */
pub struct Y;

pub fn h() {
    let _ = '{';
}

#[cfg(test)]
fn test_only() {
    let _ = super::x::g();
}
