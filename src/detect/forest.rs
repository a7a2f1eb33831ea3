//! The isolation forest (Liu, Ting and Zhou, ICDM 2008), the detector's anomaly model.
//!
//! Built to match scikit-learn's `IsolationForest` point for point, so the two can be
//! compared on the same data: each tree sees `sample_size` rows drawn without
//! replacement, grows to depth `ceil(log2(sample_size))`, splits on a random non-constant
//! feature at a threshold drawn uniformly between that feature's minimum and maximum in
//! the node (left when `x <= threshold`), and a leaf holding `n` rows at depth `d` counts
//! as a path of `d + c(n)`. The score is `2^(-E[path] / c(sample_size))`: near 1 for
//! anomalies, about 0.5 and below for normal points.
//!
//! Trees are flat arrays (a node is 16 bytes; children sit next to each other), every
//! tree draws from its own generator seeded by the forest's seed and its index, so one
//! seed gives one forest whatever the number of threads, and fitting and scoring spread
//! over the machine's cores with scoped threads. In memory a leaf is a node that leads to
//! itself (threshold +inf), so scoring walks every tree a fixed number of steps (its depth)
//! with no test for leaves, and eight rows go down a tree side by side: no mispredicted
//! branch, and eight independent chains of loads for the processor to overlap.

use serde::{Deserialize, Serialize};

use crate::base::rng::Rng;

/// Rows of `cols` values each, row-major.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    data: &'a [f64],
    cols: usize,
}

impl<'a> Matrix<'a> {
    /// `data.len()` must be a multiple of `cols`.
    pub fn new(data: &'a [f64], cols: usize) -> Matrix<'a> {
        assert!(cols > 0 && data.len().is_multiple_of(cols), "a matrix of {} values cannot have {cols} columns", data.len());
        Matrix { data, cols }
    }

    pub fn rows(&self) -> usize {
        self.data.len() / self.cols
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// How to grow a forest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    pub trees: usize,
    /// Rows each tree sees (capped at the number of rows).
    pub sample_size: usize,
    pub seed: u64,
}

impl Default for ForestParams {
    /// The paper's and scikit-learn's defaults.
    fn default() -> Self {
        ForestParams { trees: 100, sample_size: 256, seed: 1 }
    }
}

/// A leaf's feature index.
const LEAF: u32 = u32::MAX;

/// One node: a split (`feature`, `value` = threshold, children at `left` and `left + 1`)
/// or a leaf (`feature == LEAF`, `value` = the path length it stands for).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct Node {
    feature: u32,
    left: u32,
    value: f64,
}

/// The forest as it is stored: leaves marked with [`LEAF`] and holding their path length.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct StoredForest {
    features: usize,
    sample_size: usize,
    nodes: Vec<Node>,
    roots: Vec<u32>,
}

/// The forest ready to walk: a leaf leads to itself, its path length is in `path`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredForest", into = "StoredForest")]
pub struct IsolationForest {
    features: usize,
    sample_size: usize,
    /// Every tree's nodes, one after another.
    nodes: Vec<Node>,
    /// Path length of each leaf (0 for splits), by node.
    path: Vec<f64>,
    /// Where each tree's root is in `nodes`.
    roots: Vec<u32>,
    /// Each tree's depth: the steps a walk takes to reach any leaf.
    depths: Vec<u32>,
}

impl TryFrom<StoredForest> for IsolationForest {
    type Error = String;

    fn try_from(s: StoredForest) -> Result<Self, String> {
        // Leaves first become self-loops, so check the stored links before converting.
        let n = s.nodes.len();
        for (i, node) in s.nodes.iter().enumerate() {
            if node.feature != LEAF && (node.left as usize + 1 >= n || node.left as usize == i) {
                return Err(format!("node {i} points outside the forest"));
            }
        }
        let mut path = vec![0.0; s.nodes.len()];
        let mut nodes = s.nodes;
        for (i, n) in nodes.iter_mut().enumerate() {
            if n.feature == LEAF {
                path[i] = n.value;
                *n = Node { feature: 0, left: i as u32, value: f64::INFINITY };
            }
        }
        let is_leaf = |i: usize| nodes[i].left as usize == i;
        let depths = s
            .roots
            .iter()
            .map(|&root| {
                let (mut deepest, mut stack) = (0, vec![(root as usize, 0u32)]);
                while let Some((i, d)) = stack.pop() {
                    if i >= nodes.len() || d > 64 {
                        continue;
                    }
                    if is_leaf(i) {
                        deepest = deepest.max(d);
                    } else {
                        stack.push((nodes[i].left as usize, d + 1));
                        stack.push((nodes[i].left as usize + 1, d + 1));
                    }
                }
                deepest
            })
            .collect();
        let forest = IsolationForest { features: s.features, sample_size: s.sample_size, nodes, path, roots: s.roots, depths };
        forest.check()?;
        Ok(forest)
    }
}

impl IsolationForest {
    /// The invariants scoring relies on: every root and child index is a node, every
    /// split's feature is a column. A forest that breaks them is refused, never walked.
    fn check(&self) -> Result<(), String> {
        let n = self.nodes.len();
        if self.features == 0 || self.roots.is_empty() || self.roots.iter().any(|&r| r as usize >= n) {
            return Err("a forest needs features and trees whose roots are nodes".into());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let leaf = node.left as usize == i;
            if !leaf && (node.left as usize + 1 >= n || node.feature as usize >= self.features) {
                return Err(format!("node {i} points outside the forest"));
            }
            if leaf && node.feature as usize >= self.features {
                return Err(format!("leaf {i} names a feature the forest does not have"));
            }
        }
        Ok(())
    }
}

impl From<IsolationForest> for StoredForest {
    fn from(f: IsolationForest) -> Self {
        let nodes = f
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| if n.left as usize == i { Node { feature: LEAF, left: 0, value: f.path[i] } } else { *n })
            .collect();
        StoredForest { features: f.features, sample_size: f.sample_size, nodes, roots: f.roots }
    }
}

/// Average path length of an unsuccessful search in a binary search tree of `n` nodes:
/// the normaliser `c(n)` of the paper, as scikit-learn computes it.
pub fn average_path_length(n: usize) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        n => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// Threads to use: the machine's cores, at most one per `unit` of work.
fn threads_for(work: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    cores.min(work).max(1)
}

impl IsolationForest {
    /// Grows a forest on `x`. Panics on an empty matrix (callers check for data first).
    pub fn fit(x: Matrix<'_>, params: &ForestParams) -> IsolationForest {
        assert!(x.rows() > 0, "an isolation forest needs at least one row");
        let sample_size = params.sample_size.clamp(1, x.rows());
        let max_depth = (sample_size as f64).log2().ceil().max(0.0) as u32;
        let trees = params.trees.max(1);
        let threads = threads_for(trees);
        let per_thread = trees.div_ceil(threads);
        let grown: Vec<Vec<Vec<Node>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        (t * per_thread..((t + 1) * per_thread).min(trees))
                            .map(|i| grow_tree(x, sample_size, max_depth, tree_seed(params.seed, i)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("tree growth does not panic")).collect()
        });
        let mut nodes = Vec::new();
        let mut roots = Vec::with_capacity(trees);
        for tree in grown.into_iter().flatten() {
            let base = nodes.len() as u32;
            roots.push(base);
            nodes.extend(tree.into_iter().map(|n| if n.feature == LEAF { n } else { Node { left: n.left + base, ..n } }));
        }
        StoredForest { features: x.cols(), sample_size, nodes, roots }.try_into().expect("a grown forest is well formed")
    }

    pub fn features(&self) -> usize {
        self.features
    }

    pub fn trees(&self) -> usize {
        self.roots.len()
    }

    /// Path length of `row` in tree `t`.
    #[inline]
    fn path(&self, t: usize, row: &[f64]) -> f64 {
        let mut i = self.roots[t] as usize;
        for _ in 0..self.depths[t] {
            let n = self.nodes[i];
            i = n.left as usize + usize::from(row[n.feature as usize] > n.value);
        }
        self.path[i]
    }

    /// Adds the path lengths in tree `t` of eight consecutive rows starting at `first`.
    /// The hot loop of scoring: its indexing is unchecked, on the invariants [`Self::check`]
    /// establishes for every forest that exists.
    #[inline]
    fn paths8(&self, t: usize, x: Matrix<'_>, first: usize, acc: &mut [f64]) {
        let cols = x.cols();
        assert_eq!(cols, self.features);
        let rows = &x.data[first * cols..(first + 8) * cols];
        let mut at = [self.roots[t] as usize; 8];
        for _ in 0..self.depths[t] {
            for (k, i) in at.iter_mut().enumerate() {
                // SAFETY: `check` guarantees every node index reachable from a root (each
                // split's `left` and `left + 1`, each leaf's own index) is within `nodes`,
                // and every split's feature is below `features`, which is `cols`; so
                // `k * cols + feature < 8 * cols = rows.len()`.
                unsafe {
                    let n = *self.nodes.get_unchecked(*i);
                    let v = *rows.get_unchecked(k * cols + n.feature as usize);
                    *i = n.left as usize + usize::from(v > n.value);
                }
            }
        }
        for (a, i) in acc.iter_mut().zip(at) {
            *a += self.path[i];
        }
    }

    fn normalise(&self, path_sum: f64) -> f64 {
        let mean = path_sum / self.roots.len() as f64;
        2f64.powf(-mean / average_path_length(self.sample_size).max(f64::MIN_POSITIVE))
    }

    /// The anomaly score of one row: near 1 is anomalous.
    pub fn score_one(&self, row: &[f64]) -> f64 {
        debug_assert_eq!(row.len(), self.features);
        self.normalise((0..self.roots.len()).map(|t| self.path(t, row)).sum())
    }

    /// Scores every row, on every core. Rows are taken in blocks and each block goes
    /// through one tree at a time, so a tree's nodes stay in cache.
    pub fn score(&self, x: Matrix<'_>) -> Vec<f64> {
        assert_eq!(x.cols(), self.features, "the model was trained on {} features, the data has {}", self.features, x.cols());
        const BLOCK: usize = 512;
        let mut out = vec![0.0; x.rows()];
        let threads = threads_for(x.rows().div_ceil(BLOCK * 4));
        let per_thread = x.rows().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            for (t, chunk) in out.chunks_mut(per_thread).enumerate() {
                s.spawn(move || {
                    let first = t * per_thread;
                    for (b, block) in chunk.chunks_mut(BLOCK).enumerate() {
                        let start = first + b * BLOCK;
                        let whole = block.len() / 8 * 8;
                        for t in 0..self.roots.len() {
                            for (k, acc) in block[..whole].chunks_mut(8).enumerate() {
                                self.paths8(t, x, start + 8 * k, acc);
                            }
                            for (k, acc) in block[whole..].iter_mut().enumerate() {
                                *acc += self.path(t, x.row(start + whole + k));
                            }
                        }
                        for acc in block.iter_mut() {
                            *acc = self.normalise(*acc);
                        }
                    }
                });
            }
        });
        out
    }
}

/// Each tree's own stream: independent of how trees are spread over threads.
fn tree_seed(seed: u64, tree: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (tree as u64).wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

fn grow_tree(x: Matrix<'_>, sample_size: usize, max_depth: u32, seed: u64) -> Vec<Node> {
    let mut rng = Rng::seeded(seed);
    // Sampling without replacement: a partial Fisher-Yates shuffle of the row indices,
    // or of a sparse map of swaps when the data is much larger than the sample.
    let rows = x.rows();
    let mut sample: Vec<usize> = if rows <= 4 * sample_size {
        let mut idx: Vec<usize> = (0..rows).collect();
        for i in 0..sample_size {
            let j = i + rng.below((rows - i) as u64) as usize;
            idx.swap(i, j);
        }
        idx.truncate(sample_size);
        idx
    } else {
        let mut swapped: std::collections::BTreeMap<usize, usize> = std::collections::BTreeMap::new();
        (0..sample_size)
            .map(|i| {
                let j = i + rng.below((rows - i) as u64) as usize;
                let at_j = *swapped.get(&j).unwrap_or(&j);
                let at_i = *swapped.get(&i).unwrap_or(&i);
                swapped.insert(j, at_i);
                at_j
            })
            .collect()
    };
    let mut nodes = vec![Node { feature: LEAF, left: 0, value: 0.0 }];
    // (node, range of `sample`, depth)
    let mut stack = vec![(0usize, 0usize, sample.len(), 0u32)];
    let mut candidates: Vec<usize> = Vec::with_capacity(x.cols());
    while let Some((node, lo, hi, depth)) = stack.pop() {
        let n = hi - lo;
        let leaf = Node { feature: LEAF, left: 0, value: f64::from(depth) + average_path_length(n) };
        if depth >= max_depth || n < 2 {
            nodes[node] = leaf;
            continue;
        }
        // A random feature that is not constant here, as scikit-learn's random splitter
        // draws until it finds one.
        candidates.clear();
        candidates.extend(0..x.cols());
        let mut split = None;
        while !candidates.is_empty() {
            let pick = rng.below(candidates.len() as u64) as usize;
            let f = candidates.swap_remove(pick);
            let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
            for &r in &sample[lo..hi] {
                let v = x.row(r)[f];
                min = min.min(v);
                max = max.max(v);
            }
            if max > min {
                let mut threshold = min + rng.uniform() * (max - min);
                if threshold >= max {
                    threshold = min;
                }
                split = Some((f, threshold));
                break;
            }
        }
        let Some((f, threshold)) = split else {
            nodes[node] = leaf;
            continue;
        };
        // Partition the node's rows: `<= threshold` to the left.
        let part = &mut sample[lo..hi];
        let mut mid = 0;
        for k in 0..part.len() {
            if x.row(part[k])[f] <= threshold {
                part.swap(k, mid);
                mid += 1;
            }
        }
        let left = nodes.len();
        nodes.push(leaf);
        nodes.push(leaf);
        nodes[node] = Node { feature: f as u32, left: left as u32, value: threshold };
        stack.push((left, lo, lo + mid, depth + 1));
        stack.push((left + 1, lo + mid, hi, depth + 1));
    }
    nodes
}

/// Area under the ROC curve of `scores` for `labels` (true = positive), ties counted half:
/// the Mann-Whitney statistic. `None` when a class is empty.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Sum of the positives' ranks, with tied scores sharing their average rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += order[i..=j].iter().filter(|&&k| labels[k]).count() as f64 * avg_rank;
        i = j + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Area under the precision-recall curve (average precision, as scikit-learn's
/// `average_precision_score`): the mean of the precision at each threshold weighted by the
/// recall gained there.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap, mut i) = (0usize, 0usize, 0.0, 0);
    while i < order.len() {
        // Every row with the same score crosses the threshold together.
        let mut j = i;
        let mut tp_here = 0;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            tp_here += usize::from(labels[order[j]]);
            j += 1;
        }
        seen += j - i;
        tp += tp_here;
        ap += (tp_here as f64 / positives as f64) * (tp as f64 / seen as f64);
        i = j;
    }
    Some(ap)
}

/// Recall at the threshold that lets through at most `fpr` of the negatives.
pub fn recall_at_fpr(scores: &[f64], labels: &[bool], fpr: f64) -> Option<f64> {
    let mut negatives: Vec<f64> = scores.iter().zip(labels).filter(|(_, &l)| !l).map(|(s, _)| *s).collect();
    let positives: Vec<f64> = scores.iter().zip(labels).filter(|(_, &l)| l).map(|(s, _)| *s).collect();
    if negatives.is_empty() || positives.is_empty() {
        return None;
    }
    negatives.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * negatives.len() as f64).floor() as usize;
    // Alert on scores strictly above the (allowed+1)-th highest negative.
    let threshold = negatives[allowed.min(negatives.len() - 1)];
    Some(positives.iter().filter(|&&s| s > threshold).count() as f64 / positives.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster of normal points around the origin and a few far away.
    fn blob(n: usize, outliers: usize, seed: u64) -> (Vec<f64>, Vec<bool>) {
        let mut rng = Rng::seeded(seed);
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n + outliers {
            let anomalous = i >= n;
            for _ in 0..3 {
                let v = if anomalous { rng.range_f64(4.0, 8.0) } else { rng.range_f64(-1.0, 1.0) };
                data.push(v);
            }
            labels.push(anomalous);
        }
        (data, labels)
    }

    #[test]
    fn path_length_normaliser_matches_scikit_learn() {
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // sklearn.ensemble._iforest._average_path_length(np.array([256]))
        assert!((average_path_length(256) - 10.244_770_920_116_851).abs() < 1e-9);
    }

    #[test]
    fn separates_outliers_and_is_repeatable_per_seed() {
        let (data, labels) = blob(2000, 20, 3);
        let x = Matrix::new(&data, 3);
        let forest = IsolationForest::fit(x, &ForestParams::default());
        assert_eq!(forest.trees(), 100);
        let scores = forest.score(x);
        let auc = roc_auc(&scores, &labels).unwrap();
        assert!(auc > 0.99, "auc {auc}");
        assert!(scores[2000] > 0.6 && scores[0] < 0.55, "outlier {} normal {}", scores[2000], scores[0]);
        // Scoring in blocks on threads gives what one row at a time gives.
        for i in [0, 7, 8, 511, 512, 2019] {
            assert!((scores[i] - forest.score_one(x.row(i))).abs() < 1e-12);
        }
        assert_eq!(forest, IsolationForest::fit(x, &ForestParams::default()));
        assert_ne!(forest, IsolationForest::fit(x, &ForestParams { seed: 2, ..Default::default() }));
    }

    #[test]
    fn trees_respect_depth_and_sample_size() {
        let (data, _) = blob(1000, 0, 1);
        let forest = IsolationForest::fit(Matrix::new(&data, 3), &ForestParams { trees: 10, sample_size: 64, seed: 9 });
        // A tree of 64 rows and depth 6 has at most 127 nodes.
        let sizes: Vec<usize> = forest.roots.windows(2).map(|w| (w[1] - w[0]) as usize).collect();
        assert!(sizes.iter().all(|&s| (3..=127).contains(&s)), "{sizes:?}");
        assert!(forest.depths.iter().all(|&d| d <= 6));
        // Stored and loaded, it is the same forest.
        let json = serde_json::to_string(&forest).unwrap();
        assert!(!json.contains("null"), "no infinities in the file");
        assert_eq!(serde_json::from_str::<IsolationForest>(&json).unwrap(), forest);
        // A damaged file is refused, never walked out of bounds.
        let damaged = json.replacen("\"left\":1,", "\"left\":99999,", 1);
        assert_ne!(damaged, json);
        assert!(serde_json::from_str::<IsolationForest>(&damaged).unwrap_err().to_string().contains("outside the forest"));
        // Constant data cannot be split: one leaf per tree.
        let flat = vec![1.0; 300];
        let f = IsolationForest::fit(Matrix::new(&flat, 3), &ForestParams { trees: 5, sample_size: 50, seed: 1 });
        assert_eq!(f.nodes.len(), 5);
        assert_eq!(f.score_one(&[f64::INFINITY, f64::NAN, 1.0]), f.score_one(&[1.0, 1.0, 1.0]));
        assert!((f.score_one(&[1.0, 1.0, 1.0]) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn ranking_metrics() {
        let labels = [false, false, true, false, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.9, 0.3, 0.8], &labels), Some(1.0));
        assert_eq!(roc_auc(&[0.5; 5], &labels), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(average_precision(&[0.1, 0.2, 0.9, 0.3, 0.8], &labels), Some(1.0));
        // One negative ranked first: precisions 1/2 and 2/3 at each positive.
        let ap = average_precision(&[0.1, 0.99, 0.9, 0.3, 0.8], &labels).unwrap();
        assert!((ap - (0.5 * 0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-12);
        assert_eq!(recall_at_fpr(&[0.1, 0.2, 0.9, 0.3, 0.25], &labels, 0.0), Some(0.5));
    }
}
