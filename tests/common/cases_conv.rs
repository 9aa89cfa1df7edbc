//! GPU-vs-CPU cases for the conv kernels.

use super::Case;

/// Every conv case.
pub fn cases() -> Vec<Case> {
    Vec::new()
}
