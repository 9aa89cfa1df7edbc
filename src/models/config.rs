//! Reading diffusers / transformers `config.json` values with their library defaults, and
//! saying which key is wrong when one does not fit.

use serde_json::Value;

use crate::error::OpError;

fn bad(component: &str, key: &str, what: &str) -> OpError {
    OpError::Config { component: component.to_string(), message: format!("'{key}' {what}") }
}

/// A config object with its component name, for error messages.
pub struct Cfg<'a> {
    pub component: &'a str,
    pub value: &'a Value,
}

impl<'a> Cfg<'a> {
    pub fn new(component: &'a str, value: &'a Value) -> Self {
        Self { component, value }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    /// A required unsigned integer.
    pub fn usize(&self, key: &str) -> Result<usize, OpError> {
        self.get(key).and_then(Value::as_u64).map(|v| v as usize).ok_or_else(|| bad(self.component, key, "is missing or not a whole number"))
    }

    /// An unsigned integer with a default.
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize, OpError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().map(|v| v as usize).ok_or_else(|| bad(self.component, key, "is not a whole number")),
        }
    }

    /// A number with a default.
    pub fn f32_or(&self, key: &str, default: f32) -> Result<f32, OpError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().map(|v| v as f32).ok_or_else(|| bad(self.component, key, "is not a number")),
        }
    }

    /// A boolean with a default.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, OpError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| bad(self.component, key, "is not true/false")),
        }
    }

    /// A string with a default.
    pub fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str, OpError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| bad(self.component, key, "is not a string")),
        }
    }

    /// A list of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, OpError> {
        let list = self.get(key).and_then(Value::as_array).ok_or_else(|| bad(self.component, key, "is missing or not a list"))?;
        list.iter().map(|v| v.as_str().map(String::from).ok_or_else(|| bad(self.component, key, "has a non-string entry"))).collect()
    }

    /// A list of whole numbers.
    pub fn usizes(&self, key: &str) -> Result<Vec<usize>, OpError> {
        let list = self.get(key).and_then(Value::as_array).ok_or_else(|| bad(self.component, key, "is missing or not a list"))?;
        list.iter().map(|v| v.as_u64().map(|v| v as usize).ok_or_else(|| bad(self.component, key, "has a non-integer entry"))).collect()
    }

    /// diffusers' "int or one per block" values (`attention_head_dim`,
    /// `transformer_layers_per_block`); None when absent or null.
    pub fn per_block(&self, key: &str, blocks: usize) -> Result<Option<Vec<usize>>, OpError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(_)) => {
                let v = self.usizes(key)?;
                if v.len() != blocks {
                    return Err(bad(self.component, key, &format!("has {} entries for {blocks} blocks", v.len())));
                }
                Ok(Some(v))
            }
            Some(v) => v.as_u64().map(|n| Some(vec![n as usize; blocks])).ok_or_else(|| bad(self.component, key, "is not a whole number or a list")),
        }
    }

    /// Fails unless `key` (when present) is one of `allowed`.
    pub fn expect_one_of(&self, key: &str, allowed: &[&str]) -> Result<(), OpError> {
        match self.get(key).and_then(Value::as_str) {
            Some(s) if !allowed.contains(&s) => Err(bad(self.component, key, &format!("= '{s}' is not supported (supported: {})", allowed.join(", ")))),
            _ => Ok(()),
        }
    }
}
