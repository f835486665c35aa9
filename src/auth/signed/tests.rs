//! Unit tests of the signed filter.
