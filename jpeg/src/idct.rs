//! Inverse DCTs that produce a block at 1/8, 1/4 or 1/2 size straight from its lowest
//! N×N coefficients: f(x, y) = 1/4 Σ C(u) C(v) F(v, u) cos((2x+1)uπ/2N) cos((2y+1)vπ/2N),
//! which is the 8×8 inverse DCT's low-pass part sampled at N×N (so a flat block keeps its
//! level at every size). Outputs are in eighths of a level, minus 128 levels, not rounded or
//! clamped yet: a decoder that learns a block's true DC level later can still add it exactly
//! (a DC step of 1 moves every sample by exactly `quant[0]` eighths).

/// `keep` entry of a coefficient that is read and dropped.
pub(super) const DROP: u8 = u8::MAX;

/// Zigzag position → natural (row-major) position in the 8×8 block.
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63,
];

/// The output block's side (1, 2 or 4) and which coefficients it needs.
#[derive(Clone, Copy)]
pub(super) struct Scale {
    pub side: usize,
    /// By zigzag position: the coefficient's slot in an N×N row-major array, or `DROP`.
    pub keep: [u8; 64],
    /// By slot: the coefficient's zigzag position.
    pub zigzag: [u8; 16],
    /// The highest zigzag position kept.
    pub last_kept: usize,
}

impl Scale {
    /// For a decode at `eighths`/8 of full size: 1, 2 or 4.
    pub fn new(eighths: u32) -> Option<Self> {
        let side = match eighths {
            1 | 2 | 4 => eighths as usize,
            _ => return None,
        };
        let mut keep = [DROP; 64];
        let mut zigzag = [0u8; 16];
        for (zz, &natural) in ZIGZAG.iter().enumerate() {
            let (row, col) = (usize::from(natural) / 8, usize::from(natural) % 8);
            if row < side && col < side {
                let slot = row * side + col;
                keep[zz] = slot as u8;
                zigzag[slot] = zz as u8;
            }
        }
        let last_kept = keep.iter().rposition(|&slot| slot != DROP).unwrap_or(0);
        Some(Self { side, keep, zigzag, last_kept })
    }

    /// Writes the block (`side`² values, row-major) from its dequantised coefficients.
    #[inline]
    pub fn inverse(&self, coefficients: &[i32; 16], any_ac: bool, out: &mut [i16]) {
        if !any_ac {
            out.fill(saturate(coefficients[0]));
            return;
        }
        match self.side {
            2 => {
                let [a, b, c, d] = [coefficients[0], coefficients[1], coefficients[2], coefficients[3]];
                out[0] = saturate(a.wrapping_add(b).wrapping_add(c).wrapping_add(d));
                out[1] = saturate(a.wrapping_sub(b).wrapping_add(c).wrapping_sub(d));
                out[2] = saturate(a.wrapping_add(b).wrapping_sub(c).wrapping_sub(d));
                out[3] = saturate(a.wrapping_sub(b).wrapping_sub(c).wrapping_add(d));
            }
            4 => inverse_4x4(coefficients, out),
            _ => out.fill(saturate(coefficients[0])),
        }
    }
}

#[inline(always)]
fn saturate(value: i32) -> i16 {
    value.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// C(u)·cos((2x+1)uπ/8)/2 by [x][u], with C(0) = 1/√2 and C(u) = 1 otherwise.
const BASIS_4: [[f32; 4]; 4] = {
    const D: f32 = 0.353_553_38; // 1/(2√2)
    const A: f32 = 0.461_939_77; // cos(π/8)/2
    const B: f32 = 0.191_341_72; // cos(3π/8)/2
    [[D, A, D, B], [D, B, -D, -A], [D, -B, -D, A], [D, -A, D, -B]]
};

/// [`BASIS_4`] by [u][x]: a row of coefficients times it gives a row of samples lane by lane.
const BASIS_4_BY_FREQUENCY: [[f32; 4]; 4] = {
    let mut out = [[0f32; 4]; 4];
    let mut u = 0;
    while u < 4 {
        let mut x = 0;
        while x < 4 {
            out[u][x] = BASIS_4[x][u];
            x += 1;
        }
        u += 1;
    }
    out
};

/// The 4×4 case, separably: rows (over u), then columns (over v), each as four-lane
/// multiply-adds the compiler turns into SIMD. The sums run in the same order as a scalar
/// dot product, so the result is the same to the bit.
fn inverse_4x4(coefficients: &[i32; 16], out: &mut [i16]) {
    let Some(out) = out.get_mut(..16) else { return };
    let mut rows = [[0f32; 4]; 4]; // [v][x]
    for (v, row) in rows.iter_mut().enumerate() {
        for (u, basis) in BASIS_4_BY_FREQUENCY.iter().enumerate() {
            let f = coefficients[v * 4 + u] as f32;
            for (value, b) in row.iter_mut().zip(basis) {
                *value += f * b;
            }
        }
    }
    for (y, out_row) in out.chunks_exact_mut(4).enumerate() {
        let mut samples = [0f32; 4];
        for (v, row) in rows.iter().enumerate() {
            let b = BASIS_4[y][v];
            for (sample, r) in samples.iter_mut().zip(row) {
                *sample += b * r;
            }
        }
        // In eighths, rounded to nearest (the shift keeps the truncating conversion on
        // positive values for every sample that is not clamped to 0 anyway).
        for (dst, sample) in out_row.iter_mut().zip(samples) {
            *dst = saturate(((sample * 8.0 + 8192.5) as i32).saturating_sub(8192));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full 8×8 inverse DCT of JPEG, in floating point, as the reference.
    fn full_idct(natural: &[f32; 64]) -> [f32; 64] {
        let c = |u: usize| if u == 0 { core::f32::consts::FRAC_1_SQRT_2 } else { 1.0 };
        let mut out = [0f32; 64];
        for y in 0..8 {
            for x in 0..8 {
                let mut sum = 0.0;
                for v in 0..8 {
                    for u in 0..8 {
                        sum += c(u)
                            * c(v)
                            * natural[v * 8 + u]
                            * (((2 * x + 1) * u) as f32 * core::f32::consts::PI / 16.0).cos()
                            * (((2 * y + 1) * v) as f32 * core::f32::consts::PI / 16.0).cos();
                    }
                }
                out[y * 8 + x] = sum / 4.0;
            }
        }
        out
    }

    /// A block whose coefficients sit only in the lowest N×N frequencies, decoded at every
    /// scale, matches the full inverse DCT averaged over the covered pixels closely.
    #[test]
    fn scaled_blocks_match_the_full_inverse_dct_of_smooth_content() {
        let natural: [(usize, f32); 4] = [(0, 320.0), (1, -60.0), (8, 40.0), (9, 12.0)];
        let mut full_in = [0f32; 64];
        for &(i, v) in &natural {
            full_in[i] = v;
        }
        let full = full_idct(&full_in);
        for side in [1usize, 2, 4] {
            let scale = Scale::new(side as u32).expect("scale");
            let mut coefficients = [0i32; 16];
            for (zz, &nat) in ZIGZAG.iter().enumerate() {
                let slot = scale.keep[zz];
                if slot != DROP {
                    coefficients[usize::from(slot)] = full_in[usize::from(nat)] as i32;
                }
            }
            let mut out = vec![0i16; side * side];
            scale.inverse(&coefficients, side > 1, &mut out);
            let cell = 8 / side;
            for y in 0..side {
                for x in 0..side {
                    let mut mean = 0.0;
                    for yy in 0..cell {
                        for xx in 0..cell {
                            mean += full[(y * cell + yy) * 8 + x * cell + xx];
                        }
                    }
                    mean /= (cell * cell) as f32;
                    let got = f32::from(out[y * side + x]) / 8.0;
                    assert!((got - mean).abs() < 4.0, "side {side} ({x},{y}): {got} against {mean}");
                }
            }
        }
    }

    #[test]
    fn extreme_coefficients_never_overflow_and_a_flat_block_saturates() {
        for side in [1u32, 2, 4] {
            let scale = Scale::new(side).expect("scale");
            let mut out = vec![0i16; (side * side) as usize];
            let mut flat = [0i32; 16];
            for (extreme, saturated) in [(i32::MAX, i16::MAX), (i32::MIN, i16::MIN)] {
                flat[0] = extreme;
                scale.inverse(&flat, false, &mut out);
                assert!(out.iter().all(|&v| v == saturated), "side {side}: {out:?}");
            }
            for extreme in [i32::MIN, i32::MIN / 2, i32::MAX / 2, i32::MAX] {
                scale.inverse(&[extreme; 16], true, &mut out);
                scale.inverse(&[extreme, extreme / -2, extreme, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], true, &mut out);
            }
        }
    }

    #[test]
    fn a_flat_block_keeps_its_level_at_every_scale() {
        for side in [1u32, 2, 4] {
            let scale = Scale::new(side).expect("scale");
            let mut coefficients = [0i32; 16];
            coefficients[0] = 8 * 50;
            let mut out = vec![0i16; (side * side) as usize];
            scale.inverse(&coefficients, false, &mut out);
            assert!(out.iter().all(|&v| v == 50 * 8));
            scale.inverse(&coefficients, true, &mut out);
            assert!(out.iter().all(|&v| v == 50 * 8), "side {side}: {out:?}");
        }
    }
}
