//! sim backend (placeholder until written).
