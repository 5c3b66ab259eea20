//! Nothing here: the conformance checks live in `tests/`.
