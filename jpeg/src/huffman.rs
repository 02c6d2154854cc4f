//! Huffman decoding of the entropy-coded data: the tables, a 64-bit bit reader that removes
//! the 0xFF00 byte stuffing, and the decoding of one block's coefficients.
//!
//! Entropy decoding is nearly all of the time of a DCT-scaled decode, so the common case is
//! made cheap: a 9-bit lookahead resolves most codes in one table read, and for AC
//! coefficients most (run, size, value) triples too; longer codes take the canonical-code
//! path. A file with a bad code is reported, never read past.

use super::error::DecodeError;
use super::idct::{Scale, DROP};

/// Bits resolved by one table lookup.
const LOOKUP_BITS: u32 = 9;
const LOOKUP_SIZE: usize = 1 << LOOKUP_BITS;

/// The stream breaks a rule of the format (a code no table has, a coefficient past 63).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Corrupt;

impl From<Corrupt> for DecodeError {
    fn from(_: Corrupt) -> Self {
        DecodeError::Corrupt("the entropy-coded data breaks the format or ends early")
    }
}

#[derive(Clone)]
pub(super) struct HuffmanTable {
    /// By the next 9 bits: `code length << 8 | symbol`; 0 when the code is longer.
    lookup: Box<[u16; LOOKUP_SIZE]>,
    /// AC tables, by the next 9 bits: `value << 8 | run << 4 | bits used`, when the code and
    /// the value's bits both fit in the lookahead and the value in -128..=127; else 0.
    fast_ac: Box<[i16; LOOKUP_SIZE]>,
    /// AC tables, by the next 9 bits, for coefficients that are only parsed: `advance << 5 |
    /// bits used` (code and value bits) whenever the code fits in the lookahead, whatever the
    /// value's size; `advance` is run + 1, [`ZERO_RUN`] or [`END_OF_BLOCK`]. 0 for longer codes.
    skip_ac: Box<[u16; LOOKUP_SIZE]>,
    /// One past the last code of each length, left-aligned to 16 bits.
    max_code: [u32; 17],
    /// Index of a code's symbol in `values`: code + delta[length].
    delta: [i32; 17],
    values: [u8; 256],
}

impl HuffmanTable {
    /// Builds a table from a DHT segment's code counts per length and symbols. `None` when the
    /// counts describe more codes than fit (a corrupt table).
    pub fn new(counts: &[u8; 16], symbols: &[u8], is_ac: bool) -> Option<Self> {
        let mut lookup = Box::new([0u16; LOOKUP_SIZE]);
        let mut max_code = [0u32; 17];
        let mut delta = [0i32; 17];
        let mut values = [0u8; 256];
        if symbols.len() > values.len() {
            return None;
        }
        values[..symbols.len()].copy_from_slice(symbols);

        let mut code = 0u32;
        let mut index = 0usize;
        for length in 1..=16u32 {
            let count = usize::from(counts[length as usize - 1]);
            delta[length as usize] = index as i32 - code as i32;
            for _ in 0..count {
                let symbol = *symbols.get(index)?;
                if length <= LOOKUP_BITS {
                    let spare = LOOKUP_BITS - length;
                    let first = (code << spare) as usize;
                    let entry = (length as u16) << 8 | u16::from(symbol);
                    lookup.get_mut(first..first + (1 << spare))?.fill(entry);
                }
                code += 1;
                index += 1;
            }
            if code > 1 << length {
                return None;
            }
            max_code[length as usize] = code << (16 - length);
            code <<= 1;
        }

        let mut fast_ac = Box::new([0i16; LOOKUP_SIZE]);
        let mut skip_ac = Box::new([0u16; LOOKUP_SIZE]);
        if is_ac {
            for (slot, &entry) in skip_ac.iter_mut().zip(lookup.iter()) {
                if entry == 0 {
                    continue;
                }
                let length = entry >> 8;
                let (run, size) = ((entry & 0xFF) >> 4, entry & 15);
                *slot = match (run, size) {
                    (15, 0) => ZERO_RUN << 5 | length,
                    (_, 0) => END_OF_BLOCK << 5 | length,
                    _ => (run + 1) << 5 | (length + size),
                };
            }
            for (bits, slot) in fast_ac.iter_mut().enumerate() {
                let entry = lookup[bits];
                if entry == 0 {
                    continue;
                }
                let length = u32::from(entry >> 8);
                let (run, size) = (u32::from(entry as u8 >> 4), u32::from(entry as u8 & 15));
                if size == 0 || length + size > LOOKUP_BITS {
                    continue;
                }
                let magnitude = ((bits as u32) << length & (LOOKUP_SIZE as u32 - 1)) >> (LOOKUP_BITS - size);
                let value = extend(magnitude as i32, size);
                if (-128..=127).contains(&value) {
                    *slot = (value * 256 + (run << 4 | (length + size)) as i32) as i16;
                }
            }
        }
        Some(Self { lookup, fast_ac, skip_ac, max_code, delta, values })
    }
}

/// A `size`-bit magnitude category's bits to the signed value (JPEG's EXTEND).
#[inline(always)]
fn extend(bits: i32, size: u32) -> i32 {
    if bits < 1 << (size - 1) {
        bits - (1 << size) + 1
    } else {
        bits
    }
}

/// Reads the entropy-coded data MSB first, removing stuffed zero bytes. At a marker (the end
/// of the data, or a restart marker) it stops and supplies zero bits, counting them, so that a
/// decoder which needs more data than there is can tell ([`BitReader::overran`]).
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Unread bits, left-aligned.
    acc: u64,
    bits: u32,
    /// Bits ever put into `acc` (stuffing removed): the stream position is `loaded - bits`.
    loaded: u64,
    /// Zero bytes supplied after the data ended.
    padding: u64,
    /// The restart marker expected next (RST0..RST7 in turn).
    next_restart: u8,
}

impl<'a> BitReader<'a> {
    /// A reader from `start` in `data` (which begins at the entropy-coded data).
    pub fn new(data: &'a [u8], start: usize) -> Self {
        Self { data, pos: start, acc: 0, bits: 0, loaded: 0, padding: 0, next_restart: 0 }
    }

    /// A reader from `start`, the byte after the restart marker that begins restart interval
    /// number `interval` (0 for the data's start): the next marker expected is RST(interval mod 8).
    pub fn after_restart(data: &'a [u8], start: usize, interval: usize) -> Self {
        Self { next_restart: (interval % 8) as u8, ..Self::new(data, start) }
    }

    /// Bits consumed since `start`, stuffing removed.
    #[inline(always)]
    pub fn position(&self) -> u64 {
        self.loaded - u64::from(self.bits)
    }

    /// The next byte not yet read into the bit buffer.
    pub fn next_byte(&self) -> usize {
        self.pos
    }

    /// Whether the decoder used bits past the end of the data.
    #[inline(always)]
    pub fn overran(&self) -> bool {
        self.padding * 8 > u64::from(self.bits)
    }

    /// Moves past a restart marker: drops the rest of the current byte and expects the next
    /// `RSTn`. An interval that needed more data than it had is an error.
    pub fn restart(&mut self) -> Result<(), Corrupt> {
        if self.overran() {
            return Err(Corrupt);
        }
        self.acc = 0;
        self.loaded -= u64::from(self.bits);
        self.bits = 0;
        self.padding = 0;
        match self.data.get(self.pos..self.pos + 2) {
            Some(&[0xFF, marker]) if marker == 0xD0 + self.next_restart => {
                self.pos += 2;
                self.next_restart = (self.next_restart + 1) % 8;
                Ok(())
            }
            _ => Err(Corrupt),
        }
    }

    /// Makes at least 32 bits available: enough for one code and its value.
    #[inline(always)]
    pub fn ensure(&mut self) {
        if self.bits < 32 {
            self.refill();
        }
    }

    /// One bit.
    #[inline(always)]
    pub fn bit(&mut self) -> bool {
        let bit = self.acc >> 63 != 0;
        self.consume(1);
        bit
    }

    /// `count` (1..=14) bits as an unsigned number.
    #[inline(always)]
    pub fn bits(&mut self, count: u32) -> u32 {
        let bits = (self.acc >> (64 - count)) as u32;
        self.consume(count);
        bits
    }

    /// Makes at least 57 bits available.
    #[inline(always)]
    fn refill(&mut self) {
        // Eight bytes at once when none of them is 0xFF (no stuffing, no marker).
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let word = u64::from_be_bytes(word);
            let inverted = !word;
            let has_ff = inverted.wrapping_sub(0x0101_0101_0101_0101) & word & 0x8080_8080_8080_8080 != 0;
            if !has_ff {
                let bytes = (64 - self.bits) / 8;
                let added = bytes * 8;
                self.acc |= (word >> (64 - added)) << (64 - self.bits - added);
                self.bits += added;
                self.loaded += u64::from(added);
                self.pos += bytes as usize;
                return;
            }
        }
        self.refill_bytewise();
    }

    #[cold]
    fn refill_bytewise(&mut self) {
        while self.bits <= 56 {
            let mut byte = 0u8;
            match self.data.get(self.pos) {
                Some(0xFF) => {
                    if self.data.get(self.pos + 1) == Some(&0) {
                        byte = 0xFF;
                        self.pos += 2;
                    } else {
                        self.padding += 1;
                    }
                }
                Some(&value) => {
                    byte = value;
                    self.pos += 1;
                }
                None => self.padding += 1,
            }
            self.acc |= u64::from(byte) << (56 - self.bits);
            self.bits += 8;
            self.loaded += 8;
        }
    }

    #[inline(always)]
    fn peek_lookup(&self) -> usize {
        (self.acc >> (64 - LOOKUP_BITS)) as usize
    }

    #[inline(always)]
    fn consume(&mut self, count: u32) {
        self.acc <<= count;
        self.bits -= count;
    }

    /// One Huffman symbol. Needs 16 bits available.
    #[inline(always)]
    pub fn symbol(&mut self, table: &HuffmanTable) -> Result<u8, Corrupt> {
        let entry = table.lookup[self.peek_lookup()];
        if entry != 0 {
            self.consume(u32::from(entry >> 8));
            return Ok(entry as u8);
        }
        let top = (self.acc >> 48) as u32;
        for length in LOOKUP_BITS + 1..=16 {
            if top < table.max_code[length as usize] {
                let index = (top >> (16 - length)) as i32 + table.delta[length as usize];
                self.consume(length);
                return table.values.get(index as usize).copied().ok_or(Corrupt);
            }
        }
        Err(Corrupt)
    }

    /// An AC code and its value in one lookup, when both fit in the lookahead and the value in
    /// -128..=127 (most coefficients): (run, value), consumed. `None` (nothing consumed): take
    /// the [`BitReader::symbol`] path. Needs 16 bits available.
    #[inline(always)]
    pub fn fast_ac(&mut self, table: &HuffmanTable) -> Option<(usize, i32)> {
        let fast = table.fast_ac[self.peek_lookup()];
        if fast == 0 {
            return None;
        }
        self.consume((fast & 15) as u32);
        Some((((fast >> 4) & 15) as usize, i32::from(fast >> 8)))
    }

    /// A `size`-bit signed value. Needs `size` bits available; `size` is 1..=15.
    #[inline(always)]
    pub fn value(&mut self, size: u32) -> i32 {
        let bits = (self.acc >> (64 - size)) as i32;
        self.consume(size);
        extend(bits, size)
    }

    /// Decodes one block. The DC predictor is updated; the coefficients `scale` keeps are
    /// dequantised into `out[slot]` (which the caller zeroed), all others are read and dropped. Returns whether any kept AC
    /// coefficient is non-zero.
    #[inline(always)]
    pub fn block(
        &mut self,
        dc: &HuffmanTable,
        ac: &HuffmanTable,
        predictor: &mut i32,
        quant: &[u16; 64],
        scale: &Scale,
        out: &mut [i32],
    ) -> Result<bool, Corrupt> {
        let (keep, last_kept) = (&scale.keep, scale.last_kept);
        if self.bits < 32 {
            self.refill();
        }
        let size = u32::from(self.symbol(dc)?);
        if size > 15 {
            return Err(Corrupt);
        }
        if size > 0 {
            let diff = self.value(size);
            *predictor = predictor.wrapping_add(diff);
        }
        out[0] = predictor.wrapping_mul(i32::from(quant[0]));

        let mut any_ac = false;
        let mut k = 1usize;
        while k <= last_kept {
            self.ensure();
            let value = if let Some((run, value)) = self.fast_ac(ac) {
                k += run;
                value
            } else {
                let symbol = self.symbol(ac)?;
                let (run, size) = (usize::from(symbol >> 4), u32::from(symbol & 15));
                if size == 0 {
                    if run != 15 {
                        return Ok(any_ac); // end of block
                    }
                    k += 16;
                    continue;
                }
                k += run;
                self.value(size)
            };
            let Some(&slot) = keep.get(k) else { return Err(Corrupt) };
            if slot != DROP {
                out[usize::from(slot)] = value.wrapping_mul(i32::from(quant[k]));
                any_ac = true;
            }
            k += 1;
        }
        // Past the last kept coefficient: the rest is only parsed, a code and its value's bits
        // skipped in one step.
        while k < 64 {
            self.ensure();
            let skip = ac.skip_ac[self.peek_lookup()];
            if skip != 0 {
                let advance = skip >> 5;
                self.consume(u32::from(skip & 31));
                match advance {
                    END_OF_BLOCK => break,
                    // As in the slow path: sixteen zeros may run past the end unchecked.
                    ZERO_RUN => {
                        k += 16;
                        continue;
                    }
                    _ => k += usize::from(advance),
                }
            } else {
                let symbol = self.symbol(ac)?;
                let (run, size) = (usize::from(symbol >> 4), u32::from(symbol & 15));
                if size == 0 {
                    if run != 15 {
                        break; // end of block
                    }
                    k += 16;
                    continue;
                }
                k += run + 1;
                self.consume(size);
            }
            if k > 64 {
                return Err(Corrupt);
            }
        }
        Ok(any_ac)
    }
}

/// `skip_ac`'s advance for an end of block, and for sixteen zeros (ZRL).
const END_OF_BLOCK: u16 = 127;
const ZERO_RUN: u16 = 126;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_subscribed_tables_are_refused() {
        let mut counts = [0u8; 16];
        counts[0] = 3; // three 1-bit codes cannot exist
        assert!(HuffmanTable::new(&counts, &[1, 2, 3], false).is_none());
        counts[0] = 2;
        assert!(HuffmanTable::new(&counts, &[1, 2], false).is_some());
    }

    #[test]
    fn stuffed_bytes_are_removed_and_positions_count_data_bits() {
        // 0xFF 0x00 is one 0xFF data byte; then the end-of-image marker.
        let data = [0xAB, 0xFF, 0x00, 0xCD, 0xFF, 0xD9];
        let mut reader = BitReader::new(&data, 0);
        reader.refill();
        assert_eq!(reader.acc >> 40, 0xAB_FF_CD);
        reader.consume(24);
        assert_eq!(reader.position(), 24);
        assert!(reader.padding > 0, "zeros are supplied at the marker");
        assert!(!reader.overran());
        reader.consume(8);
        assert!(reader.overran(), "bits past the end were used");
    }

    #[test]
    fn parsed_only_coefficients_skip_exactly_their_bits_whatever_their_size() {
        // AC codes of 2 bits in symbol order: EOB 00, ZRL 01, (run 0, size 10) 10,
        // (run 3, size 1) 11. DC: one 1-bit code for size 0.
        let mut counts = [0u8; 16];
        counts[1] = 4;
        let ac = HuffmanTable::new(&counts, &[0x00, 0xF0, 0x0A, 0x31], true).expect("AC table");
        let mut dc_counts = [0u8; 16];
        dc_counts[0] = 1;
        let dc = HuffmanTable::new(&dc_counts, &[0], false).expect("DC table");
        // DC 0; 513 at k=1 (12 bits: beyond the one-lookup fast path); 16 zeros; 1 at k=21; EOB.
        let bits = ["0", "10", "1000000001", "01", "11", "1", "00"].concat();
        let mut data: Vec<u8> = bits
            .as_bytes()
            .chunks(8)
            .map(|chunk| chunk.iter().enumerate().fold(0u8, |byte, (i, &bit)| byte | u8::from(bit == b'1') << (7 - i)))
            .collect();
        data.extend([0u8; 16]);
        let quant = [1u16; 64];
        for side in [1u32, 2, 4] {
            let scale = Scale::new(side).expect("scale");
            let mut reader = BitReader::new(&data, 0);
            let (mut predictor, mut out) = (0, [0i32; 16]);
            let any_ac = reader.block(&dc, &ac, &mut predictor, &quant, &scale, &mut out).expect("a valid block");
            assert_eq!(reader.position(), bits.len() as u64, "side {side}: every bit of the block, no more");
            assert_eq!(any_ac, side > 1, "side {side}");
            if side > 1 {
                assert_eq!(out[1], 513, "side {side}: the kept coefficient");
            }
        }
    }

    #[test]
    fn symbols_longer_than_the_lookahead_decode_too() {
        // Lengths 1 and 12: symbol 7 is code 0, symbol 9 is 0b1000_0000_0000.
        let mut counts = [0u8; 16];
        counts[0] = 1;
        counts[11] = 1;
        let table = HuffmanTable::new(&counts, &[7, 9], false).expect("valid table");
        let data = [0b0100_0000, 0b0000_0000, 0x00, 0, 0, 0, 0, 0, 0];
        let mut reader = BitReader::new(&data, 0);
        reader.refill();
        assert_eq!(reader.symbol(&table), Ok(7));
        assert_eq!(reader.symbol(&table), Ok(9));
        assert_eq!(reader.position(), 13);
    }
}
