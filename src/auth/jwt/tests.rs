//! Unit tests of the jwt mode: hostile tokens, policy, keys, cache.
