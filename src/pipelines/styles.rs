//! Style presets: words a style adds to the prompt and the negative prompt. The page and the
//! CLI share one list, `www/styles.txt`: a style per line, `name | prompt words | negative
//! words`. The generation (and its PNG's metadata) gets the final text.

/// The default list (the page fetches the same file).
pub const DEFAULT_STYLES: &str = include_str!("../../www/styles.txt");

#[derive(Debug, Clone, PartialEq)]
pub struct Style {
    pub name: String,
    pub prompt: String,
    pub negative: String,
}

/// Every line with a name, as the page's `parseStyles` reads it.
pub fn parse(text: &str) -> Vec<Style> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split('|').map(str::trim);
            let name = parts.next().filter(|n| !n.is_empty())?;
            Some(Style { name: name.into(), prompt: parts.next().unwrap_or("").into(), negative: parts.next().unwrap_or("").into() })
        })
        .collect()
}

/// The style called `name` (any case), or an error listing the names there are.
pub fn find<'a>(styles: &'a [Style], name: &str) -> Result<&'a Style, String> {
    styles.iter().find(|s| s.name.eq_ignore_ascii_case(name)).ok_or_else(|| {
        let names: Vec<&str> = styles.iter().map(|s| s.name.as_str()).collect();
        format!("no style called '{name}': the styles are {}", names.join(", "))
    })
}

/// `base` with `extra` after a comma (nothing added when either is empty).
fn join(base: &str, extra: &str) -> String {
    match (base.trim(), extra) {
        (_, "") => base.to_string(),
        ("", _) => extra.to_string(),
        (b, _) => format!("{b}, {extra}"),
    }
}

impl Style {
    /// The prompt and negative prompt with this style's words added.
    pub fn apply(&self, prompt: &str, negative: &str) -> (String, String) {
        (join(prompt, &self.prompt), join(negative, &self.negative))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_parses_and_applies_as_the_page_does() {
        let styles = parse(DEFAULT_STYLES);
        assert_eq!(styles.len(), 6);
        let s = find(&styles, "watercolor").unwrap();
        assert_eq!(s.apply("a fox", ""), ("a fox, watercolor painting, soft washes".to_string(), "photo, harsh lines".to_string()));
        assert_eq!(find(&styles, "Noto").unwrap().apply("", "blurry"), ("noto style".to_string(), "blurry".to_string()));
        assert!(find(&styles, "cubism").unwrap_err().contains("Twemoji, Noto, Watercolor"));
    }
}
