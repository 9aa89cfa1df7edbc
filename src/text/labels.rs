//! Prompts for a class-conditional model (the DCGAN): the prompt picks one of the model's
//! classes by its emoji character or its English names and keywords, and a style by name.
//! There is no text encoder, so this is a lookup, and the page says which class it chose.

use crate::models::dcgan::ClassLabel;

/// Which class and style a prompt asked for, and how the class was found.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMatch {
    pub class: usize,
    pub style: usize,
    /// "emoji", "name" (an exact name) or "words" (the best word overlap).
    pub how: &'static str,
}

/// Words that say nothing about which emoji is meant.
const FILLER: [&str; 9] = ["a", "an", "the", "of", "with", "and", "in", "on", "style"];

fn words(text: &str) -> Vec<String> {
    text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// Without variation selectors (U+FE0F / U+FE0E), which a keyboard may or may not add.
fn bare(emoji: &str) -> String {
    emoji.chars().filter(|c| !matches!(c, '\u{FE0F}' | '\u{FE0E}')).collect()
}

/// Picks the class and style for `prompt`. An emoji character in the prompt wins (the
/// longest one that matches, so a ZWJ sequence beats its parts); else the class whose name
/// equals the prompt's words; else the most shared words (names count twice as much as
/// keywords). The style is the first style name among the prompt's words (else style 0).
pub fn match_prompt(prompt: &str, classes: &[ClassLabel], styles: &[String]) -> Result<LabelMatch, String> {
    let all = words(prompt);
    let style = styles.iter().position(|s| all.contains(&s.to_lowercase())).unwrap_or(0);
    let wanted: Vec<&String> = all.iter().filter(|w| !FILLER.contains(&w.as_str()) && !styles.iter().any(|s| s.to_lowercase() == **w)).collect();
    let prompt_bare = bare(prompt);
    let by_emoji = classes
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.emoji.is_empty() && prompt_bare.contains(&bare(&c.emoji)))
        .max_by_key(|(i, c)| (bare(&c.emoji).chars().count(), std::cmp::Reverse(*i)));
    if let Some((class, _)) = by_emoji {
        return Ok(LabelMatch { class, style, how: "emoji" });
    }
    let joined = wanted.iter().map(|w| w.as_str()).collect::<Vec<_>>().join(" ");
    if let Some(class) = classes.iter().position(|c| c.names.iter().any(|n| words(n).join(" ") == joined)) {
        return Ok(LabelMatch { class, style, how: "name" });
    }
    let score = |c: &ClassLabel| -> f32 {
        let overlap = |list: &[String]| -> f32 {
            list.iter()
                .map(|n| {
                    let nw = words(n);
                    let shared = wanted.iter().filter(|w| nw.contains(w)).count() as f32;
                    shared / (nw.len() + wanted.len()) as f32
                })
                .fold(0.0, f32::max)
        };
        2.0 * overlap(&c.names) + overlap(&c.keywords)
    };
    let (class, best) = classes.iter().map(score).enumerate().fold((0, 0.0f32), |acc, (i, s)| if s > acc.1 { (i, s) } else { acc });
    if best > 0.0 {
        return Ok(LabelMatch { class, style, how: "words" });
    }
    let example = classes.first().map(|c| format!(" such as '{}'", c.names[0])).unwrap_or_default();
    Err(format!("this model draws {} fixed classes and has no text encoder: name one in English{example}, or type its emoji (no class matches '{prompt}')", classes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(emoji: &str, names: &[&str], keywords: &[&str]) -> ClassLabel {
        let s = |l: &[&str]| l.iter().map(|x| x.to_string()).collect();
        ClassLabel { emoji: emoji.into(), names: s(names), keywords: s(keywords) }
    }

    fn classes() -> Vec<ClassLabel> {
        vec![
            class("😀", &["grinning face", "grinning"], &["face", "smile", "happy"]),
            class("❤\u{FE0F}", &["red heart", "heart"], &["love", "like"]),
            class("🐱", &["cat face"], &["animal", "pet"]),
            class("🐈\u{200D}⬛", &["black cat"], &["animal", "pet"]),
            class("🖤", &["black heart"], &["evil"]),
        ]
    }

    #[test]
    fn names_emoji_and_styles_pick_classes() {
        let styles = vec!["twemoji".to_string(), "noto".to_string()];
        let m = |p: &str| match_prompt(p, &classes(), &styles).unwrap();
        assert_eq!(m("red heart, twemoji style"), LabelMatch { class: 1, style: 0, how: "name" });
        assert_eq!(m("Noto style: Grinning Face"), LabelMatch { class: 0, style: 1, how: "name" });
        // With or without U+FE0F; a ZWJ sequence over its first part.
        assert_eq!(m("❤"), LabelMatch { class: 1, style: 0, how: "emoji" });
        assert_eq!(m("我想要一只 🐈\u{200D}⬛，noto"), LabelMatch { class: 3, style: 1, how: "emoji" });
        // Shared words: "black" and "heart" both name class 4.
        assert_eq!(m("a big black heart"), LabelMatch { class: 4, style: 0, how: "words" });
        assert_eq!(m("happy").class, 0);
    }

    #[test]
    fn a_prompt_with_no_known_word_is_refused_with_how_to_ask() {
        let err = match_prompt("一颗红心", &classes(), &[]).unwrap_err();
        assert_eq!(err, "this model draws 5 fixed classes and has no text encoder: name one in English such as 'grinning face', or type its emoji (no class matches '一颗红心')");
    }
}
