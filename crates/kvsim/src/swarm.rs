//! Random KV workloads (todo).
