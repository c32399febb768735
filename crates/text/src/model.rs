//! Linear softmax models over hashed features: compact binary format, prediction and deterministic SGD training.

use crate::features::Feature;

const MAGIC: &[u8; 8] = b"BALIELM1";

/// A trained model with 8-bit quantized weights, laid out `[bucket][class]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    classes: usize,
    bits: u8,
    scale: f32,
    bias: Vec<f32>,
    weights: Vec<i8>,
}

/// Why an embedded model could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    BadMagic,
    Truncated,
    BadShape,
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelError::BadMagic => "not a Balie linear model (bad magic)",
            ModelError::Truncated => "model file is truncated",
            ModelError::BadShape => "model header has an impossible shape",
        })
    }
}

impl std::error::Error for ModelError {}

impl LinearModel {
    /// A model that always answers with the uniform distribution (used when no weights are embedded).
    pub fn empty(classes: usize) -> Self {
        LinearModel {
            classes,
            bits: 1,
            scale: 0.0,
            bias: vec![0.0; classes],
            weights: vec![0; 2 * classes],
        }
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn is_trained(&self) -> bool {
        self.scale > 0.0
    }

    /// Parse the binary format: magic, u8 classes, u8 bits, 2 reserved bytes, f32 scale, f32 biases, i8 weights.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        if bytes.len() < 16 {
            return Err(ModelError::Truncated);
        }
        if &bytes[..8] != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let classes = bytes[8] as usize;
        let bits = bytes[9];
        if classes == 0 || !(1..=24).contains(&bits) {
            return Err(ModelError::BadShape);
        }
        let f32_at = |o: usize| -> Result<f32, ModelError> {
            let b = bytes.get(o..o + 4).ok_or(ModelError::Truncated)?;
            Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let scale = f32_at(12)?;
        let mut bias = Vec::with_capacity(classes);
        for c in 0..classes {
            bias.push(f32_at(16 + 4 * c)?);
        }
        let start = 16 + 4 * classes;
        let n = (1usize << bits) * classes;
        let w = bytes.get(start..start + n).ok_or(ModelError::Truncated)?;
        if bytes.len() != start + n {
            return Err(ModelError::BadShape);
        }
        Ok(LinearModel {
            classes,
            bits,
            scale,
            bias,
            weights: w.iter().map(|&b| b as i8).collect(),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 4 * self.classes + self.weights.len());
        out.extend_from_slice(MAGIC);
        out.push(self.classes as u8);
        out.push(self.bits);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.scale.to_le_bytes());
        for b in &self.bias {
            out.extend_from_slice(&b.to_le_bytes());
        }
        out.extend(self.weights.iter().map(|&w| w as u8));
        out
    }

    /// Add per-class offsets to the biases (decision calibration for macro-F1).
    pub fn shift_bias(&mut self, offsets: &[f32]) {
        for (b, o) in self.bias.iter_mut().zip(offsets) {
            *b += o;
        }
    }

    /// Raw class scores (logits) for one feature vector, written into `out`.
    pub fn logits(&self, feats: &[Feature], out: &mut [f32]) {
        let k = self.classes;
        let mask = (1usize << self.bits) - 1;
        let mut acc = [0f32; 8];
        let acc = &mut acc[..k.min(8)];
        for &(h, v) in feats {
            let base = (h as usize & mask) * k;
            if let Some(row) = self.weights.get(base..base + acc.len()) {
                for (a, &w) in acc.iter_mut().zip(row) {
                    *a += f32::from(w) * v;
                }
            }
        }
        for (c, o) in out.iter_mut().enumerate().take(k) {
            *o = self.bias[c] + acc.get(c).copied().unwrap_or(0.0) * self.scale;
        }
    }

    /// Class probabilities (softmax of the logits).
    pub fn probabilities(&self, feats: &[Feature]) -> Vec<f32> {
        let mut l = vec![0f32; self.classes];
        self.logits(feats, &mut l);
        softmax(&mut l);
        l
    }
}

pub fn softmax(l: &mut [f32]) {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in l.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    if sum > 0.0 {
        for x in l.iter_mut() {
            *x /= sum;
        }
    }
}

/// One labelled training example.
#[derive(Debug, Clone)]
pub struct Example {
    pub features: Vec<Feature>,
    pub label: usize,
    pub weight: f32,
}

/// SGD settings; `seed` makes the example order (and so the model) reproducible.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub bits: u8,
    pub epochs: usize,
    pub lambda: f32,
    pub eta0: f32,
    pub seed: u64,
    /// Reweight classes to equal total weight (helps macro-F1 on skewed labels); 0 = off, 1 = full.
    pub balance: f32,
    /// Strength of NB log-count-ratio feature scaling (0 = plain logistic regression).
    pub nb: f32,
    /// For more than two classes: one-vs-rest NBSVM (see [`train_one_vs_rest`]) instead of softmax.
    pub one_vs_rest: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            bits: 17,
            epochs: 12,
            lambda: 1e-4,
            eta0: 0.5,
            seed: 42,
            balance: 0.5,
            nb: 0.0,
            one_vs_rest: false,
        }
    }
}

/// xorshift64*: tiny deterministic PRNG for shuffling.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Train a multinomial logistic regression with L2-regularised SGD (Bottou's scaled-weight trick), then quantize.
/// With `cfg.one_vs_rest` and more than two classes, trains [`train_one_vs_rest`] instead.
pub fn train(examples: &[Example], classes: usize, cfg: &TrainConfig) -> LinearModel {
    let k = classes.max(1);
    let (w, bias) = if cfg.one_vs_rest && k > 2 {
        one_vs_rest_weights(examples, k, cfg)
    } else {
        softmax_weights(examples, k, cfg)
    };
    quantize(&w, bias, k, cfg.bits)
}

/// Interpolation between the NB weights and the learned ones (Wang & Manning's beta).
const OVR_BETA: f32 = 0.85;
/// Signed log-count ratios are compressed to `sign(r) * |r|^OVR_POWER` before scaling features.
const OVR_POWER: f32 = 0.5;

/// One-vs-rest NBSVM (Wang & Manning 2012) with logistic loss: for each class, features are
/// scaled by that class's (compressed) signed log-count ratio, a binary L2 logistic regression
/// is trained on them, and its weights are interpolated towards their mean magnitude (the NB
/// direction). The ratios are folded into the weights, so prediction is a plain
/// `[bucket][class]` table whose argmax picks the class with the highest one-vs-rest score.
pub fn train_one_vs_rest(examples: &[Example], classes: usize, cfg: &TrainConfig) -> LinearModel {
    let k = classes.max(1);
    let (w, bias) = one_vs_rest_weights(examples, k, cfg);
    quantize(&w, bias, k, cfg.bits)
}

fn one_vs_rest_weights(examples: &[Example], k: usize, cfg: &TrainConfig) -> (Vec<f32>, Vec<f32>) {
    let buckets = 1usize << cfg.bits;
    let mask = buckets - 1;
    // Presence counts per bucket and class (add-one smoothed below).
    let mut counts = vec![0f32; buckets * k];
    let mut totals = vec![0f32; k];
    for e in examples.iter().filter(|e| e.label < k) {
        for &(h, x) in &e.features {
            if x > 0.0 {
                counts[(h as usize & mask) * k + e.label] += 1.0;
                totals[e.label] += 1.0;
            }
        }
    }
    let all: f32 = totals.iter().sum();
    let binary = TrainConfig {
        nb: 0.0,
        one_vs_rest: false,
        ..cfg.clone()
    };
    let mut w = vec![0f32; buckets * k];
    let mut bias = vec![0f32; k];
    for c in 0..k {
        let ratio: Vec<f32> = (0..buckets)
            .map(|b| {
                let row = &counts[b * k..b * k + k];
                let n: f32 = row.iter().sum();
                let p = (row[c] + 1.0) / (totals[c] + buckets as f32);
                let q = (n - row[c] + 1.0) / (all - totals[c] + buckets as f32);
                let r = (p / q).ln();
                r.signum() * r.abs().powf(OVR_POWER)
            })
            .collect();
        let scaled: Vec<Example> = examples
            .iter()
            .map(|e| Example {
                features: e
                    .features
                    .iter()
                    .map(|&(h, x)| (h, x * ratio[h as usize & mask]))
                    .collect(),
                label: usize::from(e.label == c),
                weight: e.weight,
            })
            .collect();
        let (v, b) = softmax_weights(&scaled, 2, &binary);
        let d: Vec<f32> = (0..buckets).map(|i| v[i * 2 + 1] - v[i * 2]).collect();
        let mean = d.iter().map(|x| x.abs()).sum::<f32>() / buckets as f32;
        for (i, (&di, &ri)) in d.iter().zip(&ratio).enumerate() {
            w[i * k + c] = ((1.0 - OVR_BETA) * mean + OVR_BETA * di) * ri;
        }
        bias[c] = b[1] - b[0];
    }
    (w, bias)
}

/// 8-bit quantisation of float weights `[bucket][class]` with one scale.
fn quantize(w: &[f32], bias: Vec<f32>, k: usize, bits: u8) -> LinearModel {
    let max = w.iter().fold(0f32, |m, &x| m.max(x.abs()));
    let q = if max > 0.0 { max / 127.0 } else { 0.0 };
    let weights = w
        .iter()
        .map(|&x| {
            if q > 0.0 {
                (x / q).round().clamp(-127.0, 127.0) as i8
            } else {
                0
            }
        })
        .collect();
    LinearModel {
        classes: k,
        bits,
        scale: q,
        bias,
        weights,
    }
}

/// Float weights `[bucket][class]` and biases of a softmax regression trained by SGD.
fn softmax_weights(examples: &[Example], k: usize, cfg: &TrainConfig) -> (Vec<f32>, Vec<f32>) {
    let buckets = 1usize << cfg.bits;
    let mask = buckets - 1;
    // NB-style feature scaling (as in NBSVM): features whose presence is skewed across classes
    // are scaled up by 1 + nb * max_c |log-count ratio|. Folded back into the weights at the end,
    // so prediction needs no extra table.
    let row_scale: Option<Vec<f32>> = (cfg.nb > 0.0).then(|| {
        let mut counts = vec![0f32; buckets * k];
        let mut totals = vec![1f32; k];
        for e in examples.iter().filter(|e| e.label < k) {
            totals[e.label] += 1.0;
            for &(h, x) in &e.features {
                if x > 0.0 {
                    counts[(h as usize & mask) * k + e.label] += 1.0;
                }
            }
        }
        let all: f32 = totals.iter().sum();
        (0..buckets)
            .map(|b| {
                let row = &counts[b * k..b * k + k];
                let n: f32 = row.iter().sum();
                let mut best = 0f32;
                for c in 0..k {
                    let p = (row[c] + 1.0) / (totals[c] + 1.0);
                    let q = (n - row[c] + 1.0) / (all - totals[c] + 1.0);
                    best = best.max((p / q).ln().abs());
                }
                1.0 + cfg.nb * best
            })
            .collect()
    });
    let scaled: Vec<Example>;
    let examples = match &row_scale {
        Some(rs) => {
            scaled = examples
                .iter()
                .map(|e| Example {
                    features: e
                        .features
                        .iter()
                        .map(|&(h, x)| (h, x * rs[h as usize & mask]))
                        .collect(),
                    label: e.label,
                    weight: e.weight,
                })
                .collect();
            &scaled[..]
        }
        None => examples,
    };
    let mut v = vec![0f32; buckets * k];
    let mut bias = vec![0f32; k];
    let mut scale = 1.0f32;

    let mut counts = vec![0f32; k];
    for e in examples {
        if e.label < k {
            counts[e.label] += e.weight;
        }
    }
    let total: f32 = counts.iter().sum();
    let class_w: Vec<f32> = counts
        .iter()
        .map(|&c| {
            if c > 0.0 {
                (total / (k as f32 * c)).powf(cfg.balance)
            } else {
                1.0
            }
        })
        .collect();

    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut rng = Rng::new(cfg.seed);
    let mut t = 0f32;
    let mut probs = vec![0f32; k];
    // Average the weights of the later epochs (a cheap Polyak average): steadier than the last iterate.
    let mut avg = vec![0f32; buckets * k];
    let mut avg_bias = vec![0f32; k];
    let mut averaged = 0f32;
    for epoch in 0..cfg.epochs {
        rng.shuffle(&mut order);
        for &i in &order {
            let e = &examples[i];
            if e.label >= k {
                continue;
            }
            let eta = cfg.eta0 / (1.0 + cfg.lambda * cfg.eta0 * t);
            t += 1.0;
            // logits
            for (c, p) in probs.iter_mut().enumerate() {
                *p = bias[c];
            }
            for &(h, x) in &e.features {
                let base = (h as usize & mask) * k;
                for c in 0..k {
                    probs[c] += v[base + c] * scale * x;
                }
            }
            softmax(&mut probs);
            scale *= 1.0 - eta * cfg.lambda;
            if scale < 1e-6 {
                for w in v.iter_mut() {
                    *w *= scale;
                }
                scale = 1.0;
            }
            let g_w = e.weight * class_w[e.label];
            for c in 0..k {
                let y = if c == e.label { 1.0 } else { 0.0 };
                let g = (probs[c] - y) * g_w;
                bias[c] -= eta * g * 0.1;
                let step = eta * g / scale;
                for &(h, x) in &e.features {
                    v[(h as usize & mask) * k + c] -= step * x;
                }
            }
        }
        if epoch * 2 >= cfg.epochs {
            for (a, &w) in avg.iter_mut().zip(&v) {
                *a += w * scale;
            }
            for (a, &b) in avg_bias.iter_mut().zip(&bias) {
                *a += b;
            }
            averaged += 1.0;
        }
    }
    if averaged > 0.0 {
        v = avg.into_iter().map(|w| w / averaged).collect();
        bias = avg_bias.into_iter().map(|b| b / averaged).collect();
        scale = 1.0;
    }
    if let Some(rs) = &row_scale {
        for (b, r) in rs.iter().enumerate() {
            for w in &mut v[b * k..b * k + k] {
                *w *= r;
            }
        }
    }
    for w in v.iter_mut() {
        *w *= scale;
    }
    (v, bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_toy_problem_and_round_trips() {
        let ex = |f: u32, label| Example {
            features: vec![(f, 1.0), (99, 0.5)],
            label,
            weight: 1.0,
        };
        let data = vec![ex(1, 0), ex(2, 1), ex(1, 0), ex(2, 1)];
        let cfg = TrainConfig {
            bits: 8,
            ..TrainConfig::default()
        };
        let m = train(&data, 2, &cfg);
        assert!(m.probabilities(&[(1, 1.0)])[0] > 0.7);
        assert!(m.probabilities(&[(2, 1.0)])[1] > 0.7);
        let back = LinearModel::from_bytes(&m.to_bytes()).expect("round trip");
        assert_eq!(back, m);
        assert_eq!(
            LinearModel::from_bytes(b"nonsense"),
            Err(ModelError::Truncated)
        );
    }

    #[test]
    fn one_vs_rest_learns_three_classes() {
        let ex = |f: u32, label| Example {
            features: vec![(f, 1.0), (99, 0.5)],
            label,
            weight: 1.0,
        };
        let data: Vec<Example> = (0..4)
            .flat_map(|_| [ex(1, 0), ex(2, 1), ex(3, 2)])
            .collect();
        let cfg = TrainConfig {
            bits: 8,
            one_vs_rest: true,
            ..TrainConfig::default()
        };
        let m = train(&data, 3, &cfg);
        assert_eq!(m, train(&data, 3, &cfg), "deterministic");
        for (f, want) in [(1, 0), (2, 1), (3, 2)] {
            let p = m.probabilities(&[(f, 1.0), (99, 0.5)]);
            let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b]));
            assert_eq!(best, Some(want), "{p:?}");
        }
    }
}
