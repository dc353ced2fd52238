"""Tests of the deployment files under deploy/ (Kubernetes manifests), read and schema-checked, not applied."""
