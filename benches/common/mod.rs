//! What the benches share besides `pipelines::testing` (their site,
//! `one_uplink`, and their frames, `raw::udp_flow`): refilling bursts and a
//! fixed random permutation. The big-table benches (`nat`, `scale`) also
//! share the whole established path, `common/path.rs`.

use pipelines::{Burst, HeapBuf, HeapPool};

/// `0..n` in a random order, the same every run (xorshift Fisher-Yates).
pub fn shuffled(n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

/// Fills bursts from templates, in the order `order` gives (a random
/// permutation for the big tables, so neither the templates nor the
/// sessions are walked in memory order).
pub struct Refill {
    pub pool: &'static HeapPool,
    pub templates: Vec<Vec<u8>>,
    pub order: Vec<u32>,
    pub next: usize,
}

impl Refill {
    pub fn new(templates: Vec<Vec<u8>>, shuffle: bool) -> Refill {
        let order = if shuffle {
            shuffled(templates.len())
        } else {
            (0..templates.len() as u32).collect()
        };
        Refill {
            pool: HeapPool::new_static(4 * pipelines::BURST_MAX + 64),
            templates,
            order,
            next: 0,
        }
    }

    pub fn refill(&mut self, burst: &mut Burst<HeapBuf>) {
        while !burst.is_full() {
            let t = &self.templates[self.order[self.next % self.order.len()] as usize];
            self.next += 1;
            burst.push(self.pool.alloc_with(t).expect("pool"));
        }
    }
}
