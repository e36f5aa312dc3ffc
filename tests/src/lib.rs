//! p2law-tests: end-to-end flows that cross crates (HTTP on a real socket, a real browser).
//! The command line's own end-to-end tests live with its binary in `backend/tests/cli.rs`.
