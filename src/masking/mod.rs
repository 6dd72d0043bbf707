//! PII masking (in progress).
