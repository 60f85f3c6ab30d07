//! A compact set of part indices (a bitset over the knowledge base's part vocabulary).

use std::fmt;

/// A set of part indices into a knowledge base's vocabulary.
#[derive(Clone, Default)]
pub struct PartSet {
    words: Vec<u64>,
}

impl PartSet {
    fn trimmed(&self) -> &[u64] {
        let end = self
            .words
            .iter()
            .rposition(|&w| w != 0)
            .map_or(0, |i| i + 1);
        &self.words[..end]
    }
}

impl PartialEq for PartSet {
    fn eq(&self, other: &Self) -> bool {
        self.trimmed() == other.trimmed()
    }
}

impl Eq for PartSet {}

impl std::hash::Hash for PartSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.trimmed().hash(state);
    }
}

impl PartSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from part indices.
    pub fn from_indices<I: IntoIterator<Item = usize>>(indices: I) -> Self {
        let mut set = Self::new();
        for i in indices {
            set.insert(i);
        }
        set
    }

    /// Adds `index`; returns whether it was new.
    pub fn insert(&mut self, index: usize) -> bool {
        let (word, bit) = (index / 64, index % 64);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let was = self.words[word] & (1 << bit) != 0;
        self.words[word] |= 1 << bit;
        !was
    }

    /// Whether `index` is in the set.
    pub fn contains(&self, index: usize) -> bool {
        self.words
            .get(index / 64)
            .is_some_and(|w| w & (1 << (index % 64)) != 0)
    }

    /// Number of parts in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Size of the intersection with `other`.
    pub fn intersection_len(&self, other: &PartSet) -> usize {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| (a & b).count_ones() as usize)
            .sum()
    }

    /// Size of the union with `other`.
    pub fn union_len(&self, other: &PartSet) -> usize {
        self.len() + other.len() - self.intersection_len(other)
    }

    /// The indices in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            (0..64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| wi * 64 + b)
        })
    }
}

impl FromIterator<usize> for PartSet {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        Self::from_indices(iter)
    }
}

impl fmt::Debug for PartSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_len_iter() {
        let mut s = PartSet::new();
        assert!(s.is_empty());
        assert!(s.insert(3));
        assert!(!s.insert(3));
        assert!(s.insert(70));
        assert!(s.contains(3) && s.contains(70) && !s.contains(4) && !s.contains(700));
        assert_eq!(s.len(), 2);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 70]);
    }

    #[test]
    fn intersection_and_union_across_word_sizes() {
        let a = PartSet::from_indices([1, 2, 65]);
        let b = PartSet::from_indices([2, 3]);
        assert_eq!(a.intersection_len(&b), 1);
        assert_eq!(a.union_len(&b), 4);
        assert_eq!(b.union_len(&a), 4);
    }

    #[test]
    fn equality_ignores_trailing_empty_words() {
        let mut a = PartSet::from_indices([1, 100]);
        a.words[1] = 0;
        let b = PartSet::from_indices([1]);
        assert_eq!(a, b);
        assert_ne!(a, PartSet::from_indices([2]));
    }
}
