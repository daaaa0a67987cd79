// y -> x through a grouped, aliased `self` import used in a path.
use crate::b::{x::{self as xx}};

pub struct Y;

pub fn h() {
    let _ = xx::g();
}
