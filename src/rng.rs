//! The peer's only source of randomness: a small PRNG seeded from the config, so a run is a
//! function of its seed and inputs.

/// xoshiro256** seeded through splitmix64.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

/// GUN's id alphabet: `0-9A-XZa-z` (GUN leaves out `Y`).
const ID_ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXZabcdefghijklmnopqrstuvwxyz";

impl Rng {
    /// A generator determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A number in `0..n`. `n` must be non-zero.
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for ids and fault schedules, and branch-free.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A GUN-style id of `len` characters. Each 64 random bits give up to 10 characters (61^10
    /// is below 2^64): each character is the next base-61 digit of the bits read as a fraction.
    pub fn id(&mut self, len: usize) -> String {
        let mut id = vec![0; len];
        self.fill_id(&mut id);
        String::from_utf8(id).expect("the id alphabet is ASCII")
    }

    /// Fills `out` with an id, as [`Rng::id`] makes one of its length (for an id that need not
    /// outlive the message it is written into, without allocating).
    pub fn fill_id(&mut self, out: &mut [u8]) {
        let mut bits = 0u64;
        for (i, slot) in out.iter_mut().enumerate() {
            if i % 10 == 0 {
                bits = self.next_u64();
            }
            let scaled = u128::from(bits) * ID_ALPHABET.len() as u128;
            *slot = ID_ALPHABET[(scaled >> 64) as usize];
            bits = scaled as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_ids_and_gun_alphabet() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let id = a.id(9);
        assert_eq!(id, b.id(9));
        assert_eq!(id.len(), 9);
        assert!(id.bytes().all(|c| c.is_ascii_alphanumeric() && c != b'Y'));
        assert_ne!(Rng::new(8).id(9), id);
        let long = a.id(25);
        assert_eq!(long.len(), 25);
        assert!(long.bytes().all(|c| ID_ALPHABET.contains(&c)));
    }

    #[test]
    fn ids_use_the_whole_alphabet_about_evenly() {
        let mut rng = Rng::new(1);
        let mut counts = [0u32; 61];
        for _ in 0..20_000 {
            for c in rng.id(9).bytes() {
                counts[ID_ALPHABET.iter().position(|&a| a == c).unwrap()] += 1;
            }
        }
        // 180,000 characters: about 2,951 each.
        assert!(
            counts.iter().all(|&n| (2_600..3_300).contains(&n)),
            "{counts:?}"
        );
    }
}
