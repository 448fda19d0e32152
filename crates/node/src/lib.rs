//! Flotilla runtime.
