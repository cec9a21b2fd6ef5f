//! The store's behaviours on a real PostgreSQL 15 server: a throwaway cluster per
//! test (scripts/postgres-cluster.sh), a fresh database per store.

mod behaviours;
mod cluster;
mod masters;

pub use cluster::Cluster;
