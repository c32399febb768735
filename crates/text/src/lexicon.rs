//! Sentiment word lists (Dutch from LUPJE + Pattern, English and emoji hand-written) as prior polarity features.

/// A word -> polarity (-1..1) list: sorted for serialising, hashed for lookup.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    entries: Vec<(Box<str>, f32)>,
    index: crate::features::FastMap<Box<str>, f32>,
}

impl Lexicon {
    /// Parse `word<TAB>score` lines; bad lines are skipped, later duplicates win.
    pub fn parse(tsv: &str) -> Self {
        let mut entries: Vec<(Box<str>, f32)> = tsv
            .lines()
            .filter_map(|line| {
                let (w, s) = line.split_once('\t')?;
                let s: f32 = s.trim().parse().ok()?;
                let w = w.trim();
                (!w.is_empty() && s.is_finite()).then(|| (w.into(), s.clamp(-1.0, 1.0)))
            })
            .collect();
        // Stable sort keeps input order among equal words; keep the last one.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut dedup: Vec<(Box<str>, f32)> = Vec::with_capacity(entries.len());
        for e in entries {
            match dedup.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => dedup.push(e),
            }
        }
        let index = dedup.iter().cloned().collect();
        Lexicon {
            entries: dedup,
            index,
        }
    }

    pub fn score(&self, word: &str) -> Option<f32> {
        self.index.get(word).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Serialise back to sorted `word<TAB>score` lines.
    pub fn to_tsv(&self) -> String {
        let mut s = String::new();
        for (w, v) in &self.entries {
            s.push_str(w);
            s.push('\t');
            s.push_str(&format!("{v:.2}"));
            s.push('\n');
        }
        s
    }
}

/// Hand-written English and emoji polarity list (Balie's own, AGPL like the code).
pub const BUILTIN: &str = "\
good\t0.5\ngreat\t0.8\nawesome\t0.9\namazing\t0.9\nexcellent\t0.9\nlove\t0.8\nloved\t0.8\nloving\t0.7\n\
thanks\t0.6\nthank\t0.6\nthx\t0.6\nty\t0.4\nappreciate\t0.7\nappreciated\t0.7\nhelpful\t0.7\nnice\t0.5\n\
best\t0.7\nhappy\t0.7\nglad\t0.6\nwonderful\t0.9\nfantastic\t0.9\nperfect\t0.8\nkind\t0.5\nfriendly\t0.6\n\
smooth\t0.5\nquick\t0.3\nfast\t0.3\nhelped\t0.5\nfavorite\t0.7\nfavourite\t0.7\nenjoy\t0.6\nenjoyed\t0.6\n\
cool\t0.4\nsweet\t0.5\nyay\t0.7\nwow\t0.4\nlol\t0.2\nkudos\t0.8\nimpressed\t0.7\nrock\t0.3\nrocks\t0.6\n\
bad\t-0.6\nworst\t-0.9\nterrible\t-0.9\nhorrible\t-0.9\nawful\t-0.9\nhate\t-0.8\npoor\t-0.6\nrude\t-0.8\n\
disappointed\t-0.7\ndisappointing\t-0.7\ndisappointment\t-0.7\nfrustrated\t-0.7\nfrustrating\t-0.7\n\
annoyed\t-0.6\nannoying\t-0.6\nangry\t-0.8\nunacceptable\t-0.9\nridiculous\t-0.8\npathetic\t-0.9\n\
useless\t-0.8\nbroken\t-0.6\ndelayed\t-0.5\ndelay\t-0.4\ncancelled\t-0.5\ncanceled\t-0.5\nlost\t-0.5\n\
waiting\t-0.3\nwait\t-0.2\nstuck\t-0.6\nfail\t-0.7\nfailed\t-0.6\nfails\t-0.6\nsucks\t-0.8\nsuck\t-0.7\n\
wtf\t-0.7\nugh\t-0.6\nshame\t-0.6\nnever\t-0.2\nproblem\t-0.4\nproblems\t-0.4\nissue\t-0.3\nissues\t-0.3\n\
complaint\t-0.5\ncomplain\t-0.5\nrefund\t-0.3\nhorrendous\t-0.9\nincompetent\t-0.9\ndisgusting\t-0.9\n\
disgrace\t-0.9\nscam\t-0.8\nwrong\t-0.5\nerror\t-0.4\nsad\t-0.6\nupset\t-0.7\nmess\t-0.6\nhassle\t-0.6\n\
nightmare\t-0.8\nmiserable\t-0.8\njoke\t-0.4\nlousy\t-0.8\ncrap\t-0.8\nsorry\t-0.2\nhelp\t-0.1\n\
😀\t0.7\n😃\t0.7\n😄\t0.7\n😁\t0.7\n😊\t0.7\n😍\t0.9\n🥰\t0.9\n😘\t0.7\n🙂\t0.4\n👍\t0.6\n👏\t0.6\n🙏\t0.4\n\
❤\t0.8\n💙\t0.8\n💕\t0.8\n🎉\t0.7\n✨\t0.4\n😎\t0.5\n😂\t0.2\n🤣\t0.2\n:)\t0.6\n💯\t0.5\n🔥\t0.3\n\
😡\t-0.9\n😠\t-0.8\n🤬\t-0.9\n😤\t-0.7\n😒\t-0.6\n😞\t-0.7\n😢\t-0.6\n😭\t-0.5\n😩\t-0.7\n😫\t-0.7\n\
👎\t-0.7\n🙄\t-0.6\n😔\t-0.6\n😕\t-0.5\n🤦\t-0.6\n💩\t-0.7\n:(\t-0.6\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_duplicates() {
        let lex = Lexicon::parse("slecht\t-0.7\ngoed\t0.5\ngoed\t0.6\nbad line\n");
        assert_eq!(lex.score("goed"), Some(0.6));
        assert_eq!(lex.score("slecht"), Some(-0.7));
        assert_eq!(lex.score("onbekend"), None);
        assert_eq!(lex.len(), 2);
    }
}
