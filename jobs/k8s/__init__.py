"""Kubernetes: KubeRay manifests rendered from a relay config, and their offline validation.

`render` writes a kustomization for one config; `kustomize` builds it the way `kubectl
kustomize` does (for the subset relay writes); `validate` checks every object as strictly as an
API server with the KubeRay v1.7.0 CRDs would, plus KubeRay's runtime rules and relay's policy.
"""
