//! GPU-vs-CPU cases for the misc kernels.

use super::Case;

/// Every misc case.
pub fn cases() -> Vec<Case> {
    Vec::new()
}
