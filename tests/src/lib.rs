//! p2law-tests: helpers shared by the cross-crate tests in `tests/tests/`.
