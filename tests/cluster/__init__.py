"""The multi-replica topology run for real on one machine: deploy/local/cluster.sh (PostgreSQL, replicas, nginx)."""
