//! placeholder: the OCI hook runner
