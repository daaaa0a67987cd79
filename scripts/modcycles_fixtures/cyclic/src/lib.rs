// Fixture for `modcycles.py --self-test`: two cycles the checker must find.
pub mod a;
pub mod b;
