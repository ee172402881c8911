pub mod fake_hub;
pub mod tiny_gguf;
