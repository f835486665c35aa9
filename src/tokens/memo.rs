//! A bounded memo of credentials already verified (a bearer JWT, a sealed session cookie), so
//! the next request that carries the same bytes skips the signature check or the AEAD open.
//!
//! - **Exact bytes.** An entry keeps the whole credential and a hit compares it byte for byte:
//!   a credential that differs anywhere (a forged payload under a copied signature or tag) is a
//!   miss and is verified in full. The hash only picks the slots; it reads the credential's
//!   length and last 32 bytes (the signature or the AEAD tag, unpredictable for real
//!   credentials), so finding a slot costs the same for a 200-byte token and a 3 KB cookie.
//!   Crafted credentials that share a slot only cost misses, never a wrong hit.
//! - **No lock.** Two-way set-associative slots, each an `ArcSwapOption`: a lookup is two
//!   atomic loads and a comparison; an insert replaces an empty slot, else the older of the two.
//! - **Bounded.** `capacity` rounded up to a power of two, at most [`MAX_KEY`] bytes per key
//!   (longer credentials are never kept). The slot table is allocated on the first insert, so a
//!   config with thousands of routes that never see traffic costs nothing.
//! - What an entry may be used for (expiry, which keys verified it, the route's policy) is the
//!   caller's check on every hit; the memo only answers "these exact bytes were verified".

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

/// Longest credential kept, in bytes.
pub const MAX_KEY: usize = 4096;

/// One remembered credential and what verifying it established.
#[derive(Debug)]
pub struct Entry<V> {
    key: Box<[u8]>,
    pub value: V,
}

impl<V> std::ops::Deref for Entry<V> {
    type Target = V;
    fn deref(&self) -> &V {
        &self.value
    }
}

pub struct Memo<V> {
    slots: OnceLock<Box<[ArcSwapOption<Entry<V>>]>>,
    size: usize,
    seed: foldhash::fast::FixedState,
    /// Which way of a full pair the next insert replaces (alternating: roughly the older).
    flip: AtomicBool,
}

impl<V> std::fmt::Debug for Memo<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("size", &self.size)
            .field("len", &self.len())
            .finish()
    }
}

impl<V> Memo<V> {
    /// A memo of about `capacity` entries (0: nothing is kept).
    pub fn new(capacity: usize) -> Memo<V> {
        let size = match capacity {
            0 => 0,
            c => c.next_power_of_two().max(2),
        };
        Memo {
            slots: OnceLock::new(),
            size,
            seed: foldhash::fast::FixedState::with_seed(rand::random()),
            flip: AtomicBool::new(false),
        }
    }

    /// The two slots a key may live in.
    fn pair(&self, key: &[u8]) -> usize {
        let tail = &key[key.len().saturating_sub(32)..];
        let h = self.seed.hash_one((key.len(), tail)) as usize;
        h & (self.size - 1) & !1
    }

    /// The entry for exactly these bytes.
    pub fn get(&self, key: &[u8]) -> Option<Arc<Entry<V>>> {
        let slots = self.slots.get()?;
        let i = self.pair(key);
        for slot in &slots[i..i + 2] {
            let g = slot.load();
            if let Some(e) = g.as_ref() {
                if *e.key == *key {
                    return Some(Arc::clone(e));
                }
            }
        }
        None
    }

    /// Remember `value` for these bytes; the entry (kept, or not when the memo is off or the key
    /// too long).
    pub fn put(&self, key: &[u8], value: V) -> Arc<Entry<V>> {
        let e = Self::detached(key, value);
        if self.size == 0 || key.len() > MAX_KEY {
            return e;
        }
        let slots = self.slots.get_or_init(|| {
            (0..self.size)
                .map(|_| ArcSwapOption::empty())
                .collect::<Vec<_>>()
                .into_boxed_slice()
        });
        let i = self.pair(key);
        let free = slots[i..i + 2].iter().position(|s| {
            let g = s.load();
            g.as_ref().is_none_or(|old| *old.key == *key)
        });
        let way = free.unwrap_or_else(|| usize::from(self.flip.fetch_xor(true, Ordering::Relaxed)));
        slots[i + way].store(Some(Arc::clone(&e)));
        e
    }

    /// An entry that is not kept (for a caller whose credential must not be remembered).
    pub fn detached(key: &[u8], value: V) -> Arc<Entry<V>> {
        Arc::new(Entry {
            key: key.into(),
            value,
        })
    }

    /// Forget these bytes (an entry found expired or no longer trusted).
    pub fn remove(&self, key: &[u8]) {
        let Some(slots) = self.slots.get() else {
            return;
        };
        let i = self.pair(key);
        for slot in &slots[i..i + 2] {
            let g = slot.load();
            if g.as_ref().is_some_and(|e| *e.key == *key) {
                slot.compare_and_swap(&*g, None);
            }
        }
    }

    /// Entries held (walks every slot: for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.slots
            .get()
            .map_or(0, |s| s.iter().filter(|x| x.load().is_some()).count())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes_only_and_bounded() {
        let m: Memo<u32> = Memo::new(8);
        assert!(m.get(b"abc").is_none());
        assert_eq!(m.len(), 0, "nothing allocated before the first insert");
        m.put(b"token-one", 1);
        assert_eq!(m.get(b"token-one").map(|e| e.value), Some(1));
        // Same tail and length, different bytes earlier: not the entry.
        assert!(m.get(b"tokex-one").is_none());
        assert!(m.get(b"token-on").is_none());
        for i in 0..1000u32 {
            m.put(format!("k{i}").as_bytes(), i);
        }
        assert!(m.len() <= 8, "bounded: {}", m.len());
        // The last insert is always found.
        assert_eq!(m.get(b"k999").map(|e| e.value), Some(999));
        m.remove(b"k999");
        assert!(m.get(b"k999").is_none());
    }

    #[test]
    fn off_and_long_keys_are_not_kept() {
        let m: Memo<u32> = Memo::new(0);
        m.put(b"x", 1);
        assert!(m.get(b"x").is_none());
        let m: Memo<u32> = Memo::new(4);
        let long = vec![b'a'; MAX_KEY + 1];
        assert_eq!(m.put(&long, 2).value, 2, "the caller still gets its entry");
        assert!(m.get(&long).is_none());
    }

    #[test]
    fn one_slot_pair_keeps_two() {
        let m: Memo<u32> = Memo::new(2);
        m.put(b"a", 1);
        m.put(b"b", 2);
        assert_eq!(m.get(b"a").map(|e| e.value), Some(1));
        assert_eq!(m.get(b"b").map(|e| e.value), Some(2));
        m.put(b"c", 3);
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(b"c").map(|e| e.value), Some(3));
    }
}
