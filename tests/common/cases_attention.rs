//! GPU-vs-CPU cases for the attention kernels.

use super::Case;

/// Every attention case.
pub fn cases() -> Vec<Case> {
    Vec::new()
}
