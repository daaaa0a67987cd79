// Fixture for `modcycles.py --self-test`: things that look like cycles and are not.
pub mod a;
pub mod b;
