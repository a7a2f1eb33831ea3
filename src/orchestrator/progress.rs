//! What the orchestration reports as it goes, to whoever shows it.

/// What the orchestration reports as it goes; keys are resource roles or `attack`.
pub trait Progress: Send + Sync {
    fn begin(&self, key: &str, what: &str, action: &str);
    fn update(&self, key: &str, message: &str);
    fn finish(&self, key: &str, message: &str);
}

/// Nothing at all (tests, and `--output json` when asked to be quiet).
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _: &str, _: &str, _: &str) {}
    fn update(&self, _: &str, _: &str) {}
    fn finish(&self, _: &str, _: &str) {}
}
