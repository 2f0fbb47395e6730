//! A dependency-free mutation engine for dnsguard's fuzzers: seeds (built-in
//! messages plus files from folders) and mutations (bit flips, byte sets,
//! inserts, deletions, truncations, splices, interesting header counts and
//! compression pointers). Used by `fuzz-dnswire` (the parser and the TCP
//! framer) and `fuzz-native` (the native module's entry points, UDP and TCP).

use std::fs;
use std::path::Path;

pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
}

pub fn builtin_seeds() -> Vec<Vec<u8>> {
    vec![
        // query example.com A with EDNS (DO, ECS 192.0.2.0/24, padding)
        vec![
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o',
            b'm', 0, 0, 1, 0, 1, 0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 18, 0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2, 0, 12, 0,
            3, 0, 0, 0,
        ],
        // response with two compressed A answers and a CNAME
        vec![
            0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0, 3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l',
            b'e', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1, 0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xC0, 16, 0xC0, 16, 0, 1,
            0, 1, 0, 0, 1, 44, 0, 4, 93, 184, 216, 34, 0xC0, 16, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 93, 184, 216, 35,
        ],
    ]
}

pub fn load_seeds(dirs: &[String]) -> Vec<Vec<u8>> {
    let mut seeds = builtin_seeds();
    for d in dirs {
        let mut stack = vec![Path::new(d).to_path_buf()];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                if let Ok(rd) = fs::read_dir(&p) {
                    stack.extend(rd.flatten().map(|e| e.path()));
                }
            } else if let Ok(bytes) = fs::read(&p) {
                if bytes.len() <= 65_535 && !bytes.is_empty() {
                    seeds.push(bytes);
                }
            }
        }
    }
    seeds
}

pub fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds.get(rng.below(seeds.len())).cloned().unwrap_or_default();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                if let Some(b) = data.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 if len > 0 => {
                let i = rng.below(len);
                if let Some(b) = data.get_mut(i) {
                    *b = rng.next_u64() as u8;
                }
            }
            2 => {
                let i = rng.below(len + 1);
                data.insert(i, rng.next_u64() as u8);
            }
            3 if len > 0 => {
                data.remove(rng.below(len));
            }
            4 => data.truncate(rng.below(len + 1)),
            5 => {
                let other = seeds.get(rng.below(seeds.len())).cloned().unwrap_or_default();
                let cut = rng.below(other.len() + 1);
                let at = rng.below(len + 1);
                data.truncate(at);
                data.extend_from_slice(other.get(cut..).unwrap_or(&[]));
            }
            6 if len >= 12 => {
                // header counts: 0, 1, huge
                let field = 4 + 2 * rng.below(4);
                let v: u16 = [0u16, 1, 2, 0x7FFF, 0xFFFF].get(rng.below(5)).copied().unwrap_or(0);
                if let Some(s) = data.get_mut(field..field + 2) {
                    s.copy_from_slice(&v.to_be_bytes());
                }
            }
            7 if len > 2 => {
                // a compression pointer somewhere, to anywhere
                let i = rng.below(len - 1);
                let target = rng.below(len + 16) as u16;
                if let Some(s) = data.get_mut(i..i + 2) {
                    s.copy_from_slice(&(0xC000 | (target & 0x3FFF)).to_be_bytes());
                }
            }
            _ => {
                let n = rng.below(32);
                for _ in 0..n {
                    data.push(rng.next_u64() as u8);
                }
            }
        }
    }
    data.truncate(65_535);
    data
}

