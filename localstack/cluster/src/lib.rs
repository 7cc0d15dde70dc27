//! Local Kubernetes cluster simulator (see issue 4). Work in progress.
