//! Prompts for a class-conditional model (the DCGAN): the prompt picks one of the model's
//! classes by its emoji character or its names and keywords (English, and Chinese where the
//! model lists them), and a style by name. There is no text encoder, so this is a lookup,
//! and the page says which class it chose.

use crate::models::dcgan::ClassLabel;

/// Which class and style a prompt asked for, and how the class was found.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMatch {
    pub class: usize,
    pub style: usize,
    /// "emoji", "name" (an exact name), "chinese" (a Chinese name or tag inside the prompt) or
    /// "words" (the best word overlap).
    pub how: &'static str,
}

/// Words that say nothing about which emoji is meant.
const FILLER: [&str; 9] = ["a", "an", "the", "of", "with", "and", "in", "on", "style"];

/// Lowercase words: runs of letters and digits, also cut where Latin meets CJK ("noto风格"
/// is "noto", "风格": Chinese text puts no space there).
fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    let mut last_cjk = None;
    for c in text.to_lowercase().chars() {
        if !c.is_alphanumeric() {
            last_cjk = None;
            continue;
        }
        let cjk = is_cjk(c);
        match out.last_mut() {
            Some(w) if last_cjk == Some(cjk) => w.push(c),
            _ => out.push(c.to_string()),
        }
        last_cjk = Some(cjk);
    }
    out
}

/// Han, kana and Hangul: scripts written without spaces, so names are found inside the prompt.
fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0xAC00..=0xD7AF | 0x20000..=0x2FA1F)
}

/// The class whose CJK name (else CJK keyword of two or more characters) is the longest
/// found inside `prompt`: "一颗红心" contains 红心 (red heart), "我家的小狗" the tag 小狗.
fn cjk_match(prompt: &str, classes: &[ClassLabel]) -> Option<usize> {
    let found =
        |list: &[String], min: usize| list.iter().filter(|n| n.chars().any(is_cjk) && n.chars().count() >= min && prompt.contains(n.as_str())).map(|n| n.chars().count()).max();
    let best = |min_keyword| {
        classes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| found(&c.names, 1).map(|l| ((2, l), i)).or_else(|| found(&c.keywords, min_keyword).map(|l| ((1, l), i))))
            .fold(None, |acc: Option<((u8, usize), usize)>, (k, i)| if acc.is_none_or(|(best, _)| k > best) { Some((k, i)) } else { acc })
    };
    best(2).map(|(_, i)| i)
}

/// Without variation selectors (U+FE0F / U+FE0E), which a keyboard may or may not add.
fn bare(emoji: &str) -> String {
    emoji.chars().filter(|c| !matches!(c, '\u{FE0F}' | '\u{FE0E}')).collect()
}

/// Picks the class and style for `prompt`. An emoji character in the prompt wins (the
/// longest one that matches, so a ZWJ sequence beats its parts); else the class whose name
/// equals the prompt's words; else, in a prompt with Chinese (Japanese, Korean) text, the
/// longest such name or tag found inside it; else the most shared words (names count twice
/// as much as keywords). The style is the first style name among the prompt's words (else
/// style 0).
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
    if prompt.chars().any(is_cjk) {
        if let Some(class) = cjk_match(prompt, classes) {
            return Ok(LabelMatch { class, style, how: "chinese" });
        }
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
    Err(format!("this model draws {} fixed classes and has no text encoder: name one{example} (in English, or in Chinese where it lists Chinese names), or type its emoji (no class matches '{prompt}')", classes.len()))
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
            class("😀", &["grinning face", "grinning", "嘿嘿"], &["face", "smile", "happy", "笑脸", "脸"]),
            class("❤\u{FE0F}", &["red heart", "heart", "红心"], &["love", "like", "心", "爱"]),
            class("🐱", &["cat face", "猫脸"], &["animal", "pet", "宠物", "猫", "猫咪"]),
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
    fn chinese_prompts_find_names_and_tags_inside_them() {
        let m = |p: &str| match_prompt(p, &classes(), &["twemoji".to_string(), "noto".to_string()]).unwrap();
        assert_eq!(m("一颗红心"), LabelMatch { class: 1, style: 0, how: "chinese" });
        assert_eq!(m("红心"), LabelMatch { class: 1, style: 0, how: "name" });
        // A name beats a tag; a two-character tag counts, a one-character one does not.
        assert_eq!(m("一张猫脸，很高兴 noto"), LabelMatch { class: 2, style: 1, how: "chinese" });
        assert_eq!(m("请画一个红心，noto风格"), LabelMatch { class: 1, style: 1, how: "chinese" });
        assert_eq!(m("画一只可爱的猫咪").class, 2);
        assert_eq!(m("我想要笑脸").class, 0);
    }

    #[test]
    fn a_prompt_with_no_known_word_is_refused_with_how_to_ask() {
        let err = match_prompt("一只戴墨镜的柴犬", &classes(), &[]).unwrap_err();
        assert_eq!(
            err,
            "this model draws 5 fixed classes and has no text encoder: name one such as 'grinning face' (in English, or in Chinese where it lists Chinese names), or type its emoji (no class matches '一只戴墨镜的柴犬')"
        );
    }
}
