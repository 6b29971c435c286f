"""The package manager, TensorFlow-free: manifests, registries and their index, version
resolution, the one HTTP policy, verified downloads, the content-addressed cache,
installing, projects and lockfiles, bundles for air-gapped machines.
"""
