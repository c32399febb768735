//! Classification metrics: accuracy, macro-F1 and per-class precision/recall/F1 from a confusion matrix.

use std::fmt;

/// A confusion matrix over named classes; `counts[gold][predicted]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub labels: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

impl Report {
    pub fn new(labels: &[&str]) -> Self {
        Report {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            counts: vec![vec![0; labels.len()]; labels.len()],
        }
    }

    pub fn add(&mut self, gold: usize, predicted: usize) {
        if let Some(c) = self
            .counts
            .get_mut(gold)
            .and_then(|row| row.get_mut(predicted))
        {
            *c += 1;
        }
    }

    pub fn merge(&mut self, other: &Report) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.labels.len()).map(|i| self.counts[i][i]).sum();
        ratio(correct, self.total())
    }

    pub fn class(&self, i: usize) -> ClassScores {
        let tp = self.counts[i][i];
        let predicted: u64 = self.counts.iter().map(|row| row[i]).sum();
        let support: u64 = self.counts[i].iter().sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        ClassScores {
            precision,
            recall,
            f1,
            support,
        }
    }

    /// Mean F1 over classes that occur in gold or predictions.
    pub fn macro_f1(&self) -> f64 {
        let present: Vec<usize> = (0..self.labels.len())
            .filter(|&i| self.class(i).support > 0 || self.counts.iter().any(|r| r[i] > 0))
            .collect();
        if present.is_empty() {
            return 0.0;
        }
        present.iter().map(|&i| self.class(i).f1).sum::<f64>() / present.len() as f64
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "n={}  accuracy={:.4}  macro_f1={:.4}",
            self.total(),
            self.accuracy(),
            self.macro_f1()
        )?;
        writeln!(
            f,
            "{:<12} {:>9} {:>9} {:>9} {:>8}",
            "class", "precision", "recall", "f1", "support"
        )?;
        for (i, l) in self.labels.iter().enumerate() {
            let c = self.class(i);
            writeln!(
                f,
                "{:<12} {:>9.4} {:>9.4} {:>9.4} {:>8}",
                l, c.precision, c.recall, c.f1, c.support
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_of_a_small_confusion() {
        let mut r = Report::new(&["a", "b"]);
        for (g, p) in [(0, 0), (0, 0), (0, 1), (1, 1)] {
            r.add(g, p);
        }
        assert!((r.accuracy() - 0.75).abs() < 1e-9);
        // a: p=1 r=2/3 f1=0.8; b: p=0.5 r=1 f1=2/3
        assert!((r.macro_f1() - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
    }
}
