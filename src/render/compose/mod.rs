//! The compose subset swarmlog reads: model, interpolation, loading, value syntaxes.
pub mod interpolate;
pub mod load;
pub mod model;
pub mod units;
