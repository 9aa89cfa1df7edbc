//! Tile heights of the tiled GEMM (`gemm_tiled.wgsl`): 64, 32 or 16 rows by 64 columns.

/// The heights the tiled kernel is built in, tallest first (16 rows per `ROWS` of the WGSL).
pub const TILE_HEIGHTS: [usize; 3] = [64, 32, 16];

/// The tallest tile that computes at most a quarter more rows than the `m` asked for
/// (`forced`: the context's override, for tests and `bench ops --compare-tiles`). A taller
/// tile reuses each staged weight value for more rows, but it computes all of them: a
/// 64-row tile does 4x the work for the 16 positions of the UNet's deepest level at 256 px,
/// and 128 rows for cross-attention's 77 tokens (32-row tiles: 96).
pub fn tile_rows(m: usize, forced: Option<usize>) -> usize {
    if let Some(rows) = forced {
        return rows;
    }
    TILE_HEIGHTS[..2].iter().copied().find(|&h| m.div_ceil(h) * h * 4 <= m * 5).unwrap_or(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_follow_the_rows_they_would_waste() {
        // (m, tile): the UNet's positions at 512 px and 256 px (batch 1 and 2), text tokens.
        for (m, rows) in [(4096, 64), (64, 64), (128, 64), (16, 16), (32, 32), (4, 16), (1, 16), (77, 32), (154, 64), (80, 32), (100, 16), (48, 16)] {
            assert_eq!(tile_rows(m, None), rows, "m = {m}");
        }
        assert_eq!(tile_rows(4096, Some(16)), 16);
    }
}
