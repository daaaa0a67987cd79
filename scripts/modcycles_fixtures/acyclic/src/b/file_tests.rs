use super::x::g;
use crate::a::f;

fn t() {
    let _ = f();
    let _ = g();
}
