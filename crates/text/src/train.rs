//! Training pipeline as pure functions over in-memory examples: lexicon building, dedup, k-fold CV, final fit.

use std::collections::BTreeMap;

use crate::eval::Report;
use crate::features;
use crate::lexicon::{self, Lexicon};
use crate::model::{self, Example, LinearModel, Rng, TrainConfig};
use crate::tokenize::tokenize;

/// A labelled text; `weight` scales its loss (e.g. noisy auxiliary data gets less).
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub text: String,
    pub label: usize,
    pub weight: f32,
}

/// Normalised text used to find duplicates (case and whitespace insensitive).
pub fn dedup_key(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Keep the first occurrence of each text; drop texts whose key is in `exclude`.
pub fn dedup_by_text(items: Vec<Labelled>, exclude: &[Labelled]) -> Vec<Labelled> {
    let mut seen: std::collections::BTreeSet<String> =
        exclude.iter().map(|l| dedup_key(&l.text)).collect();
    items
        .into_iter()
        .filter(|l| seen.insert(dedup_key(&l.text)))
        .collect()
}

/// LUPJE `word<TAB>score` (-5..5) lines to polarity -1..1.
pub fn parse_lupje(src: &str) -> Vec<(String, f32)> {
    src.lines()
        .filter_map(|l| {
            let (w, s) = l.split_once('\t')?;
            let s: f32 = s.trim().parse().ok()?;
            Some((w.trim().to_lowercase(), s / 5.0))
        })
        .filter(|(w, _)| !w.is_empty())
        .collect()
}

/// VADER-format lines (`token<TAB>mean -4..4<TAB>sd<TAB>ratings`) to polarity -1..1.
pub fn parse_vader(src: &str) -> Vec<(String, f32)> {
    src.lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            let w = it.next()?.trim().to_lowercase();
            let s: f32 = it.next()?.trim().parse().ok()?;
            (!w.is_empty()).then_some((w, s / 4.0))
        })
        .collect()
}

fn xml_attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = line.find(&key)? + key.len();
    let end = line[start..].find('"')? + start;
    Some(&line[start..end])
}

/// Pattern `nl-sentiment.xml` word senses, averaged per lowercase form, neutral forms dropped.
pub fn parse_pattern(xml: &str) -> Vec<(String, f32)> {
    let mut sums: BTreeMap<String, (f32, f32)> = BTreeMap::new();
    for line in xml.lines().filter(|l| l.trim_start().starts_with("<word ")) {
        let (Some(form), Some(pol)) = (xml_attr(line, "form"), xml_attr(line, "polarity")) else {
            continue;
        };
        let Ok(p) = pol.parse::<f32>() else { continue };
        let e = sums.entry(form.to_lowercase()).or_insert((0.0, 0.0));
        e.0 += p;
        e.1 += 1.0;
    }
    sums.into_iter()
        .map(|(w, (s, n))| (w, s / n))
        .filter(|(_, p)| p.abs() >= 0.1)
        .collect()
}

/// Merge LUPJE, Pattern and an English list (average where several score a word) with Balie's built-in list.
pub fn build_lexicon(
    lupje: &[(String, f32)],
    pattern: &[(String, f32)],
    english: &[(String, f32)],
) -> Lexicon {
    let mut merged: BTreeMap<String, (f32, f32)> = BTreeMap::new();
    for (w, s) in lupje.iter().chain(pattern).chain(english) {
        let e = merged.entry(w.clone()).or_insert((0.0, 0.0));
        e.0 += s;
        e.1 += 1.0;
    }
    let mut tsv = String::new();
    for (w, (s, n)) in merged {
        if w.contains(char::is_whitespace) {
            continue;
        }
        tsv.push_str(&format!("{w}\t{:.2}\n", s / n));
    }
    tsv.push_str(lexicon::BUILTIN);
    Lexicon::parse(&tsv)
}

/// Which feature extractor a task's model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// Words, bigrams, char n-grams and lexicon cues (sentiment, complaint).
    Message,
    /// Character n-grams only (language identification).
    Language,
}

/// Features for each labelled text.
pub fn featurize(items: &[Labelled], lexicon: &Lexicon, kind: FeatureKind) -> Vec<Example> {
    items
        .iter()
        .map(|l| {
            let mut f = Vec::new();
            let tokens = tokenize(&l.text);
            match kind {
                FeatureKind::Message => features::extract(&tokens, lexicon, &l.text, &mut f),
                FeatureKind::Language => crate::lang::char_features(&tokens, &mut f),
            }
            Example {
                features: f,
                label: l.label,
                weight: l.weight,
            }
        })
        .collect()
}

/// Stratified fold number for every example: shuffled within each class with `seed`, dealt round-robin.
pub fn fold_assignment(labels: &[usize], folds: usize, seed: u64) -> Vec<usize> {
    let mut out = vec![0; labels.len()];
    let mut idx: Vec<usize> = (0..labels.len()).collect();
    Rng::new(seed).shuffle(&mut idx);
    idx.sort_by_key(|&i| labels[i]);
    for (n, &i) in idx.iter().enumerate() {
        out[i] = n % folds.max(1);
    }
    out
}

/// Predicted class of a model: argmax, or for two classes probability of class 1 >= `threshold`.
pub fn predict(m: &LinearModel, feats: &[features::Feature], threshold: f32) -> usize {
    let p = m.probabilities(feats);
    if p.len() == 2 {
        return usize::from(p[1] >= threshold);
    }
    (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

/// One supervised task: the main set (evaluated by CV) plus auxiliary examples always in training.
#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub labels: Vec<String>,
    pub main: Vec<Labelled>,
    pub extra: Vec<Labelled>,
    pub config: TrainConfig,
    pub threshold: f32,
    pub features: FeatureKind,
}

/// Out-of-fold class probabilities for every example of `task.main` (k-fold; extras only ever train).
pub fn out_of_fold(task: &Task, lexicon: &Lexicon, folds: usize) -> Vec<(usize, Vec<f32>)> {
    let main = featurize(&task.main, lexicon, task.features);
    let extra = featurize(&task.extra, lexicon, task.features);
    let fold = fold_assignment(
        &task.main.iter().map(|l| l.label).collect::<Vec<_>>(),
        folds,
        task.config.seed,
    );
    let mut out = vec![(0, Vec::new()); main.len()];
    for k in 0..folds {
        let mut train: Vec<Example> = main
            .iter()
            .zip(&fold)
            .filter(|(_, f)| **f != k)
            .map(|(e, _)| e.clone())
            .collect();
        train.extend(extra.iter().cloned());
        let m = model::train(&train, task.labels.len(), &task.config);
        for (i, e) in main.iter().enumerate().filter(|(i, _)| fold[*i] == k) {
            out[i] = (e.label, m.probabilities(&e.features));
        }
    }
    out
}

fn argmax_with(p: &[f32], offsets: &[f32]) -> usize {
    (0..p.len())
        .max_by(|&a, &b| {
            let sa = p[a].max(1e-9).ln() + offsets.get(a).copied().unwrap_or(0.0);
            let sb = p[b].max(1e-9).ln() + offsets.get(b).copied().unwrap_or(0.0);
            sa.total_cmp(&sb).then(b.cmp(&a))
        })
        .unwrap_or(0)
}

/// Confusion report of probabilities with log-space class offsets added.
pub fn report_with(labels: &[String], oof: &[(usize, Vec<f32>)], offsets: &[f32]) -> Report {
    let names: Vec<&str> = labels.iter().map(String::as_str).collect();
    let mut r = Report::new(&names);
    for (gold, p) in oof {
        r.add(*gold, argmax_with(p, offsets));
    }
    r
}

/// Class offsets (class 0 fixed at 0, others in -1..1 by 0.1) that maximise macro-F1 on `oof`.
pub fn tune_offsets(labels: &[String], oof: &[(usize, Vec<f32>)]) -> Vec<f32> {
    let k = labels.len();
    let steps: Vec<f32> = (-10..=10).map(|i| i as f32 / 10.0).collect();
    let mut best = (
        report_with(labels, oof, &vec![0.0; k]).macro_f1(),
        vec![0.0; k],
    );
    let mut cur = vec![0.0f32; k];
    fn rec(
        i: usize,
        cur: &mut Vec<f32>,
        steps: &[f32],
        labels: &[String],
        oof: &[(usize, Vec<f32>)],
        best: &mut (f64, Vec<f32>),
    ) {
        if i == cur.len() {
            let f = report_with(labels, oof, cur).macro_f1();
            // Prefer the smallest adjustment among ties (stable, less overfit).
            let size = |v: &[f32]| v.iter().map(|x| x.abs()).sum::<f32>();
            if f > best.0 + 1e-9 || ((f - best.0).abs() <= 1e-9 && size(cur) < size(&best.1)) {
                *best = (f, cur.clone());
            }
            return;
        }
        for &s in steps {
            cur[i] = s;
            rec(i + 1, cur, steps, labels, oof, best);
        }
    }
    if k >= 2 {
        rec(1, &mut cur, &steps, labels, oof, &mut best);
    }
    best.1
}

/// k-fold cross-validation on `task.main` (extras are added to every training fold, never tested).
pub fn cross_validate(task: &Task, lexicon: &Lexicon, folds: usize) -> Report {
    let oof = out_of_fold(task, lexicon, folds);
    let names: Vec<&str> = task.labels.iter().map(String::as_str).collect();
    let mut report = Report::new(&names);
    for (gold, p) in &oof {
        let pred = if p.len() == 2 {
            usize::from(p[1] >= task.threshold)
        } else {
            argmax_with(p, &[])
        };
        report.add(*gold, pred);
    }
    report
}

/// Train on everything (main and extra).
pub fn fit(task: &Task, lexicon: &Lexicon) -> LinearModel {
    let mut all = featurize(&task.main, lexicon, task.features);
    all.extend(featurize(&task.extra, lexicon, task.features));
    model::train(&all, task.labels.len(), &task.config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(text: &str, label: usize) -> Labelled {
        Labelled {
            text: text.to_string(),
            label,
            weight: 1.0,
        }
    }

    #[test]
    fn dedup_ignores_case_and_whitespace_and_excluded_texts() {
        let items = vec![l("Hallo  daar", 0), l("hallo daar", 1), l("anders", 0)];
        let out = dedup_by_text(items, &[l("ANDERS", 1)]);
        assert_eq!(out, vec![l("Hallo  daar", 0)]);
    }

    #[test]
    fn lexicon_sources_are_parsed_and_merged() {
        let lupje = parse_lupje("storing\t-3\r\ntop\t2\r\n");
        let pattern = parse_pattern(
            "<word form=\"goed\" pos=\"JJ\" polarity=\"0.6\" />\n<word form=\"goed\" polarity=\"0.4\" />\n<word form=\"top\" polarity=\"0.6\" />",
        );
        let lex = build_lexicon(&lupje, &pattern, &parse_vader("meh\t-0.8\t0.4\t[]\n"));
        assert_eq!(lex.score("meh"), Some(-0.2));
        assert_eq!(lex.score("storing"), Some(-0.6));
        assert_eq!(lex.score("goed"), Some(0.5));
        assert_eq!(lex.score("top"), Some(0.5));
    }

    #[test]
    fn folds_are_stratified_and_deterministic() {
        let labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
        let a = fold_assignment(&labels, 2, 7);
        assert_eq!(a, fold_assignment(&labels, 2, 7));
        let ones_in_fold0 = (0..10).filter(|&i| labels[i] == 1 && a[i] == 0).count();
        assert_eq!(ones_in_fold0, 3);
    }

    #[test]
    fn cross_validation_learns_an_easy_task() {
        let mut main = Vec::new();
        for i in 0..20 {
            main.push(l(&format!("great lovely service {i}"), 1));
            main.push(l(&format!("terrible awful delay {i}"), 0));
        }
        let task = Task {
            name: "toy".into(),
            labels: vec!["neg".into(), "pos".into()],
            main,
            extra: Vec::new(),
            config: TrainConfig {
                bits: 12,
                ..TrainConfig::default()
            },
            threshold: 0.5,
            features: FeatureKind::Message,
        };
        let r = cross_validate(&task, &Lexicon::default(), 4);
        assert!(r.macro_f1() > 0.9, "{r}");
    }
}
