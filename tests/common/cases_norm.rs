//! GPU-vs-CPU cases for the norm kernels.

use super::Case;

/// Every norm case.
pub fn cases() -> Vec<Case> {
    Vec::new()
}
