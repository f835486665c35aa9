//! Token machinery shared by the modes: JWKS caches, AEAD sealing, replay stores.

pub mod aead;
pub mod jwks;
pub mod memo;
pub mod seal;
